"""GDPR erasure by crypto-shredding, on SQLite and PostgreSQL.

A customer with an e-mail address as key, a named actor and a phone number in the
properties: none of those strings is ever stored in clear (checked in the SQLite
files, WAL included, and in a pg_dump), and after erasure the API and an auditor's
history show none of them while stage counts stay as they were.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from datetime import UTC
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from journeys.settings import Settings
from projections.storage.migrations import StoreFormatError
from projections.system import System
from tests.factories import b2b_deal, payload

EMAIL, ACTOR, PHONE = "jane.doe@example.com", "Jonathan Q. Seller", "+44 7700 900123"
SECRETS = [EMAIL, ACTOR, PHONE, "jane.doe", "7700 900123"]


def jane_deal() -> list[dict]:
    deal = b2b_deal(EMAIL)
    for item in deal:
        item["actor"] = ACTOR
        item["properties"] = {**item.get("properties", {}), "phone": PHONE}
    return deal


def stored_bytes(settings: Settings) -> bytes:
    """Everything the database holds: the SQLite files (with -wal and -shm) or a pg_dump."""
    if settings.is_sqlite:
        path = Path(urlsplit(settings.database_url).path[1:])
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    url = urlsplit(settings.database_url)
    schema = parse_qs(url.query)["schema"][0]
    dump = subprocess.run(
        ["pg_dump", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres",
         "-n", schema, url.path.lstrip("/")],
        capture_output=True, check=True, timeout=60,
    )
    return dump.stdout


def assert_nothing_in_clear(settings: Settings) -> None:
    found = stored_bytes(settings)
    assert len(found) > 10_000  # a real store, not an empty file
    for secret in SECRETS:
        assert secret.encode() not in found, f"{secret!r} is stored in clear"


def test_personal_data_is_never_stored_in_clear_and_erasure_forgets_it(client: TestClient, settings: Settings):
    other = payload("o1", "demo_delivered", 1, "other@example.com", actor="Olga", properties={"phone": "+1 555 0100"})
    written = client.post("/touchpoints/batch", json=[*jane_deal(), other])
    assert written.status_code == 200 and written.json()["counts"]["recorded"] == 16
    position = written.json()["position"]
    before = client.get(f"/customers/{EMAIL}/stages", params={"min_position": position}).json()
    assert before["buyer"]["stage"] == "Purchase"
    history = client.get(f"/customers/{EMAIL}/history").json()
    assert {t["actor"] for t in history["touchpoints"]} == {ACTOR} and history["customer_id"] == EMAIL
    assert history["touchpoints"][0]["properties"]["phone"] == PHONE
    summary = client.get("/segments/summary").json()
    assert_nothing_in_clear(settings)

    erased = client.delete(f"/customers/{EMAIL}")
    assert erased.status_code == 200, erased.text
    record_id = erased.json()["record_id"]
    assert "test-admin" in erased.json()["erased_by"]
    assert client.delete(f"/customers/{EMAIL}").status_code == 404

    assert client.get(f"/customers/{EMAIL}/stages").status_code == 404
    assert client.get(f"/customers/{EMAIL}/history").status_code == 404
    assert client.get(f"/customers/{EMAIL}/stages", params={"as_of": "2026-04-01T00:00:00Z"}).status_code == 404
    system = client.app.state.system
    system.runner.wait(system.app.recorder.max_notification_id(), 10)
    audit = client.get(f"/records/{record_id}/history")
    assert audit.status_code == 200, audit.text
    body = audit.text
    for secret in SECRETS:
        assert secret not in body
    audited = audit.json()
    assert audited["customer_id"] == "erased" and audited["erased_at"]
    assert [t["type"] for t in audited["touchpoints"]] == [t["type"] for t in history["touchpoints"]]
    assert {(t["actor"], t["properties"]) for t in audited["touchpoints"]} == {("erased", "erased")}
    assert audited["transitions"] == history["transitions"]  # the timeline and its causes survive

    assert client.get("/segments/summary").json() == summary  # stage counts unchanged
    segment = client.get("/segments", params={"buyer": "Purchase"}).json()["customers"]
    assert EMAIL not in str(segment)  # nobody to send to any more
    other = client.get("/customers/other@example.com/history").json()
    assert other["touchpoints"][0]["actor"] == "Olga" and other["touchpoints"][0]["properties"] == {"phone": "+1 555 0100"}
    changes = system.view.stage_changes_after(0, 1000)
    assert changes[-1]["kind"] == "erased" and changes[-1]["subject"] == record_id  # the tombstone, queued
    assert_nothing_in_clear(settings)

    # The same key again starts a new record, with nothing of the old one.
    again = client.post("/touchpoints", json=payload("n1", "email_opened", 100, EMAIL))
    assert again.status_code == 201  # not a duplicate of anything erased
    fresh = client.get(f"/customers/{EMAIL}/stages", params={"min_position": again.json()["position"]}).json()
    assert fresh["record_id"] != record_id and fresh["buyer"]["stage"] is None
    assert fresh["awareness"]["stage"] == "Aware"


def test_erasure_from_the_command_line_and_a_replay_by_record(system: System, settings: Settings):
    from typer.testing import CliRunner

    from api.cli import app
    from journeys.touchpoint import Touchpoint

    system.record([Touchpoint(**p) for p in jane_deal()])
    env = {"JOURNEYS_DATABASE_URL": settings.database_url, "JOURNEYS_KEY_FILE": settings.key_file, "COLUMNS": "200"}
    runner = CliRunner()
    erased = runner.invoke(app, ["erase", EMAIL, "--by", "dpo@company"], env=env)
    assert erased.exit_code == 0, erased.output
    record_id = erased.output.split("record ")[1].split()[0]
    assert runner.invoke(app, ["erase", EMAIL], env=env).exit_code == 1
    replay = runner.invoke(app, ["replay", "--record", record_id], env=env)
    assert replay.exit_code == 0, replay.output
    assert "contract_signed" in replay.output and "Purchase" in replay.output
    assert all(secret not in replay.output for secret in SECRETS)
    erasure = [e for e in system.app.events.get(__import__("uuid").UUID(record_id)) if type(e).__name__ == "Erased"]
    assert len(erasure) == 1 and erasure[0].erased_by == "dpo@company"


def test_an_erasure_interrupted_after_the_key_was_destroyed_is_finished_at_start(system: System, settings: Settings):
    from journeys.touchpoint import Touchpoint

    system.record([Touchpoint(**payload("t1", "email_opened", 0, EMAIL))])
    record_id = system.keyring.find(EMAIL)
    system.keyring.erase([record_id], "admin")  # ...and the process dies before recording the event
    restarted = System.build(settings)
    try:
        events = list(restarted.app.events.get(record_id))
        assert type(events[-1]).__name__ == "Erased"
        assert restarted.keyring.pending_erasures() == []
    finally:
        restarted.close()


def test_the_key_file_is_created_once_with_owner_only_permissions(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path}/j.db", key_file=str(tmp_path / "keys" / "journeys.keys"))
    first = settings.secrets()
    mode = stat.S_IMODE(os.stat(settings.key_file).st_mode)
    assert mode == 0o600
    assert settings.secrets() == first  # read back, not made again


def test_rotating_the_master_key_keeps_every_customer_readable(system: System, settings: Settings):
    from journeys.crypto import new_secret
    from journeys.touchpoint import Touchpoint

    system.record([Touchpoint(**p) for p in jane_deal()])
    old = system.keyring.secrets
    new_master = new_secret()

    keep = {"pseudonym_key": base64.urlsafe_b64encode(old.pseudonym_key).decode()}
    rotated = Settings(**{**settings.model_dump(), **keep, "master_key": new_master,
                          "previous_master_keys": base64.urlsafe_b64encode(old.master_key).decode()})
    during = System.build(rotated)
    try:
        assert during.keyring.rewrap() == 1
        assert during.keyring.rewrap() == 0
    finally:
        during.close()
    only_new = Settings(**{**settings.model_dump(), **keep, "master_key": new_master})
    after = System.build(only_new)
    try:
        replay = after.app.replay(EMAIL)
        assert replay.touchpoints[0].actor == ACTOR
    finally:
        after.close()


def test_a_store_from_before_encryption_is_refused_with_a_clear_message(settings: Settings):
    from eventsourcing.persistence import InfrastructureFactory
    from eventsourcing.utils import Environment

    from journeys.storage.dialect import ensure_schema

    env = settings.eventsourcing_env()
    if not settings.is_sqlite:
        ensure_schema(env)
    factory = InfrastructureFactory.construct(Environment("journeys", env))  # an old store: events only
    recorder = factory.application_recorder()
    from uuid import uuid4

    from eventsourcing.persistence import StoredEvent

    recorder.insert_events([StoredEvent(uuid4(), 1, "journeys.customer:Customer.Registered", b"{}")])
    factory.close()
    with pytest.raises(StoreFormatError, match="cannot be migrated in place"):
        System.build(settings)


def test_erasing_a_person_erases_every_record_linked_to_it_in_one_operation(system: System):
    """Identity stitching says linked records are one person: erasing any of their keys erases all
    of them (here a chain: visitor -> device id -> known customer), and nothing of anyone else."""
    from datetime import datetime, timedelta

    import requests
    from segment.analytics import Client as SegmentClient

    from api.main import create_app
    from journeys.storage.api_keys import KeyStore, Role
    from tests.serving import serve

    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    visitor, device, known, bystander = "anon-X", "device-Y", EMAIL, "other@example.com"
    keys = KeyStore(system.view, cache_seconds=0)
    system.runner.start()
    with serve(create_app(system=system)) as base:
        sdk = SegmentClient(keys.create("site", Role.publisher), host=base, max_retries=1, upload_interval=0.1)
        sdk.page(anonymous_id=visitor, name="Pricing", timestamp=t0, message_id="v1", properties={"ip": "203.0.113.9"})
        sdk.page(anonymous_id=device, name="Pricing", timestamp=t0 + timedelta(hours=1), message_id="v2")
        sdk.track(user_id=bystander, event="Signed Up", timestamp=t0, message_id="b1")
        sdk.identify(user_id=device, anonymous_id=visitor, message_id="i1")
        sdk.alias(previous_id=device, user_id=known, message_id="i2")
        sdk.track(user_id=known, event="Signed Up", timestamp=t0 + timedelta(days=1), message_id="d1")
        sdk.flush()
        sdk.shutdown()
        system.runner.catch_up()
        admin = {"Authorization": f"Bearer {keys.create('dpo', Role.admin)}"}
        for who in (visitor, device, known):
            answer = requests.get(f"{base}/customers/{who}/stages", headers=admin, timeout=10)
            assert answer.status_code == 200, answer.text

        erased = requests.delete(f"{base}/customers/{device}", headers=admin, timeout=10)  # the middle of the chain
        assert erased.status_code == 200, erased.text
        body = erased.json()
        records = {system.view.roots([r])[r] for r in [body["record_id"], *body["linked_records"]]}
        assert len(body["linked_records"]) == 2 and len(records) == 1  # the other two, all one customer
        assert "linked" in body["detail"]
        system.runner.catch_up()
        for who in (visitor, device, known):
            for path in ("stages", "history", "timeline"):
                answer = requests.get(f"{base}/customers/{who}/{path}", headers=admin, timeout=10)
                assert answer.status_code == 404, (who, path, answer.text)
        assert requests.get(f"{base}/customers/{bystander}/stages", headers=admin, timeout=10).status_code == 200
        for record in [body["record_id"], *body["linked_records"]]:
            replay = system.app.replay_record(__import__("uuid").UUID(record))
            assert replay.erased
            assert all(t.customer_id == "erased" and t.properties == "erased" for t in replay.touchpoints)
    found = stored_bytes(system.settings)
    assert b"203.0.113.9" not in found and b"anon-X" not in found
