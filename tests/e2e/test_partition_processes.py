"""`journeys project --partition K/N` as real processes: two parts project while touchpoints are
written; one is killed with SIGKILL mid-stream and started again; the view equals one runner's.
On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

from journeys.settings import Settings
from projections.system import System
from tests.factories import tp
from tests.integration.test_partitions import assert_equals_one_runner, contacts_in_every_part
from tests.integration.test_projection import DEAL_TYPES
from tests.waiting import wait_until


def part_process(settings: Settings, part: str) -> subprocess.Popen:
    env = {**os.environ, "JOURNEYS_DATABASE_URL": settings.database_url, "JOURNEYS_KEY_FILE": settings.key_file,
           "JOURNEYS_PROJECTION_BATCH_SIZE": "50", "JOURNEYS_PROJECTION_PARTS": "2"}
    return subprocess.Popen([sys.executable, "-m", "api.cli", "project", "--partition", part], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> str:
    process.send_signal(sig)
    return process.communicate(timeout=30)[0].decode()


def test_two_part_processes_one_killed_mid_stream(settings: Settings):
    reader = System.build(settings.model_copy(update={"projection_parts": 2}))  # as the API would read
    processes = []
    try:
        contacts = contacts_in_every_part(reader, 2, per_part=4)
        rng = random.Random(11)
        touchpoints = [tp(f"t{n:05d}", rng.choice(DEAL_TYPES), rng.random() * 60, customer=rng.choice(contacts),
                          deal_id=rng.choice(["D-1", "D-2", "D-3"])) for n in range(3000)]
        processes = [part_process(settings, "1/2"), part_process(settings, "2/2")]
        for start in range(0, 1500, 100):
            reader.record(touchpoints[start:start + 100])
        wait_until(lambda: reader.runner.position >= 200 or processes[0].poll() is not None, timeout=60,
                   what="both parts to project part of the stream")
        output = stop(processes[0], signal.SIGKILL)
        assert processes[0].returncode == -signal.SIGKILL, output  # it was still running
        for start in range(1500, 3000, 100):
            reader.record(touchpoints[start:start + 100])
        end = reader.app.recorder.max_notification_id() or 0
        assert reader.runner.position < end  # part 1 is gone: the view is not current
        processes[0] = part_process(settings, "1/2")
        assert reader.runner.catch_up(timeout=120) == end
        for process in processes:
            output = stop(process)
            assert process.returncode == 0, output
        counts = {r["subject"]: r["touchpoint_count"] for r in reader.view.query(
            f"SELECT subject, touchpoint_count FROM {reader.view.table('subjects')} WHERE scope = 'deal'")}
        assert counts == {d: sum(t.deal_id == d for t in touchpoints) for d in ("D-1", "D-2", "D-3")}
        assert_equals_one_runner(reader)  # a rebuild by one runner gives the same read models
    finally:
        for process in processes:
            if process.poll() is None:
                stop(process, signal.SIGKILL)
        reader.close()
