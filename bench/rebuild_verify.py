"""Auditors' operations at scale: verify and rebuild on a store of N events (default 1,000,000).

For each backend: records N touchpoints (customers of 10 touchpoints each, in batches
of 1,000, with the live projection caught up, as a service would have it), takes a
checkpoint, then measures in one run of this script:
- verify: `journeys verify` (every hash chain recomputed, every checkpoint's Merkle
  root and seal checked), events/s;
- rebuild: `journeys rebuild-projections` (a new generation of the read models
  derived from every stored event beside the live one, compared with it, switched
  to), events/s; REPEAT times, the median quoted.

    .venv/bin/python bench/rebuild_verify.py [--events 1000000] [--repeat 3] [--backend sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from backends import add_backend_option, each_store

from journeys.settings import Settings
from journeys.touchpoint import Touchpoint
from projections.system import System

TYPES = ["ad_clicked", "lead_captured", "website_visited", "email_opened", "meeting_held", "requirements_shared",
         "demo_delivered", "quote_requested", "contract_sent", "order_placed"]
T0 = datetime(2024, 1, 1, tzinfo=UTC)
PER_CUSTOMER = 10


def touchpoints(start: int, stop: int) -> list[Touchpoint]:
    return [
        Touchpoint(
            touchpoint_id=f"t{n:08d}", customer_id=f"c{n // PER_CUSTOMER:07d}@bench.example",
            type=TYPES[n % PER_CUSTOMER], channel="web", occurred_at=T0 + timedelta(days=n % PER_CUSTOMER, minutes=n // 1000),
            source="bench", deal_id=f"D{n // (PER_CUSTOMER * 3):06d}", properties={"n": n},
        )
        for n in range(start, stop)
    ]


def measure(label: str, settings: Settings, events: int, repeat: int, workers: int) -> None:
    system = System.build(settings.model_copy(update={"rebuild_workers": workers}))
    try:
        started = time.perf_counter()
        for start in range(0, events, 1000):
            system.record(touchpoints(start, min(events, start + 1000)))
            system.runner.catch_up()
        filled = time.perf_counter() - started
        system.audit.checkpoint()
        t = time.perf_counter()
        report = system.audit.verify()
        verify = time.perf_counter() - t
        assert report.ok and report.events >= events, (report.events, report.problems[:3])
        stored = report.events  # the touchpoints and each customer's creation
        rebuilds, phases = [], []
        for _ in range(repeat):
            rebuilt = system.runner.rebuild(keep_retired=0)
            assert rebuilt.events == stored and rebuilt.reclassified == 0, rebuilt
            rebuilds.append(rebuilt.seconds)
            phases.append(rebuilt.first_pass)
            system.runner.drop_retired(0)
    finally:
        system.close()
    median = statistics.median(rebuilds)
    print(
        f"{label:10s} {stored:,} stored events: {events:,} touchpoints of {events // PER_CUSTOMER:,} customers "
        f"(recorded and projected in {filled:.0f} s, {events / filled:,.0f} touchpoints/s)\n"
        f"  verify:  {verify:6.1f} s  {stored / verify:9,.0f} events/s\n"
        f"  rebuild: {median:6.1f} s  {stored / median:9,.0f} events/s  (median of {repeat}: "
        f"{', '.join(f'{s:.1f}' for s in rebuilds)} s)\n"
        f"  first pass in {phases[0].processes} processes, the median run's phases: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases[rebuilds.index(median)].seconds.items()),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="processes the rebuild derives in (0: one per core)")
    add_backend_option(parser)
    args = parser.parse_args()
    for backend, settings in each_store(args.backend):
        measure(backend, settings, args.events, args.repeat, args.workers)


if __name__ == "__main__":
    main()
