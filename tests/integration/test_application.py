"""Recording touchpoints: once, atomically, under concurrent publishers. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
from uuid import NAMESPACE_URL, uuid5

import pytest

from journeys.application import JourneysApp
from journeys.customer import Customer, Outcome
from journeys.settings import Settings
from projections.system import System
from tests.factories import rid, tp


def stored_touchpoint_ids(app: JourneysApp, customer: str) -> list[str]:
    return [e.touchpoint_id for e in app.replay(customer).touchpoints]


def test_record_duplicate_conflict(system: System):
    first = tp("t1", "email_opened", 0)
    assert system.record([first]).results[0].outcome is Outcome.recorded
    again = system.record([first])
    assert again.results[0].outcome is Outcome.duplicate
    assert again.position is None  # nothing written
    changed = system.record([first.model_copy(update={"channel": "email"})]).results[0]
    assert changed.outcome is Outcome.conflict
    assert "different content" in changed.error
    assert stored_touchpoint_ids(system.app, "acme") == ["t1"]
    # The stored content is the first one: a conflict never overwrites.
    assert system.app.replay("acme").touchpoints[0].channel == "web"


def test_batch_is_one_write_and_duplicates_inside_it_count_once(system: System):
    batch = [tp(f"t{i}", "email_opened", i, customer=f"c{i % 7}") for i in range(50)]
    recorded = system.record(batch + batch[:5])
    outcomes = [r.outcome for r in recorded.results]
    assert outcomes.count(Outcome.recorded) == 50
    assert outcomes.count(Outcome.duplicate) == 5
    log = system.app.recorder.select_notifications(start=1, limit=1000)
    assert len(log) == 50 + 7  # 50 touchpoints + 7 registrations
    assert recorded.position == log[-1].id


def test_unknown_types_are_stored_and_flagged(system: System):
    result = system.record([tp("t1", "mystery_signal", 0)]).results[0]
    assert result.outcome is Outcome.recorded and result.known_type is False
    assert stored_touchpoint_ids(system.app, "acme") == ["t1"]


def test_concurrent_publishers_store_each_touchpoint_once(settings):
    """Four processes' worth of applications race on the same customers."""
    systems = [System.build(settings) for _ in range(4)]
    touchpoints = [tp(f"t{i:03d}", "email_opened", i % 30, customer=f"c{i % 3}") for i in range(60)]
    results: list[list[Outcome]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(systems))

    def publish(system: System, offset: int) -> None:
        try:
            barrier.wait()
            mine = touchpoints[offset:] + touchpoints[:offset]
            for start in range(0, len(mine), 4):
                results.append([r.outcome for r in system.app.record(mine[start : start + 4]).results])
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=publish, args=(s, n * 15)) for n, s in enumerate(systems)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in systems:
        s.close()
    assert not errors
    flat = [o for batch in results for o in batch]
    assert flat.count(Outcome.recorded) == 60
    assert flat.count(Outcome.duplicate) == 60 * 3
    check = System.build(settings)
    try:
        for c in ("c0", "c1", "c2"):
            ids = stored_touchpoint_ids(check.app, c)
            assert len(ids) == len(set(ids)) == 20
    finally:
        check.close()


def test_records_have_random_ids_found_by_a_keyed_pseudonym(system: System):
    system.record([tp("t1", "email_opened", 0, customer="jane@example.com")])
    record_id = system.keyring.find("jane@example.com")
    customer = system.app.repository.get(record_id)
    assert isinstance(customer, Customer) and "jane" not in customer.sealed_key
    assert record_id != uuid5(NAMESPACE_URL, "jane@example.com")
    pseudonym = system.keyring.secrets.pseudonym("jane@example.com")
    assert pseudonym != hashlib.sha256(b"jane@example.com").hexdigest()  # keyed: nobody else can recompute it
    other = Settings(database_url="sqlite:///:memory:", key_file=system.settings.key_file + ".other").secrets()
    assert other.pseudonym("jane@example.com") != pseudonym


def test_a_source_position_is_stored_with_the_events_and_applies_once(system: System):
    from eventsourcing.persistence import Tracking

    from journeys.application import AlreadyRecordedError

    system.record([tp("t1", "email_opened", 0)], Tracking("kafka:touchpoints:0", 41))
    assert system.app.source_position("kafka:touchpoints:0") == 41
    system.record([], Tracking("kafka:touchpoints:0", 42))  # a poll of nothing but dead letters
    assert system.app.source_position("kafka:touchpoints:0") == 42
    try:
        system.record([tp("t2", "email_opened", 1)], Tracking("kafka:touchpoints:0", 42))
    except AlreadyRecordedError:
        pass
    else:
        raise AssertionError("the same position twice must not be applied")
    assert stored_touchpoint_ids(system.app, "acme") == ["t1"]  # t2 was not stored with it


def test_a_failure_before_saving_leaves_no_trace_in_the_cache(system: System):
    """A dead-letter flush that fails must not leave unsaved touchpoints in cached customers."""
    system.record([tp("t0", "email_opened", 0)])  # acme is now cached

    def broken_flush(results):
        raise ConnectionError("dead-letter topic unreachable")

    try:
        system.record([tp("t1", "demo_delivered", 1)], before_save=broken_flush)
    except ConnectionError:
        pass
    assert system.record([tp("t1", "demo_delivered", 1)]).results[0].outcome is Outcome.recorded
    assert stored_touchpoint_ids(system.app, "acme") == ["t0", "t1"]


def test_writers_in_two_processes_on_the_same_customers_lose_nothing(settings):
    """Two systems (as two API processes would) record to the same customers at once: version
    conflicts are retried (journeys/retry.py) and every touchpoint is stored once."""
    first, second = System.build(settings), System.build(settings)
    customers = ["shared-1", "shared-2", "shared-3"]
    failures: list[BaseException] = []

    def write(system: System, name: str) -> None:
        try:
            for n in range(30):
                system.record([tp(f"{name}-{n}-{c}", "email_opened", n / 10, customer=c) for c in customers])
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=write, args=(s, name)) for s, name in ((first, "a"), (second, "b"))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        first.runner.catch_up()
        for customer in customers:
            assert first.view.customer(rid(first, customer))["touchpoint_count"] == 60
    finally:
        first.close()
        second.close()


def test_a_key_another_writer_created_first_is_used_not_replaced(system: System, monkeypatch):
    """Two writers meet a new customer at once: each looks it up, finds nothing, and inserts a
    record and data key; the second insert yields to the first, and the second writer reads
    the first's record and key back instead of keeping its own."""
    keyring = system.app.keyring
    other = type(keyring)(keyring.store, keyring.secrets)
    first = keyring.resolve(["newcomer", "regular"])
    looked_up = other._by_subject
    calls = []

    def missed_once(subjects):  # the other writer looked before the first one inserted
        calls.append(subjects)
        return {} if len(calls) == 1 else looked_up(subjects)

    monkeypatch.setattr(other, "_by_subject", missed_once)
    second = other.resolve(["newcomer", "regular", "stranger"])
    assert len(calls) == 2  # its insert was refused for two of three: it read them back
    assert {k: second[k][0] for k in first} == {k: first[k][0] for k in first}
    record, key = first["newcomer"]
    assert second["newcomer"][1].open(key.seal({"n": 1}, str(record)), str(record)) == {"n": 1}
    assert keyring.resolve(["stranger"])["stranger"][0] == second["stranger"][0]


@pytest.mark.postgres
@pytest.mark.parametrize(("options", "jit"), [("", "off"), ("-c jit=on", "on")])
def test_postgresql_sessions_run_without_jit_unless_pgoptions_says(postgres_schema_url, tmp_path, monkeypatch,
                                                                   options, jit):
    """JIT compiled a batch's look-ups by key (estimated without statistics) for 110 ms to run
    them in 5: the store's sessions run without it; a PGOPTIONS that sets it is left as it is."""
    monkeypatch.setenv("PGOPTIONS", options)
    system = System.build(Settings(database_url=postgres_schema_url, key_file=str(tmp_path / "keys")))
    try:
        for datastore in (system.app.recorder.datastore, system.view.datastore):
            with datastore.transaction(commit=False) as c:
                c.execute("SHOW jit")
                assert c.fetchall()[0]["jit"] == jit
    finally:
        system.close()
