"""A customer with 50,000 touchpoints: a cold append and a late touchpoint cost what a small one does.

For each backend: stores N touchpoints of one customer and projects them, then
measures (medians of REPEAT runs, in one run of this script):
- cold append: one more touchpoint with the writer's cache emptied (snapshot + the
  events after it + one index look-up), against loading the whole history as it
  was done before snapshots;
- late touchpoint: the projection of a touchpoint that occurred a minute before
  the latest one (re-derived from the stages just before it), against a full
  re-derivation of the customer's touchpoints; and of one that occurred before 90% of
  the history, either changing nothing after it or moving a stage's entry for good (the first
  such a long way back, the next each a minute before the last);
- a page of 100 of the customer's history (GET /customers/{id}/history), first and last.

    .venv/bin/python bench/large_customer.py [--touchpoints 50000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from backends import add_backend_option, each_store

from journeys.playbook import Scope
from journeys.settings import Settings
from journeys.stages import derive
from journeys.touchpoint import Touchpoint
from projections.history import Window, history
from projections.stages import StoredTouchpoint
from projections.system import System

TYPES = ["website_visited", "email_opened", "ad_clicked", "reply_received", "meeting_held"]
T0 = datetime(2020, 1, 1, tzinfo=UTC)


def touchpoint(n: int, minutes: float, type_: str | None = None) -> Touchpoint:
    return Touchpoint(
        touchpoint_id=f"t{n:07d}", customer_id="big@example.com", type=type_ or TYPES[n % len(TYPES)],
        channel="web", occurred_at=T0 + timedelta(minutes=minutes), source="bench", properties={"n": n},
    )


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def measure(label: str, settings: Settings, n: int, repeat: int) -> None:
    system = System.build(settings)
    try:
        started = time.perf_counter()
        for start in range(0, n, 1000):
            system.record([touchpoint(i, i) for i in range(start, min(n, start + 1000))])
        system.runner.catch_up()
        filled = time.perf_counter() - started
        record_id = system.keyring.find("big@example.com")
        repository = system.app.customers

        cold, full_load = [], []
        for r in range(repeat):
            repository.cache.clear()
            t = time.perf_counter()
            system.app.record([touchpoint(n + r, n + r)])
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            aggregate = None
            for stored in repository._select_after({record_id: 0}):  # the whole history, as before snapshots
                aggregate = system.app.mapper.to_domain_event(stored).mutate(aggregate)
            full_load.append(time.perf_counter() - t)
        system.runner.catch_up()

        late, full_derive = [], []
        latest = n + repeat
        for r in range(repeat):
            system.app.record([touchpoint(latest + 1 + r, latest + r - 0.5, "demo_delivered")])
            t = time.perf_counter()
            system.runner.run_once()
            late.append(time.perf_counter() - t)
            t = time.perf_counter()
            rows = system.view.touchpoints_from(Scope.customer, str(record_id), T0)  # from the start, as before
            derive([StoredTouchpoint(row) for row in rows], system.playbook)
            full_derive.append(time.perf_counter() - t)
        # Late touchpoints that occurred before 90% of the history: one that changes nothing from
        # the next touchpoint on (a visit), and one that changes the stages for good (a demo, each
        # earlier than the one before, so every one moves the stage's entry again).
        next_id, tenth = latest + repeat + 1, n / 10
        deep_quiet, deep_moving = [], []
        for r in range(repeat):
            for samples, minutes, type_ in ((deep_quiet, tenth + r / 100, "website_visited"),
                                            (deep_moving, tenth - r, "demo_delivered")):
                system.app.record([touchpoint(next_id, minutes, type_)])
                next_id += 1
                t = time.perf_counter()
                system.runner.run_once()
                samples.append(time.perf_counter() - t)
        count = system.view.customer(str(record_id))["touchpoint_count"]

        first_page, last_page = [], []  # GET /customers/{id}/history?limit=100: the first page and the last
        found = history(system, Scope.customer, str(record_id), Window(), None, count - 100)
        cursor = found["next_cursor"]
        for _ in range(repeat):
            t = time.perf_counter()
            page = history(system, Scope.customer, str(record_id), Window(), None, 100)
            first_page.append(time.perf_counter() - t)
            t = time.perf_counter()
            tail = history(system, Scope.customer, str(record_id), Window(), cursor, 100)
            last_page.append(time.perf_counter() - t)
        assert len(page["touchpoints"]) == 100 and tail["next_cursor"] is None and tail["touchpoints"]
    finally:
        system.close()
    print(
        f"{label:10s} {count} touchpoints (filled in {filled:.0f} s)\n"
        f"  cold append:     {median_ms(cold):7.1f} ms  (whole history loaded: {median_ms(full_load):7.1f} ms, "
        f"{statistics.median(full_load) / statistics.median(cold):.0f}x)\n"
        f"  late touchpoint: {median_ms(late):7.1f} ms  (full re-derivation alone: {median_ms(full_derive):7.1f} ms, "
        f"{statistics.median(full_derive) / statistics.median(late):.0f}x)\n"
        f"  late touchpoint before 90% of the history: {median_ms(deep_quiet):7.1f} ms changing nothing after it; "
        f"moving a stage for good: {deep_moving[0] * 1000:7.1f} ms the first (the stage entered ~{0.9 * n:,.0f} "
        f"touchpoints earlier than before), {median_ms(deep_moving[1:] or deep_moving):7.1f} ms the next "
        f"(each entering it a minute before the last)\n"
        f"  history page of 100: first {median_ms(first_page):7.1f} ms, last {median_ms(last_page):7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--touchpoints", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=20)
    add_backend_option(parser)
    args = parser.parse_args()
    for backend, settings in each_store(args.backend):
        measure(backend, settings, args.touchpoints, args.repeat)


if __name__ == "__main__":
    main()
