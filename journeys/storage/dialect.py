"""What differs between SQLite and PostgreSQL, in one object chosen once at start.

Everything above storage writes SQL with '?' parameters and asks the dialect for
the rest: parameter marks, qualified table names, column types, bulk inserts, a
table of values to join against, how a UUID is stored, rows changed, the catalogue,
freeing deleted pages, and what a process does before it opens the store. Nothing
outside the storage packages imports a driver or asks which backend it is on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar
from uuid import UUID, uuid4

import psycopg
from psycopg import sql

from journeys.settings import Settings
from journeys.storage.database import Breaker, guard, schema_lock, steady_reconnects


class Dialect:
    name: ClassVar[str]
    param: ClassVar[str]
    serial_key: ClassVar[str]  # an auto-numbered primary key column's type
    concurrent_writes: ClassVar[bool]
    notification_id: ClassVar[str]  # the events table's column that numbers the events in order

    def sql(self, statement: str) -> str:
        """A statement written with '?' parameters, in this dialect's marks."""
        return statement if self.param == "?" else statement.replace("?", self.param)

    def marks(self, n: int) -> str:
        return ", ".join([self.param] * n)

    def qualified(self, datastore: Any, name: str) -> str:
        """A table's name as statements must write it."""
        return name

    def ddl(self, statement: str) -> Any:
        """A DDL statement as the recorder's create statements hold them."""
        return statement

    def rowcount(self, cursor: Any) -> int:
        """How many rows the cursor's last statement changed (0 when the driver cannot say)."""
        return max(cursor.rowcount, 0)

    def before_write(self, cursor: Any) -> None:
        """Settings for a writing transaction."""

    def lock(self, cursor: Any, keys: Sequence[int]) -> None:
        """Hold these numbered locks until the transaction ends (SQLite: its write lock holds
        everything already)."""

    def each_returning(self, cursor: Any, statement: str, params: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """Run one statement with RETURNING (in the dialect's parameter style) once per set of
        parameters; the rows each returned. SQLite runs in process: one call each."""
        found = []
        for values in params:
            cursor.execute(statement, list(values))
            found.append(cursor.fetchall())
        return found

    def stream(self, cursor: Any, statement: str, params: Sequence[Any] = (), size: int = 10_000) -> Iterator[list[Any]]:
        """The rows of one '?' statement, `size` at a time: never all of them in memory, and the
        transaction never idle for long while the caller works through them."""
        cursor.execute(self.sql(statement), list(params))
        while rows := cursor.fetchmany(size):
            yield rows

    def uuid(self, value: UUID | str) -> Any:
        """A record id as the event tables store it."""
        raise NotImplementedError

    def columns(self, query: Any, datastore: Any, table: str) -> set[str]:
        """A table's column names, from the catalogue (`query` runs a '?' statement)."""
        raise NotImplementedError

    def purge_freed(self, datastore: Any, table: str) -> None:
        """Leave no copy of deleted or overwritten rows in the database's files."""
        raise NotImplementedError

    def insert(self, cursor: Any, table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]],
               conflict: str = "") -> None:
        """Insert rows of (name, type) columns in as few statements as the dialect allows."""
        raise NotImplementedError

    def values(self, alias: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
        """`WITH alias(columns) AS (...)` over rows of values, to join a query against; and its parameters."""
        raise NotImplementedError

    def load(self, cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Load many rows into a table at the fastest rate the dialect has (no conflict handling)."""
        raise NotImplementedError

    def join_each(self, alias: str, table: str, name: str, condition: str) -> str:
        """FROM-clause text: the rows of `alias` (a `values` list) each joined to the rows of
        `table` (as `name`) that meet `condition`, looked up by index one row of `alias` at a time."""
        return f"{alias} JOIN {table} {name} ON {condition}"  # SQLite's planner loops over the small side

    def analyze(self, datastore: Any, tables: Sequence[str]) -> None:
        """Refresh the planner's statistics of these tables (and PostgreSQL's visibility map)."""
        raise NotImplementedError

    @contextmanager
    def opening(self, settings: Settings, env: dict[str, str]) -> Iterator[None]:
        """Held while a process creates or migrates the store."""
        yield

    def guard(self, datastores: Sequence[Any]) -> None:
        """Make the datastores fail fast while the database is away."""


class SQLite(Dialect):
    name = "sqlite"
    param = "?"
    serial_key = "INTEGER PRIMARY KEY AUTOINCREMENT"
    concurrent_writes = False  # one write transaction at a time
    notification_id = "rowid"

    def before_write(self, cursor: Any) -> None:
        cursor.execute("PRAGMA secure_delete = ON")  # what a write frees is zeroed, not left in the file

    @staticmethod
    def _sqlite3(cursor: Any) -> Any:
        """sqlite3's own cursor (eventsourcing wraps it, without rowcount or fetchmany)."""
        return getattr(cursor, "sqlite_cursor", cursor)

    def rowcount(self, cursor: Any) -> int:
        return max(self._sqlite3(cursor).rowcount, 0)

    def stream(self, cursor: Any, statement: str, params: Sequence[Any] = (), size: int = 10_000) -> Iterator[list[Any]]:
        return super().stream(self._sqlite3(cursor), statement, params, size)

    def uuid(self, value: UUID | str) -> Any:
        return (value if isinstance(value, UUID) else UUID(value)).hex

    def columns(self, query: Any, datastore: Any, table: str) -> set[str]:
        return {row["name"] for row in query(f"PRAGMA table_info({table})")}

    def purge_freed(self, datastore: Any, table: str) -> None:
        """Copy the WAL into the database and truncate it: no old page versions are left behind."""
        with datastore.transaction(commit=False) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def insert(self, cursor: Any, table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]],
               conflict: str = "") -> None:
        """Multi-row INSERTs with a conflict clause (at most CHUNK rows each, under SQLite's limit
        on parameters); without one, executemany: SQLite took twice as long over a multi-row
        INSERT without a conflict clause (21 against 11-12 µs a row of positions, 40 batches of
        2,500, the table's three indexes)."""
        if not conflict:
            self.load(cursor, table, [name for name, _ in columns], rows)
            return
        names = ", ".join(name for name, _ in columns)
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            values = ", ".join([f"({self.marks(len(columns))})"] * len(chunk))
            cursor.execute(f"INSERT INTO {table} ({names}) VALUES {values} {conflict}", [v for row in chunk for v in row])

    def values(self, alias: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
        names = ", ".join(name for name, _ in columns)
        marks = ", ".join([f"({self.marks(len(columns))})"] * len(rows))
        params = [self.uuid(v) if kind == "uuid" else v for row in rows for v, (_, kind) in zip(row, columns, strict=True)]
        return f"WITH {alias}({names}) AS (VALUES {marks})", params


    def load(self, cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({self.marks(len(columns))})", rows)

    def analyze(self, datastore: Any, tables: Sequence[str]) -> None:
        with datastore.transaction(commit=True) as c:
            c.execute("ANALYZE")


def copy_rows(cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Rows into a PostgreSQL table by COPY: psycopg writes them in C, where it dumps the values
    of an INSERT's parameters (arrays, composites) one by one in Python."""
    if rows:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


class PostgreSQL(Dialect):
    name = "postgresql"
    param = "%s"
    serial_key = "BIGSERIAL PRIMARY KEY"
    concurrent_writes = True  # transactions write at once, waiting only on the rows they share
    notification_id = "notification_id"

    def qualified(self, datastore: Any, name: str) -> str:
        return f'"{datastore.schema}".{name}'

    def ddl(self, statement: str) -> Any:
        return sql.SQL(statement)  # our own text, never a value

    def uuid(self, value: UUID | str) -> Any:
        return value if isinstance(value, UUID) else UUID(value)

    def columns(self, query: Any, datastore: Any, table: str) -> set[str]:
        rows = query("SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                     [datastore.schema, table])
        return {row["column_name"] for row in rows}

    def purge_freed(self, datastore: Any, table: str) -> None:
        """VACUUM: the dead row versions an UPDATE left behind are removed."""
        with datastore.get_connection() as conn:
            conn.execute(f"VACUUM {table}")

    def insert(self, cursor: Any, table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]],
               conflict: str = "") -> None:
        """One INSERT from column arrays: a constant statement, however many rows; without a
        conflict clause, COPY, whose rows psycopg writes in C (an array is dumped in Python,
        value by value: a third of a late batch's inserts was that)."""
        if not rows:
            return
        if not conflict:
            self.load(cursor, table, [name for name, _ in columns], rows)
            return
        arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(name for name, _ in columns)}) SELECT * FROM unnest({arrays}) {conflict}",
            [list(column) for column in zip(*rows, strict=True)],
        )

    def join_each(self, alias: str, table: str, name: str, condition: str) -> str:
        # With a plain join (or a LATERAL one, which the planner flattens into the same) and no
        # statistics yet (autovacuum off, or not run), the planner chose a merge join along the
        # whole events index once it held ~500,000 rows: 1-3 s a batch instead of ~15 ms.
        # OFFSET 0 keeps the subquery whole, so it runs per row of the list, by index.
        return f"{alias} CROSS JOIN LATERAL (SELECT {name}.* FROM {table} {name} WHERE {condition} OFFSET 0) {name}"

    def values(self, alias: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
        names = ", ".join(name for name, _ in columns)
        arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)
        params = [[self.uuid(v) if kind == "uuid" else v for v in column]
                  for column, (_, kind) in zip(zip(*rows, strict=True), columns, strict=True)]
        return f"WITH {alias}({names}) AS (SELECT * FROM unnest({arrays}))", params

    def stream(self, cursor: Any, statement: str, params: Sequence[Any] = (), size: int = 10_000) -> Iterator[list[Any]]:
        """A server-side cursor: psycopg's own would fetch every row before the first is read."""
        with cursor.connection.cursor(name=f"stream_{uuid4().hex}") as named:
            named.execute(self.sql(statement), list(params))
            while rows := named.fetchmany(size):
                yield rows

    def load(self, cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        copy_rows(cursor, table, columns, rows)

    def analyze(self, datastore: Any, tables: Sequence[str]) -> None:
        with datastore.get_connection() as conn:
            conn.autocommit = True
            for table in tables:
                conn.execute(f"VACUUM ANALYZE {table}")

    @contextmanager
    def opening(self, settings: Settings, env: dict[str, str]) -> Iterator[None]:
        """One process at a time creates or migrates a schema; connections fail fast and
        reconnect at a steady pace."""
        steady_reconnects()
        os.environ.setdefault("PGCONNECT_TIMEOUT", str(settings.database_timeout))  # libpq's own connect
        # No JIT: it compiles a statement whose estimated cost passes jit_above_cost, and a batch's
        # look-ups by key, estimated without statistics, took 110 ms to compile and 5 ms to run.
        # Every statement here reads by index. (A PGOPTIONS that names jit is left as it is.)
        options = os.environ.get("PGOPTIONS", "")
        if "jit" not in options:
            os.environ["PGOPTIONS"] = f"{options} -c jit=off".strip()
        with schema_lock(connect_args(env), env["POSTGRES_SCHEMA"]):
            ensure_schema(env)
            yield

    def each_returning(self, cursor: Any, statement: str, params: Sequence[Sequence[Any]]) -> list[list[Any]]:
        # One round trip (psycopg pipelines executemany) instead of one per statement: a batch of
        # late touchpoints replaces a span of history per instance, hundreds of statements.
        if not params:
            return []
        cursor.executemany(statement, [list(values) for values in params], returning=True)
        found = [cursor.fetchall()]
        while cursor.nextset():
            found.append(cursor.fetchall())
        return found

    def lock(self, cursor: Any, keys: Sequence[int]) -> None:
        if keys:  # in the order given: writers that sort their keys never wait on each other in a circle
            cursor.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%b::bigint[]) WITH ORDINALITY AS u(k, i) ORDER BY i",
                           [list(keys)])

    def guard(self, datastores: Sequence[Any]) -> None:
        breaker = Breaker()
        for datastore in datastores:
            guard(datastore.pool, breaker)


CHUNK = 500


def dialect_for(settings: Settings) -> Dialect:
    return SQLite() if settings.is_sqlite else PostgreSQL()


def connect_args(env: dict[str, str]) -> dict[str, Any]:
    """psycopg.connect's arguments for the database eventsourcing's settings name."""
    return {"dbname": env["POSTGRES_DBNAME"], "host": env["POSTGRES_HOST"], "port": env["POSTGRES_PORT"],
            "user": env["POSTGRES_USER"], "password": env["POSTGRES_PASSWORD"] or None}


def ensure_schema(env: dict[str, str]) -> None:
    """eventsourcing does not create a PostgreSQL schema; make sure it exists."""
    schema = env.get("POSTGRES_SCHEMA", "public")
    if schema == "public":
        return
    with psycopg.connect(**connect_args(env), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))

