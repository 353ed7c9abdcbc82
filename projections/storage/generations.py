"""Generations of the read models: the service reads and writes the live one, a rebuild derives
the next beside it and switches them in one transaction (see projections/rebuild.py); and the
playbooks that derived them."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Self

from eventsourcing.persistence import IntegrityError

from journeys.playbook import Playbook
from journeys.storage.tables import parse_ts, ts
from projections.storage import schema
from projections.storage.changes import GenerationChanged, NotCaughtUp
from projections.storage.counters import Counters
from projections.storage.rows import now
from projections.storage.schema import GENERATIONAL, REVISIONS


class Generations(Counters):
    def open(self, playbook: str | None) -> None:
        """Read from the live generation (on a store without one: generation 1, derived under
        `playbook`, or None when unknown). Its tables are made by the migrations (migrations.py)."""
        generations = self.table("generations")
        if not self.query(f"SELECT generation FROM {generations} WHERE state = 'live'"):
            self.execute(
                f"INSERT INTO {generations} (generation, playbook, state, started_at, live_at) "
                "VALUES (1, ?, 'live', ?, ?) ON CONFLICT (generation) DO NOTHING",
                [playbook, ts(now()), ts(now())],
            )
        self.follow()

    def generation_ddl(self, generation: int | None = None, analytics: bool = True) -> list[str]:
        """A generation's tables and indexes (the live one's by default; the read side's too)."""
        def table(name: str) -> str:
            return self.table(name, generation)

        def index(name: str) -> str:
            return self.name(name, generation)

        return schema.generation_ddl(table, index, self.dialect.serial_key) + (
            schema.analytics_ddl(table, index) + schema.history_ddl(table, index) if analytics else [])

    def analytics_ddl(self) -> list[str]:
        """The indexes the analytics read, on the live generation."""
        return schema.analytics_ddl(self.table, self.name)

    def history_ddl(self) -> list[str]:
        """The index customer histories page through, on the live generation."""
        return schema.history_ddl(self.table, self.name)

    def follow(self) -> bool:
        """Read and write the live generation from now on; True if it changed."""
        rows = self.query(f"SELECT generation, playbook FROM {self.table('generations')} WHERE state = 'live'")
        if not rows:
            return False
        self.live_playbook = rows[0]["playbook"]
        if rows[0]["generation"] == self.generation:
            return False
        self.generation = rows[0]["generation"]
        return True

    def generations(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.query(f"SELECT * FROM {self.table('generations')} ORDER BY generation")]

    def begin_generation(self, playbook: Playbook, fingerprint: str, indexes: bool = True) -> Self:
        """A view of a new generation, its tables created empty, for a rebuild to derive (their
        secondary indexes too, unless a bulk load builds them after: `create_indexes`)."""
        generations = self.table("generations")
        with self.datastore.transaction(commit=True) as c:
            # One statement that writes first: on SQLite a transaction that reads and then writes
            # fails at once ("database is locked") if another connection wrote in between.
            c.execute(
                self.dialect.sql(
                    f"INSERT INTO {generations} (generation, playbook, state, started_at) "
                    f"SELECT COALESCE(MAX(generation), 0) + 1, ?, 'building', ? FROM {generations} RETURNING generation"
                ),
                [fingerprint, ts(now())],
            )
            generation = c.fetchone()["generation"]
        builder = self.building_view(generation, playbook)
        for statement in self.generation_ddl(generation):
            if indexes or not _is_index(statement):
                builder.execute(statement)
        return builder

    def building_view(self, generation: int, playbook: Playbook) -> Self:
        """A view of a generation being built (by this process or, in a bulk rebuild, another)."""
        builder = copy.copy(self)
        builder.__dict__.pop("_initial_stages", None)
        builder.generation, builder.playbook, builder.building = generation, playbook, True
        return builder

    def create_indexes(self, tables: Sequence[str] | None = None) -> None:
        """Build this generation's secondary indexes (of these tables only, if given) after a bulk load."""
        for statement in self.generation_ddl():
            if _is_index(statement) and (tables is None or any(f" ON {self.table(t)} " in statement for t in tables)):
                self.execute(statement)

    def switch_to(
        self, builder: Generations, application_name: str,
        revisions: Callable[[Callable[[str, list[Any]], list[Any]]], list[list[Any]]],
        catch_up: Callable[[int], object] | None = None,
    ) -> list[list[Any]]:
        """Make the builder's generation the live one, if it has processed exactly what the live
        one has (NotCaughtUp, nothing changed, if not), with the revision rows `revisions` gives
        (it is given a query function in the switch's transaction); returns them.

        The live row is updated first: on PostgreSQL that waits for the projection batches that
        hold it (FOR SHARE) and holds off the next; on SQLite it takes the write lock. So no
        batch of the live generation lands between the check and the switch. Where other
        transactions may write meanwhile (PostgreSQL), `catch_up(position)` brings the builder to
        the live position while the live generation waits, so a busy live one cannot keep a
        rebuild from ever switching."""
        generations = self.table("generations")
        with self.datastore.transaction(commit=True) as c:
            retired = self.run(c, f"UPDATE {generations} SET state = 'retired', retired_at = ? "
                                  "WHERE generation = ? AND state = 'live'", [ts(now()), self.generation])
            if retired != 1:
                raise GenerationChanged("another rebuild switched the read models first")
            live = max(self.tracking_positions(application_name, c).values(), default=0)  # parts' too
            built = self._max_tracking_id(builder.tracking_name(application_name), c) or 0
            if live != built and catch_up is not None and self.dialect.concurrent_writes:
                catch_up(live)
                built = self._max_tracking_id(builder.tracking_name(application_name), c) or 0
            if live != built:
                raise NotCaughtUp(live)
            self.run(c, f"UPDATE {generations} SET state = 'live', live_at = ? WHERE generation = ?",
                     [ts(now()), builder.generation])

            def run(statement: str, params: list[Any]) -> list[Any]:
                c.execute(self.dialect.sql(statement), params)
                return c.fetchall()

            rows = revisions(run)
            self.insert(c, REVISIONS, rows)
        self.generation, self.live_playbook = builder.generation, None
        self.follow()
        return rows

    def tracking_positions(self, application_name: str, c: Any = None) -> dict[str, int]:
        """The positions recorded in this generation: under its tracking name (one runner, a
        rebuild) and its parts' (`<name>#K/N`, projections/partition.py)."""
        name = self.tracking_name(application_name)
        statement = (f"SELECT application_name, MAX(notification_id) AS notification_id FROM {self._tracking_table()} "
                     "GROUP BY application_name")  # a few rows: a name per generation and part
        if c is None:
            rows = self.query(statement)
        else:
            c.execute(statement)
            rows = c.fetchall()
        return {r["application_name"]: r["notification_id"] for r in rows
                if r["application_name"] == name or r["application_name"].startswith(f"{name}#")}

    def drop_generations(self, application_name: str, states: Sequence[str], retired_before: datetime | None = None) -> list[int]:
        """Drop the tables of generations in these states (retired: before the given time)."""
        marks = ", ".join("?" * len(states))
        rows = self.query(
            f"SELECT generation FROM {self.table('generations')} WHERE state IN ({marks}) "
            "AND (state != 'retired' OR retired_at < ?)",
            [*states, ts(retired_before or now())],
        )
        dropped = []
        for row in rows:
            old = copy.copy(self)
            old.generation = row["generation"]
            with self.datastore.transaction(commit=True) as c:
                for name in GENERATIONAL:
                    c.execute(f"DROP TABLE IF EXISTS {old.table(name)}")
                for name in old.tracking_positions(application_name, c):  # its parts' too
                    self.run(c, f"DELETE FROM {self._tracking_table()} WHERE application_name = ?", [name])
                self.run(c, f"UPDATE {self.table('generations')} SET state = 'dropped' WHERE generation = ?",
                         [old.generation])
            dropped.append(old.generation)
        return dropped

    def register(self, playbook: Playbook) -> int:
        """The version number of a playbook (by content), given the next one the first time it is seen."""
        playbooks = self.table("playbooks")
        for _ in range(5):  # two processes may take the same number at once: one of them retries
            rows = self.query(f"SELECT version FROM {playbooks} WHERE fingerprint = ?", [playbook.fingerprint])
            if rows:
                return int(rows[0]["version"])
            try:
                self.execute(
                    f"INSERT INTO {playbooks} (fingerprint, version, name, registered_at, body) "
                    f"SELECT ?, COALESCE(MAX(version), 0) + 1, ?, ?, ? FROM {playbooks}",
                    [playbook.fingerprint, playbook.name, ts(now()), playbook.canonical()],
                )
            except IntegrityError:  # the fingerprint or the version was taken meanwhile
                continue
        raise RuntimeError("could not register the playbook")

    def playbooks(self) -> dict[str, dict[str, Any]]:
        """Every playbook that derived read models: fingerprint -> name, version, registered_at."""
        rows = self.query(f"SELECT fingerprint, version, name, registered_at FROM {self.table('playbooks')}")
        return {r["fingerprint"]: {**dict(r), "registered_at": parse_ts(r["registered_at"])} for r in rows}


def _is_index(statement: str) -> bool:
    return statement.startswith("CREATE INDEX")
