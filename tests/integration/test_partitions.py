"""Projection parts (projections/partition.py): N parts following the log, each applying its own
records, give the view one runner gives, in any interleaving, deals over contacts and identity
links included; a part that fails mid-batch resumes without loss or duplication; parts and a
single runner refuse to write over each other. On SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journeys.customer import IdentityLink
from journeys.settings import Settings
from projections.partition import Part, part_of
from projections.runner import ProjectionRunner
from projections.stages import StageProjection
from projections.storage.schema import COUNTS, CREDIT_TABLES, GENERATIONAL_TABLES, STAY_TABLES
from projections.system import System
from tests.factories import assert_counters_equal_a_recount, rid, tp
from tests.integration.test_projection import DEAL_TYPES, TYPES, fresh, touched_by

CONTACTS = ["ann", "bob", "cat", "dan", "eve"]
LINKS = [IdentityLink("link-1", "dan", "ann", "identify"), IdentityLink("link-2", "eve", "bob", "identify")]


def part_runner(system: System, part: Part, batch_size: int = 1000) -> ProjectionRunner:
    """A runner as `journeys project --partition K/N` makes one (its own projection and cache)."""
    runner = ProjectionRunner(system.app, StageProjection(system.view, system.playbook), batch_size=batch_size,
                              version=system.runner.version, parts=part.count)
    runner.partition(part)
    return runner


def interleaved(runners: list[ProjectionRunner], end: int, rng: random.Random) -> None:
    """The parts' batches in a random order, as N processes would take turns, until all are at `end`."""
    for _ in range(20_000):
        if all(r.position >= end for r in runners):
            return
        rng.choice(runners).run_once()
    raise AssertionError(f"the parts did not reach {end}: {[r.position for r in runners]}")


def snapshot(system: System) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the live generation's read models (counters that count nothing left out)."""
    view, found = system.view, {}
    for table in GENERATIONAL_TABLES:
        counted = (["instances"] if table is COUNTS else ["n"] if any(table in pair for pair in STAY_TABLES)
                   else [name for name, kind in table.columns if kind == "bigint"] if table in CREDIT_TABLES else [])
        where = f" WHERE {' OR '.join(f'{c} != 0' for c in counted)}" if counted else ""
        rows = view.query(f"SELECT {', '.join(table.names)} FROM {view.table(table.name)}{where}")
        found[table.name] = sorted((tuple(r[c] for c in table.names) for r in rows), key=repr)
    return found


def assert_equals_one_runner(system: System) -> None:
    """The view the parts wrote equals what one runner derives from the same events (a rebuild)."""
    parted = snapshot(system)
    assert_counters_equal_a_recount(system.view)
    rebuilt = system.runner.rebuild(keep_retired=0)
    assert rebuilt.reclassified == 0
    assert snapshot(system) == parted


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(
        st.tuples(st.sampled_from(CONTACTS), st.sampled_from([None, "D-1", "D-2"]), st.sampled_from(TYPES + DEAL_TYPES),
                  st.integers(0, 6)),
        min_size=1, max_size=40,
    ),
    links=st.lists(st.sampled_from(LINKS), max_size=2, unique=True),
    parts=st.integers(2, 4),
    seed=st.integers(0, 2**32),
)
def test_parts_in_any_interleaving_give_one_runners_view(store_urls, tmp_path, data, links, parts, seed):
    rng = random.Random(seed)
    touchpoints = [tp(f"t{n:02d}", type_, day / 2, customer=who, **({"deal_id": deal} if deal else {}), **touched_by(rng))
                   for n, (who, deal, type_, day) in enumerate(data)]
    arrival: list[Any] = [*touchpoints, *links, *rng.sample(touchpoints, min(3, len(touchpoints)))]
    rng.shuffle(arrival)
    with fresh(store_urls, str(tmp_path / "keys")) as system:
        runners = [part_runner(system, Part(k, parts), batch_size=rng.randint(1, 8)) for k in range(1, parts + 1)]
        while arrival:  # recorded in random batches while the parts take random turns
            size = rng.randint(1, 6)
            batch, arrival = arrival[:size], arrival[size:]
            system.record([t for t in batch if not isinstance(t, IdentityLink)],
                          links=[x for x in batch if isinstance(x, IdentityLink)])
            for _ in range(rng.randint(0, 3)):
                rng.choice(runners).run_once()
        interleaved(runners, system.app.recorder.max_notification_id() or 0, rng)
        assert_equals_one_runner(system)


def contacts_in_every_part(system: System, parts: int, per_part: int = 3) -> list[str]:
    """Customer keys whose records fall to each of the parts (the records are made on the way)."""
    found: dict[int, list[str]] = {k: [] for k in range(1, parts + 1)}
    n = 0
    while any(len(v) < per_part for v in found.values()):
        key = f"contact-{n}"
        n += 1
        record_id, _ = system.keyring.resolve([key])[key]
        found[part_of(record_id, parts)].append(key)
    return [k for keys in found.values() for k in keys[:per_part]]


@pytest.mark.postgres
def test_parts_in_threads_write_shared_deals_without_losing_a_touchpoint(postgres_schema_url, tmp_path):
    """Three parts at once (threads, as processes would be), every batch touching the same two deals
    from contacts of all three parts: the counts of touchpoints and the deals' stages equal one runner's."""
    settings_ = Settings(database_url=postgres_schema_url, key_file=str(tmp_path / "keys"), database_timeout=10)
    system = System.build(settings_)
    try:
        contacts = contacts_in_every_part(system, 3)
        rng = random.Random(7)
        touchpoints = [tp(f"t{n:04d}", rng.choice(DEAL_TYPES), rng.random() * 30, customer=rng.choice(contacts),
                          deal_id=rng.choice(["D-1", "D-2"])) for n in range(400)]
        runners = [part_runner(system, Part(k, 3), batch_size=7) for k in (1, 2, 3)]
        stop = threading.Event()
        errors: list[BaseException] = []

        def run(runner: ProjectionRunner) -> None:
            while not stop.is_set():
                try:
                    if not runner.run_once():
                        stop.wait(0.005)
                except BaseException as error:  # noqa: BLE001 - reported below
                    errors.append(error)
                    return

        threads = [threading.Thread(target=run, args=(r,)) for r in runners]
        for thread in threads:
            thread.start()
        for start in range(0, len(touchpoints), 20):
            system.record(touchpoints[start:start + 20])
        end = system.app.recorder.max_notification_id() or 0
        try:
            for runner in runners:
                assert runner.wait(end, 60), [r.position for r in runners]
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
        assert errors == []
        counts = {r["subject"]: r["touchpoint_count"] for r in system.view.query(
            f"SELECT subject, touchpoint_count FROM {system.view.table('subjects')} WHERE scope = 'deal'")}
        assert counts == {d: sum(t.deal_id == d for t in touchpoints) for d in ("D-1", "D-2")}
        assert_equals_one_runner(system)
    finally:
        system.close()


def test_a_part_that_fails_mid_batch_resumes_exactly(system: System, monkeypatch):
    """A part's batch that fails inside its transaction (as a killed process's does) leaves nothing:
    a new runner for the same part goes on from the last batch that committed, and the view equals
    one runner's."""
    contacts = contacts_in_every_part(system, 2)
    rng = random.Random(3)
    system.record([tp(f"t{n:03d}", rng.choice(DEAL_TYPES), rng.random() * 20, customer=rng.choice(contacts),
                      deal_id="D-1") for n in range(60)])
    end = system.app.recorder.max_notification_id() or 0
    first, second = part_runner(system, Part(1, 2), batch_size=5), part_runner(system, Part(2, 2), batch_size=5)
    first.run_once()
    second.run_once()
    reached, write = first.position, system.view.write
    monkeypatch.setattr(system.view, "write", lambda *a, **k: _in_a_transaction_that_dies(system, write, a, k))
    with pytest.raises(ProcessKilled):
        first.run_once()
    monkeypatch.undo()
    assert first.position == reached
    again = part_runner(system, Part(1, 2), batch_size=5)  # the part restarted
    interleaved([again, second], end, rng)
    assert_equals_one_runner(system)


class ProcessKilled(BaseException):
    pass


def _in_a_transaction_that_dies(system: System, write: Any, args: Any, kwargs: Any) -> None:
    """view.write, but the process dies before its transaction commits."""
    real = system.view.datastore.transaction

    @contextmanager
    def dying(commit: bool = False) -> Iterator[Any]:
        with real(commit=commit) as c:  # what the batch wrote is rolled back with the error
            yield c
            raise ProcessKilled

    system.view.datastore.transaction = dying
    try:
        write(*args, **kwargs)
    finally:
        system.view.datastore.transaction = real


def test_parts_and_one_runner_do_not_write_over_each_other(system: System):
    """Once parts have projected further, a single runner pauses (it would apply their events again),
    and so do parts of another number; a rebuild hands the view to whichever runs next."""
    contacts = contacts_in_every_part(system, 2, per_part=1)
    system.record([tp(f"t{n}", "meeting_held", n, customer=contacts[n % 2]) for n in range(6)])
    parts = [part_runner(system, Part(k, 2)) for k in (1, 2)]
    interleaved(parts, system.app.recorder.max_notification_id() or 0, random.Random(1))
    assert system.runner.run_once() == 0
    assert "projected by 2 parts" in (system.runner.paused or "")
    other = part_runner(system, Part(1, 3))
    assert other.run_once() == 0 and "projected by 2 parts" in (other.paused or "")
    assert_equals_one_runner(system)  # the rebuild: a new generation, at the end of the log
    system.record([tp("t-after", "demo_delivered", 9, customer=contacts[0])])
    assert system.runner.run_once() == 1  # one runner again, from where the rebuild got


def test_a_reader_of_parts_waits_for_all_of_them(settings: Settings):
    """A process that only reads (JOURNEYS_PROJECTION_PARTS=2) counts the view as far as its slowest
    part, refuses to project itself, and its catch_up waits for the parts."""
    reader = System.build(settings.model_copy(update={"projection_parts": 2}))
    try:
        with pytest.raises(ValueError, match="--partition K/2"):
            reader.runner.start(project=True)
        contacts = contacts_in_every_part(reader, 2, per_part=1)
        reader.record([tp("t1", "meeting_held", 1, customer=contacts[0]), tp("t2", "meeting_held", 2, customer=contacts[1])])
        first, second = part_runner(reader, Part(1, 2)), part_runner(reader, Part(2, 2))
        first.catch_up()
        assert reader.runner.position == 0  # part 2 has applied nothing yet
        thread = threading.Thread(target=second.catch_up)
        thread.start()
        assert reader.runner.catch_up(timeout=30) == reader.app.recorder.max_notification_id()
        thread.join(10)
    finally:
        reader.close()


def test_the_outbox_is_numbered_in_the_order_batches_commit(system: System, monkeypatch):
    """The stage-change publisher follows the outbox by number and never looks back, so no batch
    may commit outbox rows numbered after those of a batch still open: one part's batch, paused in
    its transaction with its stage changes written, holds the other part's batch back until it has
    committed (PostgreSQL: the live generation's row; SQLite: its one writer)."""
    from projections.storage.writes import ProjectionWrites

    first_key, second_key = contacts_in_every_part(system, 2, per_part=1)
    # Nothing in common (stages, days): no counter's row lock holds the second batch back instead.
    system.record([tp("a1", "lead_captured", 1, customer=first_key), tp("b1", "demo_delivered", 20, customer=second_key)])
    first, second = part_runner(system, Part(1, 2)), part_runner(system, Part(2, 2))
    publish, held, release = ProjectionWrites._publish, threading.Event(), threading.Event()

    def paused(view: Any, c: Any, rows: list[list[Any]]) -> None:
        publish(view, c, rows)
        if threading.current_thread().name == "first" and rows:
            held.set()
            release.wait(10)

    def until_done(runner: ProjectionRunner) -> None:  # as a runner's loop retries (SQLite: the writer is busy)
        while runner.position < end:
            try:
                runner.run_once()
            except Exception:  # noqa: BLE001 - tried again; the final assertions tell
                time.sleep(0.05)

    end = system.app.recorder.max_notification_id() or 0
    monkeypatch.setattr(ProjectionWrites, "_publish", paused)
    threads = [threading.Thread(target=until_done, args=(first,), name="first"),
               threading.Thread(target=until_done, args=(second,))]
    threads[0].start()
    assert held.wait(10)
    threads[1].start()
    threads[1].join(1.0)
    try:
        assert threads[1].is_alive(), "the second part committed while the first held uncommitted outbox rows"
        assert system.view.stage_changes_after(0, 100) == []
    finally:
        release.set()
        for thread in threads:
            thread.join(10)
    outbox = system.view.stage_changes_after(0, 100)
    records = [rid(system, first_key), rid(system, second_key)]
    assert [c["subject"] for c in outbox] == sorted((c["subject"] for c in outbox), key=records.index)
    assert {c["subject"] for c in outbox} == set(records)
