"""Where a touchpoint's cost goes: the batch path (validate, record, project) or the Kafka path
(consume, parse, record, project) under cProfile.

Runs in one process, per backend: BATCHES batches of BATCH_SIZE touchpoints over CUSTOMERS
customers are validated as the API validates them, recorded (encryption, hash chain, index),
and projected (the derivation and the view's writes); prints the rate of each phase and the
functions with the most time of their own, so the next speed work starts from a measurement.
With --kafka the same touchpoints are sent to a topic and taken in by the consumer's code.

    .venv/bin/python bench/profile_write.py [--batches 20] [--batch-size 1000] [--customers 5000]
        [--backend sqlite|postgresql ...] [--top 25] [--save FILE] [--campaigns 0.25] [--out-of-order] [--plain]
        [--statements] [--kafka]

To compare two commits, run it with --plain alternately from this tree and from a worktree of
the other (`PYTHONPATH=/tmp/base .venv/bin/python /tmp/base/bench/profile_write.py --plain`);
the first line says whose code ran.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import psycopg
from eventsourcing.sqlite import SQLiteCursor
from kafka import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.batch_throughput import POSTGRES, batches  # noqa: E402
from bench.kafka_throughput import Stall, broker, new_topic, produce  # noqa: E402
from consumers import touchpoints as consuming  # noqa: E402
from consumers.touchpoints import TouchpointConsumer  # noqa: E402
from journeys.settings import Settings  # noqa: E402
from journeys.storage import dialect, recorders  # noqa: E402
from journeys.touchpoint import Touchpoint  # noqa: E402
from projections.system import System  # noqa: E402

ROOT = str(Path(sys.modules[System.__module__].__file__ or "").resolve().parents[1])  # whose code runs
STATEMENTS: dict[tuple[str, str], list[float]] = {}  # (phase, statement) -> [calls, seconds]
PHASE = ["validate"]


def time_statements() -> None:
    """Time every statement, by phase and by its first words."""
    def count(text: str, started: float) -> None:
        entry = STATEMENTS.setdefault((PHASE[0], text), [0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - started

    def timed(method):  # type: ignore[no-untyped-def]
        def run(self, query, *args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return method(self, query, *args, **kwargs)
            finally:
                count(" ".join(str(getattr(query, "_obj", query)).split())[:110], started)
        return run

    for cursor in (psycopg.Cursor, SQLiteCursor):  # SQLite: eventsourcing's wrapper of sqlite3's cursor
        cursor.execute = timed(cursor.execute)  # type: ignore[method-assign]
        cursor.executemany = timed(cursor.executemany)  # type: ignore[method-assign]
    copy_rows = dialect.copy_rows

    def timed_copy(cursor, table, *rest):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            copy_rows(cursor, table, *rest)
        finally:
            count(f"COPY {table}", started)
    dialect.copy_rows = recorders.copy_rows = timed_copy  # the view's and the event store's


def print_statements(count: int, top: int) -> None:
    print("statements by time (µs per touchpoint, calls, µs a call; COPY with its rows):")
    ranked = sorted(STATEMENTS.items(), key=lambda item: -item[1][1])[:top]
    for (phase, text), (calls, seconds) in ranked:
        print(f"  {phase:<8} {seconds / count * 1e6:7.1f} {int(calls):6d} {seconds / calls * 1e6:9.0f}  {text}")
    STATEMENTS.clear()


def store_url(backend: str, directory: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{directory}/profile.db"
    return f"{POSTGRES}?schema=profile_{uuid.uuid4().hex[:8]}"


class Phases:
    """Seconds by phase; the profiler (when given) runs only inside a phase, and the statement
    timer files each statement under the phase it ran in."""

    def __init__(self, profile: cProfile.Profile | None):
        self.seconds: dict[str, float] = {}
        self.profile = profile

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        PHASE[0] = name
        if self.profile:
            self.profile.enable()
        started = time.perf_counter()
        try:
            yield
        finally:
            if self.profile:
                self.profile.disable()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def batch_path(system: System, load: list[list[dict]], phase: Phases) -> None:
    """As `POST /touchpoints/batch` and the projection runner do it, a batch at a time."""
    for batch in load:
        with phase("validate"):
            touchpoints = [Touchpoint.model_validate(item) for item in batch]
        with phase("record"):
            system.record(touchpoints)
        with phase("project"):
            system.runner.catch_up()


def kafka_path(bootstrap: str, url: str, directory: str) -> Callable[[System, list[list[dict]], Phases], None]:
    """As `journeys consume` does it: the load sent to a fresh 6-partition topic as plain JSON,
    then polled by the consumer's own code (`process` per partition, offsets committed), the
    projection caught up after each poll. Parsing (JSON and validation, in `process`) is its own
    phase, taken out of recording."""
    def run(system: System, load: list[list[dict]], phase: Phases) -> None:
        phase.seconds.update(dict.fromkeys(["consume", "parse", "record", "project"], 0.0))  # in this order
        topic = new_topic(bootstrap)
        total = produce(bootstrap, topic, (item for batch in load for item in batch))
        settings = Settings(database_url=url, key_file=f"{directory}/keys", kafka_bootstrap_servers=bootstrap,
                            kafka_topic=topic, kafka_dead_letter_topic=f"{topic}.dlq",
                            kafka_group_id=f"profile-{uuid.uuid4().hex[:6]}")
        consumer = TouchpointConsumer(system, settings)
        consumer.consumer.assign([TopicPartition(topic, p) for p in range(6)])
        parse = consuming.parse
        parsing = [0.0]

        def timed_parse(*args):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return parse(*args)
            finally:
                parsing[0] += time.perf_counter() - started
        consuming.parse = timed_parse
        seen, stall = 0, Stall(f"the consumer to poll {total} messages of {topic}")
        try:
            while seen < total:
                with phase("consume"):
                    polled = consumer.consumer.poll(timeout_ms=1000)
                with phase("record"):
                    for partition, messages in polled.items():
                        consumer.process(partition, messages)
                        seen += len(messages)
                with phase("consume"):
                    consumer.commit()
                with phase("project"):
                    system.runner.catch_up()
                stall.check(seen, f"{seen} polled")
        finally:
            consuming.parse = parse
            consumer.consumer.close()
            consumer.dead_letters.producer.close()
        phase.seconds["record"] -= parsing[0]
        phase.seconds["parse"] += parsing[0]
    return run


def run(backend: str, load: list[list[dict]], top: int, save: str | None = None, plain: bool = False,
        bootstrap: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as directory:
        url = store_url(backend, directory)
        system = System.build(Settings(database_url=url, key_file=f"{directory}/keys"))
        profile = None if plain else cProfile.Profile()
        phase = Phases(profile)
        path = kafka_path(bootstrap, url, directory) if bootstrap else batch_path
        try:
            path(system, load, phase)
        finally:
            system.close()
            if backend == "postgresql":
                with psycopg.connect(POSTGRES, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {url.split('schema=')[1]} CASCADE")
    count = sum(len(b) for b in load)
    total = sum(phase.seconds.values())
    under = "without the profiler" if plain else "under the profiler"
    route = "Kafka" if bootstrap else "batch"
    print(f"{backend}, {route} path: {count} touchpoints, {count / total:,.0f}/s end to end ({under}; code from {ROOT})")
    for name, seconds in phase.seconds.items():
        print(f"  {name:<9} {seconds / count * 1e6:7.1f} µs per touchpoint ({seconds / total:.0%})")
    if STATEMENTS:
        print_statements(count, top)
    if profile is None:
        return
    if save:
        profile.dump_stats(f"{save}.{backend}")  # for pstats' print_callers, snakeviz...
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(top)
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-(top + 3) * 200:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--save", help="also write the profile to SAVE.<backend> (pstats format)")
    parser.add_argument("--campaigns", type=float, default=0.0, help="the share of touchpoints with a campaign")
    parser.add_argument("--out-of-order", action="store_true", help="occurred times shuffled over the run")
    parser.add_argument("--plain", action="store_true",
                        help="time the phases without the profiler (the figures to compare commits by: run it "
                             "alternately here and in a worktree of the other commit, with PYTHONPATH set to it)")
    parser.add_argument("--statements", action="store_true",
                        help="time each SQL statement (by its first words) and print the costliest")
    parser.add_argument("--kafka", action="store_true",
                        help="the Kafka path instead of the batch path: the load sent to a topic and consumed as "
                             "`journeys consume` does (JOURNEYS_KAFKA_BOOTSTRAP_SERVERS, else a local Tansu)")
    args = parser.parse_args()
    if args.statements:
        time_statements()
    load = list(batches(args.batches, args.batch_size, args.customers, "p", args.out_of_order, args.campaigns))
    with broker() if args.kafka else nullcontext() as bootstrap:
        for backend in args.backend or ["sqlite", "postgresql"]:
            run(backend, load, args.top, args.save, args.plain, bootstrap)


if __name__ == "__main__":
    main()
