"""Where a touchpoint's cost goes: the batch path (validate, record, project) under cProfile.

Runs in one process, per backend: BATCHES batches of BATCH_SIZE touchpoints over CUSTOMERS
customers are validated as the API validates them, recorded (encryption, hash chain, index),
and projected (the derivation and the view's writes); prints the rate of each phase and the
functions with the most time of their own, so the next speed work starts from a measurement.

    .venv/bin/python bench/profile_write.py [--batches 20] [--batch-size 1000] [--customers 5000]
        [--backend sqlite|postgresql ...] [--top 25] [--save FILE] [--campaigns 0.25] [--out-of-order] [--plain]
        [--statements]

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
from pathlib import Path

import psycopg
from eventsourcing.sqlite import SQLiteCursor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.batch_throughput import POSTGRES, batches  # noqa: E402
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


def run(backend: str, load: list[list[dict]], top: int, save: str | None = None, plain: bool = False) -> None:
    with tempfile.TemporaryDirectory() as directory:
        url = store_url(backend, directory)
        system = System.build(Settings(database_url=url, key_file=f"{directory}/keys"))
        timings = {"validate": 0.0, "record": 0.0, "project": 0.0}
        profile = cProfile.Profile()
        try:
            for batch in load:
                if not plain:
                    profile.enable()
                started = time.perf_counter()
                touchpoints = [Touchpoint.model_validate(item) for item in batch]
                validated = time.perf_counter()
                PHASE[0] = "record"
                system.record(touchpoints)
                recorded = time.perf_counter()
                PHASE[0] = "project"
                system.runner.catch_up()
                projected = time.perf_counter()
                profile.disable()
                timings["validate"] += validated - started
                timings["record"] += recorded - validated
                timings["project"] += projected - recorded
        finally:
            system.close()
            if backend == "postgresql":
                with psycopg.connect(POSTGRES, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {url.split('schema=')[1]} CASCADE")
    count = sum(len(b) for b in load)
    total = sum(timings.values())
    under = "without the profiler" if plain else "under the profiler"
    print(f"{backend}: {count} touchpoints, {count / total:,.0f}/s end to end ({under}; code from {ROOT})")
    for phase, seconds in timings.items():
        print(f"  {phase:<9} {seconds / count * 1e6:7.1f} µs per touchpoint ({seconds / total:.0%})")
    if STATEMENTS:
        print_statements(count, top)
    if plain:
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
    args = parser.parse_args()
    if args.statements:
        time_statements()
    load = list(batches(args.batches, args.batch_size, args.customers, "p", args.out_of_order, args.campaigns))
    for backend in args.backend or ["sqlite", "postgresql"]:
        run(backend, load, args.top, args.save, args.plain)


if __name__ == "__main__":
    main()
