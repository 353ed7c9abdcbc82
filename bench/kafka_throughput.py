"""Kafka ingestion benchmark, in one run on PostgreSQL.

For each N (default 20,000 and 40,000 touchpoints over M=2,000 customers) and each number C
of consumers (default 1):
  1. end to end: C `journeys consume` processes in one group and a `journeys project` (or
     --parts P processes `journeys project --partition K/P`) are started on a fresh
     6-partition topic; once every consumer holds partitions, N plain-JSON touchpoints are
     produced; timed from the first stored event until all N are stored, and
     until the projections are current; the biggest consumer's peak RSS (VmHWM) is read
     before they stop;
  2. raw rate: kafka-python alone consumes the same topic (timed from the first message).
With several C, the stored rate's ratio to the first C's is printed: how consumers scale.

    .venv/bin/python bench/kafka_throughput.py [--sizes 20000 40000] [--customers 2000] [--consumers 1 2 4]
        [--parts 2]

Uses JOURNEYS_KAFKA_BOOTSTRAP_SERVERS if set, else a local Tansu broker, and
JOURNEYS_BENCH_POSTGRES_URL (default the local server's `test` database).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

sys.path.insert(0, str(Path(__file__).parents[1]))
from tests.brokers import tansu  # noqa: E402

POSTGRES = os.environ.get("JOURNEYS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TYPES = ["ad_clicked", "website_visited", "email_opened", "lead_captured", "inquiry_received",
         "reply_received", "meeting_held", "demo_delivered", "quote_requested", "contract_signed"]


def bodies(n: int, customers: int) -> Iterator[dict]:
    """N plain-JSON touchpoints over CUSTOMERS customers, in order."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        yield {"touchpoint_id": f"tp-{i}", "customer_id": f"cust-{i * 7919 % customers}", "type": TYPES[i % len(TYPES)],
               "channel": "web", "occurred_at": (t0 + timedelta(seconds=i)).isoformat(),
               "source": "bench", "properties": {"page": "/pricing"}}


def new_topic(bootstrap: str, partitions: int = 6) -> str:
    """A fresh topic of PARTITIONS partitions, and its dead-letter topic (TOPIC.dlq)."""
    topic = f"bench-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in (topic, f"{topic}.dlq")])
    admin.close()
    return topic


def produce(bootstrap: str, topic: str, touchpoints: Iterable[dict]) -> int:
    """Send each touchpoint as plain JSON keyed by its customer, as publishers do; how many were sent."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024, acks=1)
    sent = 0
    for body in touchpoints:
        producer.send(topic, key=body["customer_id"].encode(), value=json.dumps(body).encode())
        sent += 1
    producer.flush()
    producer.close()
    return sent


PROGRESS_EVERY = 10.0
STALL_AFTER = 60.0


def raw_rate(bootstrap: str, topic: str, n: int) -> float:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
                             enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=2000,
                             session_timeout_ms=6000, max_poll_interval_ms=10000)
    seen, started = 0, None
    stall = Stall(f"raw kafka-python to consume {n} messages of {topic}")
    while seen < n:
        for messages in consumer.poll(timeout_ms=1000).values():
            started = started or time.perf_counter()
            seen += len(messages)
        stall.check(seen, f"{seen} consumed")
    rate = n / (time.perf_counter() - started)
    consumer.close()
    return rate


def end_to_end(bootstrap: str, topic: str, touchpoints: list[dict], database_url: str, consumers: int = 1,
               parts: int = 1, partitions: int = 6) -> tuple[float, float, float]:
    """CONSUMERS `journeys consume` processes in one group and PARTS `journeys project
    --partition K/PARTS` (the projection in parts; one part is the whole): started, and
    once the group has spread the partitions over every consumer, the touchpoints produced; timed
    from the first stored event. (stored rate, rate with the projections current, peak RSS of
    the biggest consumer in MB)."""
    n = len(touchpoints)
    logs = tempfile.mkdtemp()  # the consumers' logs and the store's key file, removed at the end
    env = {**os.environ, "JOURNEYS_DATABASE_URL": database_url, "JOURNEYS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "JOURNEYS_KEY_FILE": f"{logs}/keys",
           "JOURNEYS_KAFKA_TOPIC": topic, "JOURNEYS_KAFKA_GROUP_ID": f"bench-{uuid.uuid4().hex[:6]}",
           "JOURNEYS_KAFKA_DEAD_LETTER_TOPIC": f"{topic}.dlq", "JOURNEYS_RUN_PROJECTIONS": "false",
           "JOURNEYS_LOG_FORMAT": "text", "JOURNEYS_LOG_LEVEL": "INFO"}
    cli = [sys.executable, "-m", "api.cli"]
    projectors = [subprocess.Popen([*cli, "project", "--partition", f"{k}/{parts}"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for k in range(1, parts + 1)]
    group = []
    for k in range(consumers):
        with open(f"{logs}/consumer-{k}.log", "w") as log:
            group.append(subprocess.Popen([*cli, "consume"], env=env, stdout=subprocess.DEVNULL, stderr=log))
    processes = [*group, *projectors]
    try:
        stall = Stall(f"the {consumers} consumers of {topic} to share its {partitions} partitions", *processes)
        while (assigned := _assigned(logs, consumers, topic)) is None or sum(assigned) != partitions \
                or sum(1 for a in assigned if a) != min(consumers, partitions):
            stall.check(sum(assigned or []), f"partitions per consumer {assigned}")
            time.sleep(0.1)
        produce(bootstrap, topic, touchpoints)
        schema = database_url.split("schema=")[1]
        started = all_stored = None
        stall = Stall(f"{consumers} `journeys consume` and {parts} `journeys project` to store and project {n} "
                      "touchpoints", *processes)
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            while True:
                stored, projected = _progress(conn, schema)
                if stored and started is None:
                    started = time.perf_counter()
                if stored >= n and all_stored is None:
                    all_stored = time.perf_counter()
                if stored >= n and projected >= n:
                    break
                stall.check(stored + projected, f"{stored} stored, {projected} projected")
                time.sleep(0.02)
        current = time.perf_counter()
        peak = max(_peak_rss_mb(c.pid) for c in group)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(30)
        shutil.rmtree(logs, ignore_errors=True)
    return n / (all_stored - started), n / (current - started), peak


def _assigned(logs: str, consumers: int, topic: str) -> list[int] | None:
    """How many partitions of the topic each consumer holds, by the last assignment it logged
    (None until each has logged one)."""
    found = []
    for k in range(consumers):
        lines = [line for line in Path(f"{logs}/consumer-{k}.log").read_text().splitlines()
                 if "assigned partitions:" in line]
        if not lines:
            return None
        found.append(lines[-1].count(f"{topic}:"))
    return found


class Stall:
    """Every wait is bounded and says what it waits for: progress every PROGRESS_EVERY seconds, and
    an exit naming the wait (and any process that died) after STALL_AFTER seconds without progress."""

    def __init__(self, what: str, *processes: subprocess.Popen):
        self.what, self.processes = what, processes
        self.last, self.moved, self.said = -1, time.monotonic(), time.monotonic()

    def check(self, done: int, state: str) -> None:
        now = time.monotonic()
        if done != self.last:
            self.last, self.moved = done, now
        if now - self.said >= PROGRESS_EVERY:
            print(f"  waiting for {self.what}: {state}", flush=True)
            self.said = now
        dead = [f"{' '.join(p.args[-1:])} exited with {p.returncode}" for p in self.processes if p.poll() is not None]
        if dead or now - self.moved > STALL_AFTER:
            for p in self.processes:
                if p.poll() is None:
                    p.kill()
            reason = "; ".join(dead) or f"no progress for {STALL_AFTER:.0f} s"
            raise SystemExit(f"gave up waiting for {self.what} ({state}): {reason}")


def _progress(conn: psycopg.Connection, schema: str) -> tuple[int, int]:
    """Touchpoints stored, and touchpoints the projection has taken into the view."""
    try:
        stored = conn.execute(
            f'SELECT count(*) FROM "{schema}".journeys_events WHERE topic LIKE %s', ["%TouchpointRecorded"]
        ).fetchone()[0]
        projected = conn.execute(f'SELECT count(*) FROM "{schema}".jv_touchpoints').fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0, 0
    return stored, projected


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def broker() -> Iterator[str]:
    """JOURNEYS_KAFKA_BOOTSTRAP_SERVERS if set, else a local Tansu broker for the run."""
    configured = os.environ.get("JOURNEYS_KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    with tempfile.TemporaryDirectory() as tmp, tansu(Path(tmp) / "tansu.log") as bootstrap:
        yield bootstrap


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 40_000])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--consumers", type=int, nargs="+", default=[1],
                        help="run the end-to-end measure with each number of consumers in one group (e.g. 1 2 4)")
    parser.add_argument("--parts", type=int, default=1, help="projection parts (`journeys project --partition K/N`)")
    args = parser.parse_args()
    with broker() as bootstrap:
        for n in args.sizes:
            stored_by: dict[int, float] = {}
            for consumers in args.consumers:
                topic = new_topic(bootstrap)
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                try:
                    stored, rate, peak = end_to_end(bootstrap, topic, list(bodies(n, args.customers)),
                                                    f"{POSTGRES}?schema={schema}", consumers, args.parts)
                finally:
                    with psycopg.connect(POSTGRES, autocommit=True) as conn:
                        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                raw = raw_rate(bootstrap, topic, n)  # the same messages, by kafka-python alone
                stored_by[consumers] = stored
                print(f"N={n:>7}, {consumers} consumer(s), {args.parts} projection part(s): "
                      f"raw kafka-python {raw:8.0f}/s | stored {stored:6.0f}/s, "
                      f"projections current (PostgreSQL) {rate:6.0f}/s = {rate / raw:.2f} of raw | "
                      f"biggest consumer's peak RSS {peak:.0f} MB", flush=True)
            if len(stored_by) > 1 and args.consumers[0] in stored_by:
                one = stored_by[args.consumers[0]]
                print("  stored rate against " + f"{args.consumers[0]} consumer(s): " + ", ".join(
                    f"{c}: {rate / one:.2f}" for c, rate in stored_by.items()), flush=True)


if __name__ == "__main__":
    main()
