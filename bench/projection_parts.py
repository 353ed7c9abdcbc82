"""Projection parts: how fast 1, 2 and 4 `journeys project --partition K/N` processes project the
same log, and the ratio to one process.

For each number of parts: a fresh store of the backend, TOUCHPOINTS touchpoints of CUSTOMERS
customers recorded (a fifth of them in one of 200 deals, so parts write shared instances),
nothing projected; then N processes started at once, timed from their start until every part
has reached the end of the log (a process's start-up, ~1 s, is inside the time: the same for each
N). A part that exits early or a wait past --timeout stops the run with what it printed.

    .venv/bin/python bench/projection_parts.py [--parts 1 2 4] [--touchpoints 60000] [--backend postgresql]

On this 2-core machine more parts than cores cannot go faster than the cores; repeat with
--parts 1 2 4 8 on a bigger one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backends import add_backend_option, each_store

sys.path.insert(0, str(Path(__file__).parents[1]))
from journeys.settings import Settings  # noqa: E402
from journeys.touchpoint import Touchpoint  # noqa: E402
from projections.system import System  # noqa: E402

TYPES = ["email_opened", "website_visited", "inquiry_received", "meeting_held", "demo_delivered", "quote_requested",
         "deal_lost", "proposal_sent", "contract_signed", "order_placed"]
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def record(settings: Settings, touchpoints: int, customers: int) -> int:
    """The touchpoints recorded in batches of 1,000, shuffled in time (late ones too); the log's end."""
    system = System.build(settings)
    try:
        for start in range(0, touchpoints, 1000):
            system.record([
                Touchpoint(touchpoint_id=f"t{i:07d}", customer_id=f"cust-{i * 7919 % customers}@bench.example",
                           type=TYPES[i * 31 % len(TYPES)], channel="web",
                           occurred_at=T0 + timedelta(minutes=(i * 104_729) % (touchpoints * 3)), source="bench",
                           **({"deal_id": f"D-{i % 200}"} if i % 5 == 0 else {}))
                for i in range(start, min(touchpoints, start + 1000))
            ])
        return system.app.recorder.max_notification_id() or 0
    finally:
        system.close()


def project(settings: Settings, parts: int, end: int, timeout: float) -> float:
    """Seconds from starting `parts` part processes until all have reached `end`."""
    env = {**os.environ, "JOURNEYS_DATABASE_URL": settings.database_url, "JOURNEYS_KEY_FILE": settings.key_file,
           "JOURNEYS_PROJECTION_PARTS": str(parts)}
    reader = System.build(settings.model_copy(update={"projection_parts": parts}))
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-m", "api.cli", "project", "--partition", f"{k}/{parts}"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for k in range(1, parts + 1)]
    try:
        while reader.runner.position < end:
            for process in processes:
                if process.poll() is not None:
                    sys.exit(f"a part exited ({process.returncode}): {process.communicate()[0].decode()[-2000:]}")
            if time.perf_counter() - started > timeout:
                sys.exit(f"waited {timeout:.0f} s for {parts} parts to reach position {end}; they are at "
                         f"{reader.runner.position} (the slowest)")
            time.sleep(0.05)
        return time.perf_counter() - started
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.communicate(timeout=30)
        reader.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--touchpoints", type=int, default=60_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=900, help="longest wait for the parts, in seconds")
    add_backend_option(parser)
    args = parser.parse_args()
    backends = args.backend or ["postgresql"]  # SQLite has one writer at a time: parts cannot help there
    for backend in backends:
        print(f"{backend}: {args.touchpoints:,} touchpoints of {args.customers:,} customers, {os.cpu_count()} cores",
              flush=True)
        one = None
        for parts in args.parts:
            for _, settings in each_store([backend]):  # a fresh store for each run
                end = record(settings, args.touchpoints, args.customers)
                seconds = project(settings, parts, end, args.timeout)
            rate = end / seconds
            one = one or rate
            print(f"  {parts} part{'s' if parts > 1 else ' '}  {seconds:7.1f} s  {rate:9,.0f} events/s  "
                  f"ratio to one part {rate / one:5.2f}", flush=True)


if __name__ == "__main__":
    main()
