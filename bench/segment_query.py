"""Segment queries at a million customers, SQLite and PostgreSQL, measured in one run.

Fills the journey view with N synthetic customers (spread over the stages), then
times, as medians of repeated runs: the first page of 100 customers in one
awareness stage, a page deep into that segment (by cursor), a page of a
two-journey segment, and the summary of every journey.

    .venv/bin/python bench/segment_query.py [--customers 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parents[1]))
from journeys.playbook import Scope  # noqa: E402
from journeys.settings import Settings  # noqa: E402
from projections.storage.schema import CUSTOMERS, POSITIONS, SUBJECTS  # noqa: E402
from projections.system import System  # noqa: E402

POSTGRES = os.environ.get("JOURNEYS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def fill(system: System, n: int) -> None:
    """n customers, each with a subject row and a position in every customer journey."""
    journeys = system.playbook.journeys_of(Scope.customer)
    now = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    view = system.view
    for start in range(0, n, 20_000):
        customers, subjects, positions = [], [], []
        for i in range(start, min(n, start + 20_000)):
            record = f"cust-{i:08d}"  # a record id; no sealed key is needed to query segments
            customers.append([record, None, None])
            subjects.append(["customer", record, now, now, f"t{i}", 1])
            for k, journey in enumerate(journeys):
                model = system.playbook.journeys[journey]
                options = ([] if model.initial else [None]) + list(model.stages)
                stage = options[(i // (k + 1)) % len(options)]
                positions.append(["customer", record, journey, stage, now if stage else None,
                                  f"t{i}" if stage else None, "x" if stage else None, None, None, None])
        with view.datastore.transaction(commit=True) as c:
            view.insert(c, CUSTOMERS, customers)
            view.insert(c, SUBJECTS, subjects)
            view.insert(c, POSITIONS, positions)
    view.count_all()  # the stage counters the summary reads, as the projection keeps them
    view.dialect.analyze(view.datastore, [view.table(t) for t in ("customers", "subjects", "positions")])


def median_ms(action, runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        action()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def measure(label: str, url: str, n: int) -> None:
    system = System.build(Settings(database_url=url, key_file=f"{tempfile.gettempdir()}/segment-bench.keys"))
    try:
        t = time.perf_counter()
        fill(system, n)
        filled = time.perf_counter() - t
        view = system.view
        middle = f"cust-{n // 2:08d}"
        first = median_ms(lambda: view.segment({"awareness": "Interested"}, None, 100))
        deep = median_ms(lambda: view.segment({"awareness": "Interested"}, middle, 100))
        both = median_ms(lambda: view.segment({"awareness": "Evaluating", "seller": "Presenting"}, None, 100))
        summary = median_ms(lambda: view.summary(), runs=5)
        assert len(view.segment({"awareness": "Interested"}, middle, 100)) == 100
        print(f"{label:10s} {n} customers (filled in {filled:.0f}s): segment first page {first:.1f} ms, "
              f"deep page {deep:.1f} ms, two-journey segment {both:.1f} ms, summary {summary:.0f} ms")
    finally:
        system.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure("sqlite", f"sqlite:///{tmp}/segments.db", args.customers)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        measure("postgresql", f"{POSTGRES}?schema={schema}", args.customers)
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
