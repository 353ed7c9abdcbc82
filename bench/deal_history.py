"""A deal with 10,000 touchpoints from 50 contacts: how long a page of its history takes.

For each backend: records the deal (and projects it), then times medians of REPEAT
calls of what GET /deals/{id}/history does (projections/history.py): the first page,
the last page (by cursor), and the first page as known at a moment halfway through
(the same derivation over the touchpoints recorded by then); pages of 1,000.

    .venv/bin/python bench/deal_history.py [--touchpoints 10000] [--repeat 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from backends import add_backend_option, each_store

from journeys.playbook import Scope
from journeys.settings import Settings
from journeys.touchpoint import Touchpoint
from projections.history import Window, history
from projections.system import System

TYPES = ["email_opened", "website_visited", "meeting_held", "requirements_shared", "demo_delivered",
         "quote_requested", "deal_lost", "proposal_sent", "contract_sent", "order_placed"]
T0 = datetime(2025, 1, 1, tzinfo=UTC)
CONTACTS = 50


def timed(call, repeat: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000, result


def measure(label: str, settings: Settings, n: int, repeat: int) -> None:
    system = System.build(settings)
    try:
        halfway = None
        for start in range(0, n, 1000):
            system.record([
                Touchpoint(touchpoint_id=f"t{i:06d}", customer_id=f"contact{i % CONTACTS}@buyer.example",
                           type=TYPES[i % len(TYPES)], channel="web", occurred_at=T0 + timedelta(minutes=i),
                           source="bench", deal_id="BIG")
                for i in range(start, min(n, start + 1000))
            ])
            if start + 1000 >= n // 2 and halfway is None:
                halfway = datetime.now(UTC)
        system.runner.catch_up()
        first_ms, first = timed(lambda: history(system, Scope.deal, "BIG", Window(), None, 1000), repeat)
        cursor, pages = first["next_cursor"], 1
        while True:  # to the last page's cursor
            page = history(system, Scope.deal, "BIG", Window(), cursor, 1000)
            pages += 1
            if page["next_cursor"] is None:
                break
            cursor = page["next_cursor"]
        last_ms, last = timed(lambda: history(system, Scope.deal, "BIG", Window(), cursor, 1000), repeat)
        known_ms, known = timed(lambda: history(system, Scope.deal, "BIG", Window(known_at=halfway), None, 1000), repeat)
        assert first["summary"]["touchpoint_count"] == n and last["next_cursor"] is None
        assert known["summary"]["touchpoint_count"] < n
    finally:
        system.close()
    print(f"{label:10s} deal of {n:,} touchpoints, {CONTACTS} contacts, {pages} pages of 1,000 (medians of {repeat})\n"
          f"  first page: {first_ms:7.1f} ms   last page: {last_ms:7.1f} ms   "
          f"first page as known halfway: {known_ms:7.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--touchpoints", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=10)
    add_backend_option(parser)
    args = parser.parse_args()
    for backend, settings in each_store(args.backend):
        measure(backend, settings, args.touchpoints, args.repeat)


if __name__ == "__main__":
    main()
