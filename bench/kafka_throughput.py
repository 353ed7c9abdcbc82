"""Kafka ingestion benchmark, in one run on PostgreSQL.

For each N (default 20,000 and 40,000 touchpoints over M=2,000 customers):
  1. produce N plain-JSON touchpoints to a fresh 6-partition topic;
  2. raw rate: kafka-python alone consumes the topic (timed from the first message);
  3. end to end: `journeys consume` and `journeys project` as separate processes,
     timed from the first stored event until all N are stored and the projections
     are current; the consumer's peak RSS (VmHWM) is read before it stops.

    .venv/bin/python bench/kafka_throughput.py [--sizes 20000 40000] [--customers 2000]

Uses JOURNEYS_KAFKA_BOOTSTRAP_SERVERS if set, else a local Tansu broker, and
JOURNEYS_BENCH_POSTGRES_URL (default the local server's `test` database).
"""

from __future__ import annotations

import argparse
import json
import os
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


def end_to_end(bootstrap: str, topic: str, n: int, database_url: str) -> tuple[float, float]:
    env = {**os.environ, "JOURNEYS_DATABASE_URL": database_url, "JOURNEYS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "JOURNEYS_KEY_FILE": f"{tempfile.gettempdir()}/kafka-bench-{uuid.uuid4().hex[:6]}.keys",
           "JOURNEYS_KAFKA_TOPIC": topic, "JOURNEYS_KAFKA_GROUP_ID": f"bench-{uuid.uuid4().hex[:6]}",
           "JOURNEYS_KAFKA_DEAD_LETTER_TOPIC": f"{topic}.dlq", "JOURNEYS_RUN_PROJECTIONS": "false"}
    cli = [sys.executable, "-m", "api.cli"]
    consumer = subprocess.Popen([*cli, "consume"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    projector = subprocess.Popen([*cli, "project"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    schema = database_url.split("schema=")[1]
    started, peak = None, 0.0
    stall = Stall(f"`journeys consume` and `journeys project` to store and project {n} touchpoints", consumer, projector)
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        while True:
            stored, projected = _progress(conn, schema)
            if stored and started is None:
                started = time.perf_counter()
            if stored >= n and projected >= n:
                break
            stall.check(stored + projected, f"{stored} stored, {projected} projected")
            time.sleep(0.02)
    elapsed = time.perf_counter() - started
    peak = _peak_rss_mb(consumer.pid)
    for process in (consumer, projector):
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    return n / elapsed, peak


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
    args = parser.parse_args()
    with broker() as bootstrap:
        for n in args.sizes:
            topic = new_topic(bootstrap)
            produce(bootstrap, topic, bodies(n, args.customers))
            raw = raw_rate(bootstrap, topic, n)
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            try:
                rate, peak = end_to_end(bootstrap, topic, n, f"{POSTGRES}?schema={schema}")
            finally:
                with psycopg.connect(POSTGRES, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            print(f"N={n:>7}: raw kafka-python {raw:8.0f}/s | end to end (stored + projections current, "
                  f"PostgreSQL) {rate:6.0f}/s = {rate / raw:.2f} of raw | consumer peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
