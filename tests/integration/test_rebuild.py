"""Rebuilding the read models without downtime, revisions of histories, playbook versions and
the diff before a playbook deploy (issue 9), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import random
import threading
import time
from collections import Counter
from io import StringIO
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from api.cli import app
from journeys.playbook import Scope, load_playbook
from journeys.stages import derive
from journeys.touchpoint import Touchpoint
from projections.system import System
from tests.factories import payload, rid, tp
from tests.waiting import wait_until

cli = CliRunner()
TYPES = ["ad_clicked", "lead_captured", "inquiry_received", "meeting_held", "call_connected", "demo_delivered",
         "needs_assessment_held", "deal_lost", "quote_requested", "contract_signed", "customer_churned"]


def env_for(settings, **extra: str) -> dict[str, str]:
    return {"JOURNEYS_DATABASE_URL": settings.database_url, "JOURNEYS_KEY_FILE": settings.key_file,
            "COLUMNS": "200", **extra}


def new_playbook(tmp_path: Path) -> Path:
    """The default playbook with a meeting qualifying a lead and a demo meaning negotiation."""
    data = yaml.safe_load((Path(__file__).parents[2] / "journeys/playbooks/default.yaml").read_text())
    data["evidence"]["meeting_held"] = {"seller": "Qualifying"}
    data["evidence"]["demo_delivered"] = {"buyer": "Negotiation", "seller": "Presenting", "awareness": "Evaluating"}
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def population(customers: int, seed: int = 9) -> list[Touchpoint]:
    rng = random.Random(seed)
    return [
        tp(f"p{c}-{n}", rng.choice(TYPES), n + rng.random(), customer=f"cust-{c}")
        for c in range(customers) for n in range(rng.randint(1, 6))
    ]


def moves(touchpoints: list[Touchpoint], old, new) -> dict[str, dict[str, tuple]]:
    """Ground truth: customer -> journey -> (stage under old, under new), where they differ."""
    found: dict[str, dict[str, tuple]] = {}
    for customer in sorted({t.customer_id for t in touchpoints}):
        mine = [t for t in touchpoints if t.customer_id == customer]
        before, after = derive(mine, old).stages.positions, derive(mine, new).stages.positions
        changed = {j: (before[j].stage, after[j].stage) for j in after if before[j].stage != after[j].stage}
        if changed:
            found[customer] = changed
    return found


def test_playbook_diff_names_exactly_who_would_move_and_changes_nothing(system: System, settings, tmp_path):
    touchpoints = population(60)
    system.record(touchpoints)
    system.runner.catch_up()
    path = new_playbook(tmp_path)
    expected = moves(touchpoints, system.playbook, load_playbook(str(path)))
    assert 5 < len(expected) < 60  # the change moves some customers, not all
    state = (system.view.summary(), system.view.generations(), system.view.playbooks())

    result = cli.invoke(app, ["playbook", "diff", str(path), "-o", str(tmp_path / "moves.csv")], env=env_for(settings))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "moves.csv").open()))
    found: dict[str, dict[str, tuple]] = {}
    for row in rows:
        assert row["scope"] == "customer" and row["subject"] == rid(system, row["customer_id"])
        found.setdefault(row["customer_id"], {})[row["journey"]] = (row["from_stage"] or None, row["to_stage"] or None)
    assert found == expected
    assert "seller" in result.output  # the counts per journey

    same = cli.invoke(app, ["playbook", "diff", "default"], env=env_for(settings))
    assert same.exit_code == 0, same.output
    assert list(csv.reader(StringIO(same.stdout))) == [["scope", "subject", "customer_id", "journey", "from_stage", "to_stage"]]
    assert (system.view.summary(), system.view.generations(), system.view.playbooks()) == state
    assert not system.view.revisions_of(Scope.customer, [rid(system, c) for c in expected])


def test_a_new_playbook_rebuilds_on_start_reclassifies_exactly_who_moved_and_pauses_the_old(system: System, settings, tmp_path):
    touchpoints = population(40, seed=4)
    system.record(touchpoints)
    system.runner.catch_up()
    path = new_playbook(tmp_path)
    playbook = load_playbook(str(path))
    expected = moves(touchpoints, system.playbook, playbook)
    assert expected

    newer = System.build(settings.model_copy(update={"playbook": str(path)}))
    try:
        assert (system.runner.version, newer.runner.version) == (1, 2)
        newer.runner.catch_up()  # its playbook is newer than the live read models': it rebuilds them first
        live = [g for g in newer.view.generations() if g["state"] == "live"]
        assert [(g["generation"], g["playbook"]) for g in live] == [(2, playbook.fingerprint)]
        for customer in {t.customer_id for t in touchpoints}:
            mine = [t for t in touchpoints if t.customer_id == customer]
            revisions = newer.view.revisions_of(Scope.customer, [rid(newer, customer)])
            assert newer.view.customer(rid(newer, customer))["stages"] == derive(mine, playbook).stages
            if customer not in expected:
                assert revisions == []
                continue
            [revision] = revisions
            assert revision["kind"] == "reclassified" and revision["reason"] == "reclassified under playbook v2"
            assert revision["playbook"] == playbook.fingerprint
            assert {j: (revision["before"][j], revision["after"][j]) for j in revision["after"]} == expected[customer]

        # The process still on v1 stores what it is sent but leaves the v2 read models alone.
        system.record([tp("late-1", "contract_signed", 30, customer="cust-1")])
        assert system.runner.run_once() == 0
        assert "playbook v2" in system.runner.paused and "playbook v1" in system.runner.paused
        newer.runner.catch_up()
        assert newer.view.customer(rid(newer, "cust-1"))["stages"]["buyer"].stage == "Purchase"

        versions = cli.invoke(app, ["playbook", "versions"], env=env_for(settings, JOURNEYS_PLAYBOOK=str(path)))
        assert versions.exit_code == 0, versions.output
        assert "v1" in versions.output and "v2" in versions.output and playbook.fingerprint in versions.output
    finally:
        newer.close()


def test_rebuild_while_serving_reads_stay_whole_and_every_stage_change_goes_out_once(system: System, settings):
    customers = 150
    system.record([tp(f"a{c}-{n}", TYPES[(c + n) % len(TYPES)], n, customer=f"cust-{c}")
                   for c in range(customers) for n in range(4)])
    system.runner.catch_up()
    system.runner.start()
    stop, failures, generations_seen = threading.Event(), [], set()
    reads = Counter()

    def read() -> None:
        while not stop.is_set():
            try:
                counts = system.view.summary()
                listed, after = 0, None
                while page := system.view.segment({}, after, 100):
                    listed, after = listed + len(page), page[-1]["subject"]
                if sum(counts["buyer"].values()) < customers or listed < customers:
                    failures.append((sum(counts["buyer"].values()), listed))
                generations_seen.add(system.view.generation)
                reads["done"] += 1
            except Exception as error:  # a read that fails during the switch is a defect
                failures.append(repr(error))

    written = []

    def write() -> None:
        n = 0
        while not stop.is_set():
            batch = [tp(f"w{n}-{c}", TYPES[(n + c) % len(TYPES)], 10 + n, customer=f"cust-{c}") for c in range(0, customers, 7)]
            system.record(batch)
            written.extend(batch)
            n += 1
            time.sleep(0.02)

    threads = [threading.Thread(target=read), threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    rebuilder = System.build(settings)  # as `journeys rebuild-projections` would, from another process
    try:
        wait_until(lambda: reads["done"] >= 2 and len(written) >= 2, 30, "reads and writes under way")
        rebuilt = rebuilder.runner.rebuild(keep_retired=60)
        done = reads["done"]
        wait_until(lambda: 2 in generations_seen and reads["done"] >= done + 3, 30, "reads of the rebuilt generation")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        rebuilder.close()
    system.runner.stop()
    system.runner.catch_up()

    assert rebuilt.generation == 2 and rebuilt.reclassified == 0 and written
    assert failures == [] and reads["done"] > 5 and generations_seen == {1, 2}
    assert system.view.generation == 2
    for c in range(customers):  # the read models equal a replay of every stored event
        assert system.view.customer(rid(system, f"cust-{c}"))["stages"] == system.app.replay(f"cust-{c}").derivation.stages
    # In occurred order nothing was revised, so the outbox holds each stored transition exactly once.
    key = ("subject", "journey", "from_stage", "to_stage", "touchpoint_id")
    out = Counter(tuple(row[k] for k in key) for row in system.view.stage_changes_after(0, 10**6) if row["kind"] == "stage")
    stored = Counter(tuple({**t, "subject": t["record_id"]}[k] for k in key)
                     for c in range(customers) for t in system.view.transitions_of(rid(system, f"cust-{c}")))
    assert out == stored


def test_a_late_touchpoint_leaves_a_revision_in_the_history(client, system: System):
    def post(*items) -> int:
        answer = client.post("/touchpoints/batch", json=list(items))
        assert answer.status_code == 200, answer.text
        return answer.json()["position"]

    position = post(payload("r1", "lead_captured", 0, "rev@x.example"), payload("r3", "demo_delivered", 3, "rev@x.example"))
    before = client.get("/customers/rev@x.example/history", params={"min_position": position}).json()
    assert before["revisions"] == []
    first_known = before["touchpoints"][-1]["recorded_at"]
    position = post(payload("r2", "meeting_held", 1, "rev@x.example"))
    found = client.get("/customers/rev@x.example/history", params={"min_position": position}).json()
    [revision] = found["revisions"]
    assert revision["kind"] == "late_touchpoint" and revision["scope"] == "customer"
    assert revision["subject"] == found["record_id"]
    assert revision["cause_touchpoint_id"] == "r2" and revision["cause_record_id"] == found["record_id"]
    assert revision["recorded_at"] == found["touchpoints"][1]["recorded_at"]
    assert revision["playbook"] == system.playbook.fingerprint
    assert [(t["journey"], t["from_stage"], t["to_stage"]) for t in revision["removed"]] == [("seller", "Prospecting", "Presenting")]
    assert [(t["journey"], t["from_stage"], t["to_stage"]) for t in revision["added"]] == [
        ("seller", "Prospecting", "Building Rapport"), ("seller", "Building Rapport", "Presenting")]
    assert revision["before"] == {} and revision["after"] == {}  # the stages now are what they were
    assert revision["reason"].startswith("touchpoint r2 occurred before touchpoints recorded earlier")
    stages = client.get("/customers/rev@x.example/stages").json()
    assert stages["playbook"] == {"name": system.playbook.name, "version": 1, "fingerprint": system.playbook.fingerprint}
    assert {t["playbook"] for t in found["transitions"]} == {system.playbook.fingerprint}
    known = client.get("/customers/rev@x.example/history", params={"known_at": first_known}).json()
    assert known["revisions"] == []  # as known then, nothing had been revised


def test_a_rebuild_in_worker_processes_equals_the_live_read_models_table_by_table(system: System, monkeypatch):
    """The first pass of a rebuild (projections/bulk.py) in two processes, over ranges of the log
    and of the instances small enough that each holds a few: links, an unlink, late touchpoints,
    deals, campaigns and an erasure give, row by row, what the live projection wrote."""
    from journeys.customer import IdentityLink
    from projections import bulk
    from tests.factories import assert_counters_equal_a_recount
    from tests.integration.test_partitions import snapshot

    rng = random.Random(5)
    customers = [f"cust-{c}" for c in range(12)]
    touchpoints = [
        tp(f"w{n}", rng.choice(TYPES), rng.uniform(0, 30), customer=rng.choice(customers),
           campaign=rng.choice([None, "spring", "autumn"]), channel=rng.choice(["web", "email"]),
           **({"deal_id": f"D-{rng.randint(1, 4)}"} if rng.random() < 0.5 else {}))
        for n in range(160)
    ]
    for start in range(0, len(touchpoints), 20):  # arrival order is not occurred order: late ones on the way
        system.record(touchpoints[start : start + 20])
        system.runner.catch_up()
    system.record([], links=[IdentityLink("l1", "cust-1", "cust-0", "identify"), IdentityLink("l2", "cust-2", "cust-1", "alias"),
                             IdentityLink("l3", "cust-4", "cust-3", "identify")])
    assert system.app.unlink("cust-4", "test") is not None
    system.record([tp("after-link", "meeting_held", 2.5, customer="cust-2", deal_id="D-1")])
    system.erase("cust-5", "test")
    system.runner.catch_up()
    live = snapshot(system)
    assert live["identities"] and live["transitions"] and live["instance_tags"]

    monkeypatch.setattr(bulk, "EVENTS_PER_TASK", 23)
    monkeypatch.setattr(bulk, "TOUCHPOINTS_PER_TASK", 17)
    system.runner.rebuild_workers = bulk.Workers(system.settings, count=2, at_least=0)
    reached: list[tuple[int, int]] = []
    rebuilt = system.runner.rebuild(lambda done, total: reached.append((done, total)), keep_retired=0)

    assert rebuilt.events == system.app.recorder.max_notification_id() and rebuilt.reclassified == 0
    assert reached[-1][0] == reached[-1][1] and len(reached) > 10
    assert snapshot(system) == live
    assert_counters_equal_a_recount(system.view)


def test_a_rebuild_whose_worker_process_is_killed_fails_and_leaves_the_live_read_models(system: System, monkeypatch):
    """A worker of the first pass killed (SIGKILL) mid-pass: the rebuild fails saying so, its
    generation is given up, the live one keeps answering as it was, and the next rebuild works."""
    import multiprocessing
    import os
    import signal

    from projections import bulk
    from tests.integration.test_partitions import snapshot

    system.record(population(40))
    system.runner.catch_up()
    live, generation = snapshot(system), system.view.generation
    monkeypatch.setattr(bulk, "EVENTS_PER_TASK", 5)
    system.runner.rebuild_workers = bulk.Workers(system.settings, count=2, at_least=0)
    killed: list[int] = []

    def kill_a_worker(done: int, total: int) -> None:
        if not killed and (children := multiprocessing.active_children()):
            killed.append(children[0].pid or 0)
            os.kill(killed[0], signal.SIGKILL)

    with pytest.raises(Exception, match="terminated abruptly"):
        system.runner.rebuild(kill_a_worker, keep_retired=0)
    assert killed
    states = {g["generation"]: g["state"] for g in system.view.generations()}
    assert states[generation] == "live" and "building" not in states.values()
    assert system.view.generation == generation and snapshot(system) == live
    system.runner.rebuild_workers = bulk.Workers(None)
    assert system.runner.rebuild(keep_retired=0).reclassified == 0
    assert snapshot(system) == live
