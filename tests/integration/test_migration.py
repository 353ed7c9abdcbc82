"""A store written by the previous release (tests/fixtures/store-<release>, made by
tests/fixtures/make_store.py) opens under this one: migrated in place, its hash chains and
checkpoint still verify, its read models answer, and it takes new touchpoints and a rebuild.
(SQLite: the fixture is a file; PostgreSQL stores migrate through the same `open()` steps.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from journeys.application import CustomerNotFoundError
from journeys.settings import Settings
from journeys.stages import derive
from projections.storage.migrations import LATEST, STEPS, history, version
from projections.storage.schema import KEY_COLUMNS, keyed_index
from projections.system import System
from tests.factories import rid, tp

RELEASE = "7927e99"
FIXTURE = Path(__file__).parents[1] / "fixtures" / f"store-{RELEASE}"


@pytest.fixture
def old_store(tmp_path) -> Settings:
    shutil.copytree(FIXTURE, tmp_path / "store")
    (tmp_path / "store" / "journeys.keys").chmod(0o600)
    return Settings(database_url=f"sqlite:///{tmp_path}/store/journeys.db", key_file=str(tmp_path / "store" / "journeys.keys"),
                    projection_poll_interval=0.01)


def test_a_store_of_the_previous_release_opens_migrated_and_verifies(old_store: Settings):
    system = System.build(old_store)
    try:
        # That release kept no schema version: every step ran, in order, each recorded once.
        assert [s.version for s in system.migrated] == [s.version for s in STEPS]
        assert [r["version"] for r in history(system.view)] == list(range(1, LATEST + 1))
        system.runner.catch_up()
        report = system.audit.verify()
        assert report.ok, report.problems
        assert report.events == 27 and report.checkpoint is not None and report.unsealed == 0
        globex = system.view.customer(rid(system, "globex"))
        assert globex["touchpoint_count"] > 0 and globex["stages"]["buyer"].stage is not None
        with pytest.raises(CustomerNotFoundError):
            system.app.replay("to-erase")  # erased by that release: it stays erased
        # The link that release recorded still joins the visitor into the customer.
        assert system.view.roots([rid(system, "anon-7")])[rid(system, "anon-7")] == rid(system, "umbrella")

        system.record([tp("new-1", "demo_delivered", 40, customer="globex")])
        system.runner.catch_up()
        assert system.view.customer(rid(system, "globex"))["touchpoint_count"] == globex["touchpoint_count"] + 1
        system.runner.rebuild(keep_retired=0)
        replayed = system.app.replay("globex")
        assert system.view.customer(rid(system, "globex"))["stages"].positions == derive(
            replayed.derivation.touchpoints, system.playbook).stages.positions
        assert system.audit.verify().ok
    finally:
        system.close()


def test_a_failing_catalogue_query_is_an_error_never_a_missing_column(system: System, monkeypatch):
    """The step for stores from before versions adds the columns they lack; a database that cannot
    be asked must not read as one that lacks them (an ALTER would follow against a store that has them)."""
    assert "stay_seconds" in system.view.columns("transitions")
    assert "no_such_column" not in system.view.columns("transitions")

    def away(*args, **kwargs):
        raise ConnectionError("the database is away")

    monkeypatch.setattr(system.view, "query", away)
    with pytest.raises(ConnectionError):
        system.view.columns("transitions")


def test_each_step_runs_once_and_journeys_migrate_reports_them(system: System, settings):
    """A new store is at the latest version from its first start; a store whose versions are
    unknown (as one from before them) runs every step again, harmlessly (they are idempotent),
    by `journeys migrate` or at the next start; nothing is lost."""
    from typer.testing import CliRunner

    from api.cli import app

    assert version(system.view) == LATEST
    system.record([tp("t-1", "ad_clicked", 1, customer="ann")])
    system.runner.catch_up()
    before = system.view.customer(rid(system, "ann"))
    env = {"JOURNEYS_DATABASE_URL": settings.database_url, "JOURNEYS_KEY_FILE": settings.key_file, "COLUMNS": "200"}

    again = System.build(settings)
    assert again.migrated == []
    again.close()
    idle = CliRunner().invoke(app, ["migrate"], env=env)
    assert idle.exit_code == 0, idle.output
    assert f"schema version {LATEST}: nothing to do" in idle.output

    system.view.execute(f"DELETE FROM {system.view.table('schema_versions')}")
    ran = CliRunner().invoke(app, ["migrate"], env=env)
    assert ran.exit_code == 0, ran.output
    assert f"{LATEST} step(s) applied now" in ran.output and "the stage counters" in ran.output
    assert version(system.view) == LATEST
    assert system.view.customer(rid(system, "ann")) == before


def _indexes(system: System, table: str) -> dict[str, str]:
    """The indexes of a read-model table, name -> definition, from the catalogue."""
    view = system.view
    if view.dialect.name == "sqlite":
        rows = view.query("SELECT name, sql AS definition FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
                          [view.name(table)])
    else:
        rows = view.query("SELECT indexname AS name, indexdef AS definition FROM pg_indexes "
                          "WHERE schemaname = ? AND tablename = ?", [view.datastore.schema, view.name(table)])
    return {r["name"]: r["definition"] or "" for r in rows}


def _plan(system: System, statement: str, params: list) -> str:
    """How the database would run a '?' statement, as text (PostgreSQL: sequential scans off, as
    they are on a table of a few rows)."""
    view = system.view
    with view.datastore.transaction(commit=False) as c:
        if view.dialect.name == "sqlite":
            c.execute(f"EXPLAIN QUERY PLAN {statement}", params)
            return " ".join(str(r["detail"]) for r in c.fetchall())
        c.execute("SET LOCAL enable_seqscan = off")
        c.execute(view.dialect.sql(f"EXPLAIN {statement}"), params)
        return " ".join(str(next(iter(dict(r).values()))) for r in c.fetchall())


def test_step_11_leaves_the_deal_account_and_case_indexes_only_the_touchpoints_that_name_one(system: System, settings):
    """A touchpoint without a deal, account or case costs those indexes nothing (most touchpoints
    name none); a store from before step 11 has its whole indexes replaced, and the deal's
    touchpoints are still read by index."""
    view = system.view
    for column in KEY_COLUMNS:  # the store as step 10 left it
        view.execute(f"DROP INDEX {view.table(keyed_index(column))}")
        view.execute(f"CREATE INDEX {view.name('touchpoints_' + column)} ON {view.table('touchpoints')} "
                     f"({column}, occurred_at)")
    view.execute(f"DELETE FROM {view.table('schema_versions')} WHERE version = 11")
    system.record([tp("t-1", "demo_delivered", 1, customer="ann", deal_id="d-1"), tp("t-2", "ad_clicked", 2, customer="bob")])
    system.runner.catch_up()

    again = System.build(settings)
    try:
        assert [s.version for s in again.migrated] == [11]
        indexes = _indexes(again, "touchpoints")
        for column in KEY_COLUMNS:
            assert view.name("touchpoints_" + column) not in indexes
            assert f"{column} IS NOT NULL" in indexes[view.name(keyed_index(column))].replace("(", "").replace(")", "")
        plan = _plan(again, f"SELECT * FROM {view.table('touchpoints')} WHERE deal_id = ? "
                            "ORDER BY occurred_at, touchpoint_id", ["d-1"])
        assert view.name(keyed_index("deal_id")) in plan, plan
        assert [t["touchpoint_id"] for t in again.view.touchpoints_where("deal_id", "d-1")] == ["t-1"]
    finally:
        again.close()
