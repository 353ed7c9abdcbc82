"""Writers in parallel on one PostgreSQL store: does the event table's lock limit the write rate?

eventsourcing's PostgreSQL recorder takes `LOCK TABLE ... IN EXCLUSIVE MODE` around each
insert, so that notification ids are committed in order and followers never skip one.
This runs 1, 2 and 4 writer processes (as N API workers or consumers would), each
recording batches of its own customers' touchpoints (no projection), and prints the total
rate, its ratio to one writer, and how much of the writers' time was spent waiting for
that lock (sampled from pg_locks every 20 ms by a process of its own).

    .venv/bin/python bench/writers.py [--writers 1 2 4] [--batches 10] [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from backends import POSTGRES

from journeys.settings import Settings
from journeys.touchpoint import Touchpoint
from projections.system import System

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TYPES = ["email_opened", "website_visited", "webinar_attended", "demo_requested", "meeting_held"]


def write(url: str, keys: str, writer: int, batches: int, size: int, start: multiprocessing.Event, out) -> None:
    system = System.build(Settings(database_url=url, key_file=keys, run_projections=False))
    try:
        bodies = [[Touchpoint(touchpoint_id=f"w{writer}-{b}-{i}", customer_id=f"w{writer}-c{i % 500}",
                              type=TYPES[(b + i) % len(TYPES)], channel="web", source="bench",
                              occurred_at=T0 + timedelta(minutes=b * size + i)) for i in range(size)]
                  for b in range(batches)]
        start.wait(60)
        began = time.perf_counter()
        for body in bodies:
            system.app.record(body)
        out.put((began, time.perf_counter()))
    finally:
        system.close()


def lock_waits(schema: str, stop: multiprocessing.Event, out, every: float = 0.02) -> None:
    """Samples of how many backends wait for a lock on the schema's events table, while the writers run."""
    samples, waiting = 0, 0
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute(
                "SELECT COUNT(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT l.granted AND n.nspname = %s",
                [schema],
            ).fetchone()
            samples += 1
            waiting += row[0] if row else 0
            time.sleep(every)
    out.put((samples, waiting))


def run(writers: int, batches: int, size: int) -> tuple[float, float]:
    """(touchpoints per second over all writers, mean number of writers waiting for a lock)."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    url = f"{POSTGRES}?schema={schema}"
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        keys = f"{tmp}/keys"
        System.build(Settings(database_url=url, key_file=keys, run_projections=False)).close()  # the schema, once
        start, stop, out, waits = ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Queue()
        procs = [ctx.Process(target=write, args=(url, keys, w, batches, size, start, out)) for w in range(writers)]
        sampler = ctx.Process(target=lock_waits, args=(schema, stop, waits))
        try:
            for p in procs:
                p.start()
            sampler.start()
            time.sleep(2)  # the writers build their systems and their batches
            start.set()
            spans = [out.get(timeout=600) for _ in procs]
            stop.set()
            samples, waiting = waits.get(timeout=60)
        finally:
            stop.set()
            for p in [*procs, sampler]:
                p.join(60)
            with psycopg.connect(POSTGRES, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    wall = max(end for _, end in spans) - min(began for began, _ in spans)
    return writers * batches * size / wall, waiting / max(samples, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    base = None
    for n in args.writers:
        rate, waiting = run(n, args.batches, args.batch_size)
        base = base or rate
        print(f"postgresql {n} writer(s): {rate:7.0f} touchpoints/s, {rate / base:.2f}x one writer, "
              f"{waiting:.2f} writers waiting for a lock on average", flush=True)


if __name__ == "__main__":
    main()
