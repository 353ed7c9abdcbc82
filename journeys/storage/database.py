"""How the service behaves while PostgreSQL is away, and when several processes start at once.

Three things eventsourcing's datastore and psycopg's pool do not give us:

- A circuit breaker on the pools. eventsourcing retries every read and write ten
  times on a connection error, and each try waits for the pool's timeout, so a read
  took 24 s to answer 503 during an outage. Once a connection cannot be had the
  breaker opens: every later call fails at once with DatabaseUnavailableError (not an
  error eventsourcing retries) and the API answers 503, while a thread of its own
  asks the pools for a connection every PROBE_EVERY seconds and closes it when they
  give one.
- Reconnects at a steady pace. psycopg's pool retries a lost connection with an
  exponential back-off (1, 2, 4 ... s, up to minutes), so service came back up to
  44 s after the database did. Here it tries every RECONNECT_EVERY seconds.
- One process at a time creates or migrates the schema (a PostgreSQL advisory
  lock): concurrent `CREATE TABLE IF NOT EXISTS` of one table fails in PostgreSQL
  with a unique violation in its catalogue, which killed one of two processes
  started together on a new schema.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from psycopg_pool import PoolClosed, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

log = logging.getLogger(__name__)

PROBE_EVERY = 0.25  # seconds between an open breaker's tries of the database
RECONNECT_EVERY = 0.5  # seconds between the pool's attempts to reconnect


class DatabaseUnavailableError(Exception):
    """The database could not be reached just now; nothing was read or written."""


# What a database that is away, full, read-only or locked raises, by each layer.
UNAVAILABLE = (InterfaceError, OperationalError, psycopg.OperationalError, psycopg.InterfaceError, sqlite3.OperationalError,
               DatabaseUnavailableError)


class Breaker:
    """Open after a failure to get a connection: every call then fails at once, while one thread
    alone tries the database every probe_every seconds and closes the breaker when it answers."""

    def __init__(self, probe_every: float = PROBE_EVERY):
        self.probe_every = probe_every
        self._lock = threading.Lock()
        self._opened_at: float | None = None
        self._probes: list[Callable[[], bool]] = []  # each True when its pool gave a connection

    def add_probe(self, probe: Callable[[], bool]) -> None:
        self._probes.append(probe)

    def before(self) -> None:
        if self._opened_at is not None:
            raise DatabaseUnavailableError("the database is unavailable (it failed moments ago)")

    def failed(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                return
            log.warning("the database cannot be reached: answering 503 at once until it can")
            self._opened_at = time.monotonic()
        threading.Thread(target=self._probe, name="database-probe", daemon=True).start()

    def _probe(self) -> None:
        while self._opened_at is not None:
            time.sleep(self.probe_every)
            try:
                if self._probes and all(probe() for probe in self._probes):
                    log.warning("the database is reachable again after %.1f s", time.monotonic() - self._opened_at)
                    self._opened_at = None
            except PoolClosed:
                return  # the service is stopping
            except Exception as error:
                log.debug("the database is still unreachable (%s)", type(error).__name__)


def guard(pool: Any, breaker: Breaker) -> None:
    """Route a psycopg pool's connections through the breaker."""
    connection: Callable[..., Any] = pool.connection

    @contextmanager
    def guarded(timeout: float | None = None) -> Iterator[Any]:
        breaker.before()
        manager = connection(timeout)
        try:
            conn = manager.__enter__()
        except (PoolTimeout, psycopg.OperationalError) as error:
            breaker.failed()
            raise DatabaseUnavailableError("the database is unavailable") from error
        with _exit_with(manager):
            yield conn

    def probe() -> bool:
        with connection(breaker.probe_every * 4) as conn:  # the pool's own: not through the breaker
            conn.execute("SELECT 1")
        return True

    pool.connection = guarded
    breaker.add_probe(probe)


@contextmanager
def _exit_with(manager: Any) -> Iterator[None]:
    try:
        yield
    except BaseException as error:
        if not manager.__exit__(type(error), error, error.__traceback__):
            raise
    else:
        manager.__exit__(None, None, None)


class SteadyReconnect(AttemptWithBackoff):
    """psycopg's reconnect attempt, at a steady pace instead of a growing one."""

    INITIAL_DELAY = RECONNECT_EVERY
    DELAY_BACKOFF = 1.0


def steady_reconnects() -> None:
    """Make psycopg's pools reconnect every RECONNECT_EVERY seconds (they look the class up by name)."""
    import psycopg_pool.pool

    psycopg_pool.pool.AttemptWithBackoff = SteadyReconnect  # type: ignore[misc]


@contextmanager
def schema_lock(connect: dict[str, Any], schema: str) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock, one per schema, while the schema is created or migrated."""
    with psycopg.connect(**connect, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"journeys schema {schema}"])
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [f"journeys schema {schema}"])


def explain_unavailable(database_url: str, error: BaseException) -> str:
    """One line that says why the configured database cannot be used and what to check."""
    from urllib.parse import unquote, urlsplit

    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    url = urlsplit(database_url)
    if url.scheme.startswith("sqlite"):
        path = Path(unquote(url.path[1:] if url.path.startswith("/") else url.path))
        folder = path.parent if str(path.parent) else Path(".")
        if folder.exists() and not os.access(folder, os.W_OK) or path.exists() and not os.access(path, os.W_OK):
            reason = f"its file or folder is read-only ({reason})"
        return (f"the SQLite database {path} cannot be used: {reason}; make it writable, free space or stop "
                "the program holding it, or set JOURNEYS_DATABASE_URL to another path")
    where = f"{url.hostname or '127.0.0.1'}:{url.port or 5432}{url.path}"  # never the password
    return f"PostgreSQL at {where} cannot be used: {reason}; check JOURNEYS_DATABASE_URL and that the server runs"
