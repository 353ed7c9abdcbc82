"""Throughput of POST /touchpoints/batch on SQLite and PostgreSQL, measured in one run.

Starts the real service (uvicorn, projections running in the same process) per
backend on a free loopback port, posts BATCHES batches of BATCH_SIZE touchpoints
spread over CUSTOMERS customers, and reports the median batch latency, the write
rate, and how long the projections took to be current afterwards; then, in the same store,
the rate at which the backend takes the same touchpoints as plain rows by its bulk path
(COPY on PostgreSQL, executemany on SQLite, a transaction per batch), and the ratio of the
product's rate to it.

With --intake segment (or segment-gzip), the same load goes to the Segment-compatible
POST /v1/batch instead (as track calls, gzipped or not), each intake on a fresh store:
the figures of the two endpoints side by side.

With --export, the whole store is then exported as segments (`GET /segments/export`, one
awareness stage at a time, CSV): each row carries its recommendation (the customer's deals,
cases, consent and messages sent read for it), so the figure follows the read side's cost.

With --baseline REV, the same load also runs against the code of an earlier
commit (checked out in a temporary git worktree, served by the same Python), so
both figures come from one run: e.g. the last commit before personal data was
encrypted. With --rounds N both codes run N times, alternating which goes first, and the
median of the N ratios is printed with each: on a shared machine whose speed drifts by
10% within minutes, one pair of runs can show a change that is not there.

    .venv/bin/python bench/batch_throughput.py [--batches 40] [--batch-size 1000] [--customers 5000]
        [--intake touchpoints|segment|segment-gzip ...] [--export] [--separate-projector] [--out-of-order]
        [--baseline REV [--rounds 3]]

With --separate-projector the API only records and a `journeys project` process keeps the
projections current, as a deployment on two cores would run them. With --out-of-order the
occurred times are shuffled over the whole run, so most touchpoints are late for their
customer; it prints how far behind the projection was when the last batch was written.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

TYPES = ["ad_clicked", "website_visited", "email_opened", "lead_captured", "inquiry_received",
         "reply_received", "meeting_held", "demo_delivered", "quote_requested", "contract_signed"]
POSTGRES = os.environ.get("JOURNEYS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batches(n: int, size: int, customers: int, run: str, shuffled: bool = False, campaigns: float = 0.0):
    """The bodies; `shuffled`: occurred times spread out of order over the whole run, so most
    touchpoints are late for their customer (re-derived, not appended); `campaigns`: the share
    of touchpoints that carry one of eight campaigns (credited to the advances after them)."""
    every = round(1 / campaigns) if campaigns else 0
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    span = n * size * 3

    def minutes(k: int) -> int:
        return k * 104_729 % span if shuffled else k

    for b in range(n):
        yield [
            {
                "touchpoint_id": f"{run}-{b}-{i}",
                "customer_id": f"cust-{(b * size + i) * 7919 % customers}",
                "type": TYPES[(b + i) % len(TYPES)],
                "channel": "web",
                "occurred_at": (t0 + timedelta(minutes=minutes(b * size + i))).isoformat(),
                "source": "bench",
                "properties": {"page": "/pricing", "n": i},
                **({"campaign": f"campaign-{i % 8}"} if every and (b * size + i) % every == 0 else {}),
            }
            for i in range(size)
        ]


def as_segment(batch: list[dict]) -> dict:
    """The same touchpoints as Segment track calls: the event name is the type in title case
    (snake_case maps it back), the rest where Segment's SDKs put it."""
    return {"batch": [
        {"type": "track", "event": t["type"].replace("_", " ").title(), "userId": t["customer_id"],
         "messageId": t["touchpoint_id"], "timestamp": t["occurred_at"], "properties": t["properties"],
         "context": {"library": {"name": "bench"}}}
        for t in batch
    ], "sentAt": datetime.now(UTC).isoformat()}


def request_for(intake: str, batch: list[dict]) -> dict:
    """The keyword arguments of the POST that sends a batch to an intake, its body encoded
    (and compressed) already, so that no intake's timing includes the client's work."""
    headers = {"Content-Type": "application/json"}
    if intake == "touchpoints":
        return {"url": "/touchpoints/batch", "content": json.dumps(batch).encode(), "headers": headers}
    body = json.dumps(as_segment(batch)).encode()
    if intake == "segment-gzip":
        return {"url": "/v1/batch", "content": gzip.compress(body), "headers": {**headers, "Content-Encoding": "gzip"}}
    return {"url": "/v1/batch", "content": body, "headers": headers}


def admin_key(server: subprocess.Popen) -> str:
    """The admin key `journeys serve` prints when it starts on a store without keys."""
    found: list[str] = []

    def read() -> None:
        for line in server.stdout:  # type: ignore[union-attr]
            if line.startswith("jrn_") and not found:
                found.append(line.strip())

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 60
    while not found:
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("the server printed no admin key")
        time.sleep(0.05)
    return found[0]


def run(label: str, database_url: str, args, code: str | None = None, intake: str = "touchpoints") -> dict[str, float]:
    port = free_port()
    keys = tempfile.mkdtemp()
    env = {**os.environ, "JOURNEYS_DATABASE_URL": database_url, "JOURNEYS_PORT": str(port),
           "JOURNEYS_KEY_FILE": f"{keys}/journeys.keys", "PYTHONPATH": code or os.getcwd()}
    processes = []
    if args.separate_projector:  # the API only records; `journeys project` projects, in a process of its own
        env["JOURNEYS_RUN_PROJECTIONS"] = "false"
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve"], env=env, cwd=code,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    processes.append(server)
    try:
        headers = {"Authorization": f"Bearer {admin_key(server)}"}
        if args.separate_projector:
            processes.append(subprocess.Popen([sys.executable, "-m", "api.cli", "project"], env=env, cwd=code,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120, headers=headers) as client:
            for _ in range(200):
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            latencies = []
            bodies = list(batches(args.batches, args.batch_size, args.customers, uuid.uuid4().hex[:6],
                                  args.out_of_order, args.campaigns))
            requests = [request_for(intake, body) for body in bodies]
            started = time.perf_counter()
            for request in requests:
                t = time.perf_counter()
                response = client.post(**request)
                latencies.append(time.perf_counter() - t)
                response.raise_for_status()
            written = time.perf_counter()
            behind = client.get("/health").json()["projection_lag"]
            deadline = time.monotonic() + 600
            while (lag := client.get("/health").json()["projection_lag"]) > 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the projections were still {lag} events behind after 600 s")
                time.sleep(0.05)
            current = time.perf_counter()
            exports = [export(client) for _ in range(3)] if args.export else []
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
    total = args.batches * args.batch_size
    result = {
        "median_batch_s": statistics.median(latencies),
        "write_rate": total / (written - started),
        "end_to_end_rate": total / (current - started),
        "raw_rate": raw_load(database_url, bodies),  # in the same store, the service stopped
    }
    print(
        f"{label:10s} {total} touchpoints: median batch {result['median_batch_s'] * 1000:.0f} ms, "
        f"write {result['write_rate']:.0f}/s, projections current {result['end_to_end_rate']:.0f}/s "
        f"({behind} events behind when the last batch was written, current {current - written:.1f} s later); "
        f"the same rows loaded raw {result['raw_rate']:.0f}/s, so projections current at "
        f"{result['end_to_end_rate'] / result['raw_rate']:.2f} of raw"
    )
    if exports:
        rows, seconds = exports[0][0], statistics.median(s for _, s in exports)
        result["export_rate"] = rows / seconds
        print(f"{label:10s} export of {rows} customers: median {seconds * 1000:.0f} ms, {rows / seconds:.0f} rows/s")
    return result


RAW_COLUMNS = ["touchpoint_id", "customer_id", "type", "channel", "occurred_at", "source", "campaign", "properties"]


def raw_load(database_url: str, bodies: list[list[dict]]) -> float:
    """The rate at which the backend takes the same touchpoints as plain rows: a table of their
    fields (properties as JSON text, the touchpoint id its key), loaded the bulk way (COPY on
    PostgreSQL, executemany on SQLite) in a transaction per batch, as the product commits."""
    table = f"raw_{uuid.uuid4().hex[:8]}"
    ddl = f"CREATE TABLE {table} ({', '.join(f'{c} text' for c in RAW_COLUMNS)}, PRIMARY KEY (touchpoint_id))"

    def rows(batch: list[dict]) -> list[tuple]:
        return [(*(b.get(c) for c in RAW_COLUMNS[:-1]), json.dumps(b["properties"])) for b in batch]

    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")  # as eventsourcing opens it
        conn.execute(ddl)
        started = time.perf_counter()
        for batch in bodies:
            conn.execute("BEGIN")
            conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(RAW_COLUMNS))})", rows(batch))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    else:
        url, schema = database_url.split("?schema=")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            conn.execute(ddl.replace(f"TABLE {table}", f'TABLE "{schema}".{table}'))
            started = time.perf_counter()
            for batch in bodies:
                with conn.transaction(), conn.cursor().copy(f'COPY "{schema}".{table} FROM STDIN') as copy:
                    for row in rows(batch):
                        copy.write_row(row)
            elapsed = time.perf_counter() - started
    return sum(len(b) for b in bodies) / elapsed


def export(client: httpx.Client) -> tuple[int, float]:
    """Every customer, exported one awareness stage at a time: (rows, seconds)."""
    started, rows = time.perf_counter(), 0
    for stage in ("Unaware", "Aware", "Interested", "Evaluating", "Purchase"):
        answer = client.get("/segments/export", params={"awareness": stage, "format": "csv"})
        answer.raise_for_status()
        rows += answer.text.count("\n") - 1
    return rows, time.perf_counter() - started


def both_backends(args, code: str | None = None, tag: str = "", intake: str = "touchpoints") -> dict[str, dict[str, float]]:
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        found["sqlite"] = run(f"sqlite{tag}", f"sqlite:///{tmp}/bench.db", args, code, intake)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        found["postgresql"] = run(f"postgresql{tag}", f"{POSTGRES}?schema={schema}", args, code, intake)
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--baseline", help="also run the code of this git revision, for comparison")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --baseline: run both codes this many times, alternating which goes first, "
                             "and print the median ratio (this machine's speed drifts by 10%% within minutes)")
    parser.add_argument("--export", action="store_true", help="also time exporting every customer as segments")
    parser.add_argument("--out-of-order", action="store_true",
                        help="occurred times shuffled over the run: most touchpoints arrive late for their customer")
    parser.add_argument("--campaigns", type=float, default=0.0,
                        help="the share of touchpoints with a campaign (0 to 1; default none)")
    parser.add_argument("--separate-projector", action="store_true",
                        help="serve with JOURNEYS_RUN_PROJECTIONS=false and project in a `journeys project` process")
    parser.add_argument("--intake", action="append", choices=["touchpoints", "segment", "segment-gzip"],
                        help="the endpoint the load goes to (repeatable; default: touchpoints)")
    args = parser.parse_args()
    intakes = args.intake or ["touchpoints"]
    figures = {intake: both_backends(args, tag=f" {intake}" if len(intakes) > 1 else "", intake=intake)
               for intake in intakes}
    now = figures[intakes[0]]
    print(f"postgresql/sqlite write-rate ratio: {now['postgresql']['write_rate'] / now['sqlite']['write_rate']:.2f}")
    for intake in intakes[1:]:
        for backend in ("sqlite", "postgresql"):
            ratio = figures[intake][backend]["write_rate"] / now[backend]["write_rate"]
            print(f"{backend:10s} write rate {intake}/{intakes[0]}: {ratio:.2f}")
    if not args.baseline:
        return
    metrics = ("write_rate", "end_to_end_rate", *(["export_rate"] if args.export else []))
    ratios: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tree = f"{tmp}/baseline"
        subprocess.run(["git", "worktree", "add", "--detach", tree, args.baseline], check=True, capture_output=True)
        try:
            for round_ in range(args.rounds):
                if round_ % 2:  # every other round the baseline goes first: drift favours neither
                    before = both_backends(args, tree, f"@{args.baseline[:10]}")
                    now = both_backends(args)
                else:  # this code first (the first round's ran above)
                    if round_:
                        now = both_backends(args)
                    before = both_backends(args, tree, f"@{args.baseline[:10]}")
                for backend in ("sqlite", "postgresql"):
                    for metric in metrics:
                        ratios.setdefault((backend, metric), []).append(now[backend][metric] / before[backend][metric])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", tree], check=True, capture_output=True)
    for (backend, metric), found in ratios.items():
        each = f" (rounds: {', '.join(f'{r:.2f}' for r in found)})" if len(found) > 1 else ""
        print(f"{backend:10s} {metric:16s} now/baseline: {statistics.median(found):.2f}{each}")


if __name__ == "__main__":
    main()
