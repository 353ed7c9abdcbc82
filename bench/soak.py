"""A soak: a million touchpoints through the API and Kafka at once, with the memory of each process.

On a fresh PostgreSQL schema: `journeys serve` (not projecting), `journeys consume` and `journeys
project` as separate processes; half the touchpoints are produced to Kafka, half posted to
POST /touchpoints/batch in batches of 1,000 by a thread, over CUSTOMERS customers. Every 100,000
touchpoints stored it prints each process's RSS (VmRSS); at the end, how much each grew from
the first sample (after warm-up) to the last. Every wait is bounded and says what it waits for.

    .venv/bin/python bench/soak.py [--touchpoints 1000000] [--customers 100000]

Uses JOURNEYS_KAFKA_BOOTSTRAP_SERVERS if set, else a local Tansu broker, and
JOURNEYS_BENCH_POSTGRES_URL (default the local server's `test` database).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka_throughput import POSTGRES, TYPES, Stall, broker, produce

sys.path.insert(0, str(Path(__file__).parents[1]))
from journeys.settings import Settings  # noqa: E402
from journeys.storage.api_keys import KeyStore, Role  # noqa: E402
from projections.system import System  # noqa: E402
from tests.brokers import free_port, wait_for_port  # noqa: E402

EVERY = 100_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post_all(base: str, key: str, n: int, customers: int, failed: list[str], retried: list[str]) -> None:
    """n touchpoints in batches of 1,000, ids and customers apart from the Kafka half. A 503 is
    retried after its Retry-After, as a publisher would (at most 10 times a batch; each counted)."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
        for start in range(0, n, 1000):
            items = [{"touchpoint_id": f"http-{i}", "customer_id": f"cust-{i * 7919 % customers}",
                      "type": TYPES[i % len(TYPES)], "channel": "web",
                      "occurred_at": (t0 + timedelta(seconds=i)).isoformat(), "source": "soak",
                      "properties": {"page": "/pricing"}} for i in range(start, min(n, start + 1000))]
            response = client.post("/touchpoints/batch", json=items)
            for _ in range(10):
                if response.status_code != 503:
                    break
                retried.append(response.text[:300])
                time.sleep(float(response.headers.get("Retry-After", "2")))
                response = client.post("/touchpoints/batch", json=items)
            if response.status_code != 200:
                failed.append(f"{response.status_code} {response.text[:300]}")
                return


def stored(conn: psycopg.Connection, schema: str) -> tuple[int, int]:
    try:
        found = conn.execute(f'SELECT count(*) FROM "{schema}".journeys_events WHERE topic LIKE %s',
                             ["%TouchpointRecorded"]).fetchone()
        projected = conn.execute(f'SELECT count(*) FROM "{schema}".jv_touchpoints').fetchone()
    except psycopg.errors.UndefinedTable:
        return 0, 0
    return (found[0] if found else 0), (projected[0] if projected else 0)


def soak(bootstrap: str, n: int, customers: int) -> None:
    topic, schema = f"soak-{uuid.uuid4().hex[:6]}", f"bench_{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(t, num_partitions=6, replication_factor=1) for t in (topic, f"{topic}.dlq")])
    admin.close()
    keys = f"{tempfile.gettempdir()}/soak-{uuid.uuid4().hex[:6]}.keys"
    url = f"{POSTGRES}?schema={schema}"
    system = System.build(Settings(database_url=url, key_file=keys))
    key = KeyStore(system.view).create("soak", Role.publisher)
    system.close()
    port = free_port()
    env = {**os.environ, "JOURNEYS_DATABASE_URL": url, "JOURNEYS_KEY_FILE": keys, "JOURNEYS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "JOURNEYS_KAFKA_TOPIC": topic, "JOURNEYS_KAFKA_GROUP_ID": f"soak-{uuid.uuid4().hex[:6]}",
           "JOURNEYS_KAFKA_DEAD_LETTER_TOPIC": f"{topic}.dlq", "JOURNEYS_RUN_PROJECTIONS": "false",
           "JOURNEYS_RATE_LIMIT_PER_MINUTE": "1000000"}
    cli = [sys.executable, "-m", "api.cli"]
    logs = tempfile.mkdtemp(prefix="soak-logs-")
    commands = {"api": ["serve", "--port", str(port)], "consumer": ["consume"], "projector": ["project"]}
    processes = {
        name: subprocess.Popen([*cli, *command], env=env, stdout=subprocess.DEVNULL,
                               stderr=open(f"{logs}/{name}.log", "w"))  # noqa: SIM115  # closed with the process
        for name, command in commands.items()
    }
    print(f"the processes' logs: {logs}", flush=True)
    samples: list[dict[str, float]] = []
    try:
        wait_for_port(port, timeout=60)
        half = n // 2
        failed: list[str] = []
        retried: list[str] = []
        poster = threading.Thread(target=post_all, args=(f"http://127.0.0.1:{port}", key, n - half, customers, failed,
                                                         retried), daemon=True)
        started = time.perf_counter()
        poster.start()
        produce(bootstrap, topic, half, customers)
        stall = Stall(f"{n:,} touchpoints stored and projected", *processes.values())
        print(f"{n:,} touchpoints ({half:,} by Kafka, {n - half:,} by HTTP) over {customers:,} customers; RSS in MB",
              flush=True)
        print(f"  {'stored':>9} {'projected':>9} {'seconds':>8} " + " ".join(f"{p:>9}" for p in processes), flush=True)
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            while True:
                done, projected = stored(conn, schema)
                if failed:
                    raise SystemExit(f"posting failed: {failed[0]}")
                if done >= EVERY * (len(samples) + 1) or (done >= n and projected >= n):
                    samples.append({p: rss_mb(proc.pid) for p, proc in processes.items()})
                    print(f"  {done:9,} {projected:9,} {time.perf_counter() - started:8.0f} "
                          + " ".join(f"{samples[-1][p]:9.0f}" for p in processes), flush=True)
                if done >= n and projected >= n:
                    break
                stall.check(done + projected, f"{done:,} stored, {projected:,} projected")
                time.sleep(5)  # the counts scan the tables: often enough to sample near each 100,000
        first, last = samples[0], samples[-1]
        print("  grew from the first sample to the last: "
              + ", ".join(f"{p} {last[p] - first[p]:+.0f} MB" for p in processes), flush=True)
        print(f"  batches answered 503 and retried: {len(retried)}" + (f" (first: {retried[0]})" if retried else ""),
              flush=True)
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--touchpoints", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped (SIGTERM)"))  # the processes started are stopped too
    with broker() as bootstrap:
        soak(bootstrap, args.touchpoints, args.customers)


if __name__ == "__main__":
    main()
