"""The read models' database handle: names of one generation's tables, statements with '?'
parameters in the store's dialect, and bulk writes of declared tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import Tracking

from journeys.playbook import Playbook
from journeys.storage.dialect import Dialect
from projections.storage.rows import chunks
from projections.storage.schema import GENERATIONAL, Table


class ReadModelStore:
    """What every part of the view shares (see view.py for the whole)."""

    dialect: Dialect  # set by the dialect's view class
    datastore: Any
    playbook: Playbook  # set by the composition root: which journeys each scope has
    generation = 1  # which generation of the read models this view reads and writes
    building = False  # True for a generation a rebuild is deriving (not live yet)
    live_playbook: str | None = None  # the fingerprint the live generation was derived under

    # Given by eventsourcing's tracking recorders, which the dialect's view classes extend.
    _insert_tracking: Callable[[Any, Tracking], None]
    insert_tracking: Callable[[Tracking], None]
    max_tracking_id: Callable[[str], int | None]
    _max_tracking_id: Callable[[str, Any], int | None]
    _tracking_table: Callable[[], str]

    def name(self, name: str, generation: int | None = None) -> str:
        """A table's (or index's) name: generational ones carry their generation (1: none)."""
        g = self.generation if generation is None else generation
        generational = any(name == t or name.startswith(f"{t}_") for t in GENERATIONAL)  # a table or its index
        return f"jv{g}_{name}" if generational and g != 1 else f"jv_{name}"

    def table(self, name: str, generation: int | None = None) -> str:
        """A table's name as statements write it (qualified by the schema where there is one)."""
        return self.dialect.qualified(self.datastore, self.name(name, generation))

    def tracking_name(self, application_name: str) -> str:
        """The name this generation records its position under."""
        return application_name if self.generation == 1 else f"{application_name}@g{self.generation}"

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of one read-only statement written with '?' parameters."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.dialect.sql(statement), list(params))
            return c.fetchall()

    def rows_of(self, table: str, column: str, keys: Sequence[Any], where: str = "", params: Sequence[Any] = (),
                columns: str = "x.*", c: Any = None) -> list[Any]:
        """The rows of a table (`x` in `where` and `columns`) whose `column` holds one of `keys`
        and that meet `where` ('?' parameters `params`), each key looked up by index whatever the
        planner's statistics say: without them (autovacuum not run yet), PostgreSQL planned an
        IN list of a batch's keys as a read of every row of the index's first column (25-93 ms a
        batch at 50,000 customers, growing with the history). In the caller's transaction `c`
        if given, else in one of its own."""
        if c is None:
            with self.datastore.transaction(commit=False) as own:
                return self.rows_of(table, column, keys, where, params, columns, own)
        found: list[Any] = []
        for chunk in chunks(list(dict.fromkeys(keys))):
            values, listed = self.dialect.values("k", [("key", "text")], [[k] for k in chunk])
            each = self.dialect.join_each("k", table, "x", f"x.{column} = k.key" + (f" AND {where}" if where else ""))
            c.execute(self.dialect.sql(f"{values} SELECT {columns} FROM {each}"), [*listed, *params])
            found += c.fetchall()
        return found

    def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        """One statement written with '?' parameters, in a transaction of its own; rows changed."""
        with self.datastore.transaction(commit=True) as c:
            self.dialect.before_write(c)
            return self.run(c, statement, params)

    def execute_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> int:
        """One statement for each row of parameters, in one transaction; rows changed. One
        executemany: psycopg sends them in one pipeline, not a round trip each (a batch's new
        customers' keys were a thousand round trips), and both drivers count the rows of all."""
        if not rows:
            return 0
        with self.datastore.transaction(commit=True) as c:
            self.dialect.before_write(c)
            c.executemany(self.dialect.sql(statement), [list(params) for params in rows])
            return self.dialect.rowcount(c)

    def run(self, c: Any, statement: str, params: Sequence[Any] = ()) -> int:
        """One '?' statement in the caller's transaction; rows changed."""
        c.execute(self.dialect.sql(statement), list(params))
        return self.dialect.rowcount(c)

    def insert(self, c: Any, table: Table, rows: list[list[Any]], conflict: str = "", generation: int | None = None) -> None:
        """Rows of all of a declared table's columns, in as few statements as the dialect allows."""
        self.dialect.insert(c, self.table(table.name, generation), table.columns, rows, conflict)

    def accumulate(self, c: Any, table: Table, rows: list[list[Any]], *columns: str) -> None:
        """Add rows' `columns` to those of the rows with the same key (counters), or insert them."""
        added = ", ".join(f"{column} = k.{column} + excluded.{column}" for column in columns)
        self.dialect.insert(c, f"{self.table(table.name)} AS k", table.columns, rows,
                            f"ON CONFLICT ({table.key}) DO UPDATE SET {added}")

    def delete_keys(self, c: Any, table: Table, keys: list[list[Any]]) -> None:
        """Delete the rows of a declared table with these keys (values in its key columns' order)."""
        if keys:
            where = " AND ".join(f"{column.strip()} = ?" for column in table.key.split(","))
            c.executemany(self.dialect.sql(f"DELETE FROM {self.table(table.name)} WHERE {where}"), keys)

    def upsert(self, c: Any, table: Table, rows: list[list[Any]]) -> None:
        """Insert rows, or update every non-key column of those whose key exists."""
        keys = {k.strip() for k in table.key.split(",")}
        updates = ", ".join(f"{col} = excluded.{col}" for col in table.names if col not in keys)
        self.insert(c, table, rows, f"ON CONFLICT ({table.key}) DO UPDATE SET {updates}")

    def columns(self, table: str) -> set[str]:
        """A table's column names, asked of the catalogue: a failing query (say, the database
        away) is an error, never a table without columns."""
        return self.dialect.columns(self.query, self.datastore, self.name(table))

    def purge_freed(self, table: str) -> None:
        self.dialect.purge_freed(self.datastore, table)
