"""The fold alone: microseconds a touchpoint for `journeys.stages.fold`, the one derivation the
live projection, a rebuild and a replay share, per scope of the default playbook.

N touchpoints of one instance (types drawn from the playbook's evidence and some that are no
evidence, one a minute), folded REPEAT times from the initial stages; the best run is quoted
(the fold does no I/O, so the best is the least disturbed by the machine).

    .venv/bin/python bench/fold.py [--touchpoints 45000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from journeys.playbook import load_playbook  # noqa: E402
from journeys.stages import fold, initial_stages  # noqa: E402
from projections.stages import StoredTouchpoint  # noqa: E402

TYPES = ["website_visited", "email_opened", "ad_clicked", "lead_captured", "meeting_held", "demo_delivered",
         "quote_requested", "contract_signed", "product_used", "customer_churned"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--touchpoints", type=int, default=45_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    playbook, rng, t0 = load_playbook("default"), random.Random(1), datetime(2026, 1, 1, tzinfo=UTC)
    touchpoints = [StoredTouchpoint({"touchpoint_id": f"t{i}", "type": rng.choice(TYPES), "criteria": None,
                                     "occurred_at": t0 + timedelta(minutes=i), "record_id": "r", "channel": "web",
                                     "campaign": None}) for i in range(args.touchpoints)]
    for scope in playbook.scopes:
        runs = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            derivation = fold(initial_stages(playbook, scope), touchpoints, playbook)
            runs.append(time.perf_counter() - started)
        print(f"{scope.value:9s} {len(playbook.journeys_of(scope))} journeys: {min(runs) * 1e6 / len(touchpoints):5.2f} µs "
              f"a touchpoint (best of {args.repeat}), {len(derivation.transitions):,} transitions", flush=True)


if __name__ == "__main__":
    main()
