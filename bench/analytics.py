"""Marketing analytics at a million customers and ten million transitions, SQLite and PostgreSQL.

Fills the read models the projection keeps (subjects, positions, transitions with the stays
they ended, campaign touchpoints, the stage-combination counters) with synthetic customers
walking the four customer journeys (advancing, sometimes skipping a stage or restarting),
then times what each analytics endpoint runs (projections/analytics.py, the view's segment
query), as the median and the 99th percentile (nearest rank) of repeated runs.

    .venv/bin/python bench/analytics.py [--customers 1000000] [--runs 30] [--backend sqlite]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from backends import add_backend_option, each_store  # noqa: E402

from journeys.customer import key_context  # noqa: E402
from journeys.playbook import Scope  # noqa: E402
from journeys.settings import Settings  # noqa: E402
from journeys.storage.tables import ts  # noqa: E402
from projections.analytics import Filters  # noqa: E402
from projections.storage.rows import combination  # noqa: E402
from projections.storage.schema import POSITIONS, SUBJECTS, TRANSITIONS  # noqa: E402
from projections.system import System  # noqa: E402

START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 670
CAMPAIGNS = [f"campaign-{i:02d}" for i in range(40)]
CHANNELS = ["web", "email", "ads", "social", "event"]
TOUCHPOINT_COLUMNS = ["record_id", "touchpoint_id", "type", "channel", "occurred_at", "recorded_at", "source", "campaign",
                      "customer"]
BATCH = 20_000


def walk(rng: random.Random, stages: list[str], initial: str | None, first_seen: datetime, journey: str,
         subject: str, tid: list[int]) -> tuple[list[list], list]:
    """One customer's transitions in one journey, and its final position row."""
    rows, stage, since, defects = [], initial, first_seen, False
    at = first_seen
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 3, 4, 5, 6))):
        at = at + timedelta(seconds=rng.expovariate(1 / (9 * 86400)))
        index = -1 if stage is None else stages.index(stage)
        restart = stage is not None and rng.random() < 0.05
        if restart:
            target, skipped = initial, []
        else:
            step = 2 if rng.random() < 0.1 else 1
            if index + step >= len(stages):
                break
            target, skipped = stages[index + step], stages[index + 1 : index + step]
        tid[0] += 1
        rows.append([
            "customer", subject, journey, ts(at), f"t{tid[0]}", stage, target, json.dumps(skipped), int(restart),
            "synthetic", None, subject, None, ts(since) if stage is not None else None,
            (at - since).total_seconds() if stage is not None else None,
        ])
        defects = defects or bool(skipped and journey == "seller")
        stage, since = target, at
    position = ["customer", subject, journey, stage, ts(since) if stage is not None else None,
                None, None, None, json.dumps(["skipped"]) if defects else None, None]
    return rows, [stage, defects, position]


def fill(system: System, n: int, keys: bool = False) -> int:
    """n customers; returns how many transitions were stored. With `keys`, each customer has a
    customer key (cust-00000042@bench.example) and a data key, as recorded ones do, so segments and
    timelines can show them; without, records are named cust-00000042 and have no key."""
    rng = random.Random(42)
    view, playbook = system.view, system.playbook
    journeys = playbook.journeys_of(Scope.customer)
    counts: dict[tuple[str, str], int] = {}
    tid, total = [0], 0
    # Secondary indexes are built once at the end: far faster than kept up row by row.
    indexes = ["transitions_stays", "transitions_entries", "positions_since", "positions_stage", "touchpoints_customer"]
    for name in indexes:
        view.execute(f"DROP INDEX IF EXISTS {view.table(name)}")
    for start in range(0, n, BATCH):
        customers, subjects, positions, transitions, touchpoints = [], [], [], [], []
        chunk = range(start, min(n, start + BATCH))
        resolved = system.keyring.resolve(f"cust-{i:08d}@bench.example" for i in chunk) if keys else {}
        for i in chunk:
            record, sealed = f"cust-{i:08d}", None
            if keys:
                record_id, data_key = resolved[f"{record}@bench.example"]
                record, sealed = str(record_id), data_key.seal(f"{record}@bench.example", key_context(record_id))
            first_seen = START + timedelta(seconds=rng.random() * DAYS * 86400)
            customers.append([record, sealed])
            subjects.append(["customer", record, ts(first_seen), ts(first_seen), "t", 1])
            marks = {}
            for journey in journeys:
                model = playbook.journeys[journey]
                rows, (stage, defects, position) = walk(rng, model.stages, model.initial, first_seen, journey, record, tid)
                transitions += rows
                positions.append(position)
                marks[journey] = [stage, defects]
            key = ("customer", combination(playbook, Scope.customer, marks))
            counts[key] = counts.get(key, 0) + 1
            for k in range(rng.choice((1, 2, 2, 3))):  # campaign touches for attribution and leads
                touched = first_seen + timedelta(days=k * rng.random() * 20)
                touchpoints.append([record, f"c{i}-{k}", "ad_clicked", rng.choice(CHANNELS), ts(touched), ts(touched),
                                    "bench", rng.choice(CAMPAIGNS), record])
        total += len(transitions)
        with view.datastore.transaction(commit=True) as c:
            for table, columns, rows in (
                ("customers", ["record_id", "sealed_key"], customers), ("subjects", SUBJECTS.names, subjects),
                ("positions", POSITIONS.names, positions), ("transitions", TRANSITIONS.names, transitions),
                ("touchpoints", TOUCHPOINT_COLUMNS, touchpoints),
            ):
                view.dialect.load(c, view.table(table), columns, rows)
        print(f"  {min(n, start + BATCH):,} customers, {total:,} transitions", end="\r", flush=True)
    print("\n  building indexes", flush=True)
    for statement in view.generation_ddl():
        view.execute(statement)
    with view.datastore.transaction(commit=True) as c:
        view.add_counts(c, counts)
    print("  counting the stays by day", flush=True)
    view.recount_stays()  # as the projection keeps them; these rows were written around it
    print("  crediting the advances and counting the leads by day", flush=True)
    view.recount_credits()
    # As autovacuum would have by then: statistics, and the visibility map index-only scans need.
    view.dialect.analyze(view.datastore, [view.table(t) for t in
                                          ("transitions", "positions", "subjects", "touchpoints", "counts", "customers",
                                           "stay_ends", "stay_times", "stays_open", "credit_days", "advance_days",
                                           "lead_days")])
    print()
    return total


def timed(action, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        action()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, math.ceil(0.99 * len(samples)) - 1)]


def measure(backend: str, settings: Settings, n: int, runs: int) -> None:
    system = System.build(settings)
    try:
        t = time.perf_counter()
        transitions = fill(system, n)
        filled = time.perf_counter() - t
        analytics, view = system.analytics, system.view
        month = Filters(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
        threshold = analytics.stuck_after("buyer", "Evaluation")
        stuck_since = datetime.now(UTC) - timedelta(seconds=threshold)
        cases = [
            ("stage counts (GET /segments/summary)", view.summary),
            ("alignment buyer x seller", lambda: analytics.alignment("buyer", "seller")),
            ("funnel buyer, all time", lambda: analytics.funnel("buyer", Filters())),
            ("funnel buyer, one month", lambda: analytics.funnel("buyer", month)),
            ("funnel buyer, 6 weeks from noon to noon", lambda: analytics.funnel("buyer", Filters(
                datetime(2026, 3, 3, 12, tzinfo=UTC), datetime(2026, 4, 14, 12, tzinfo=UTC)))),
            ("funnel buyer, one month, one campaign", lambda: analytics.funnel(
                "buyer", Filters(month.start, month.end, campaign="campaign-07"))),
            ("time in stage buyer", lambda: analytics.time_in_stage("buyer")),
            ("attribution buyer Evaluation, one month", lambda: analytics.attribution("buyer", "Evaluation", "linear", month)),
            ("attribution buyer Evaluation, all time", lambda: analytics.attribution("buyer", "Evaluation", "linear", Filters())),
            ("attribution buyer, every stage, all time", lambda: [
                analytics.attribution("buyer", stage, "position", Filters()) for stage in system.playbook.journeys["buyer"].stages]),
            ("leads by campaign and by channel, all time", lambda: (analytics.leads(Filters()), analytics.leads(Filters(), "channel"))),
            ("stuck in Evaluation, first page", lambda: view.segment({"buyer": "Evaluation"}, None, 100, Scope.customer, stuck_since)),
        ]
        print(f"{backend}: {n:,} customers, {transitions:,} transitions (filled in {filled:.0f} s); "
              f"median and p99 of {runs} runs")
        for label, action in cases:
            median, p99 = timed(action, runs)
            print(f"  {label:45s} median {median:9.1f} ms   p99 {p99:9.1f} ms", flush=True)
    finally:
        system.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    add_backend_option(parser)
    args = parser.parse_args()
    for backend, settings in each_store(args.backend):
        measure(backend, settings, args.customers, args.runs)


if __name__ == "__main__":
    main()
