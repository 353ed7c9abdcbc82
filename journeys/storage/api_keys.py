"""API keys: long random secrets, stored only as hashes, each with one role.

A key is shown once, when it is created. Verification looks the hash up in the
database, so a key revoked by any process (the CLI, another API worker) stops
working everywhere once the short verification cache has expired.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from eventsourcing.persistence import IntegrityError

from journeys.storage.database import UNAVAILABLE
from journeys.storage.tables import SqlStore, ts

PREFIX = "jrn_"
STALE_DURING_OUTAGE = 300.0  # seconds a verified key is still accepted while the database is unreachable
LAST_USED_EVERY = 60.0  # seconds between writes of a key's last use


class Role(str, Enum):
    publisher = "publisher"
    marketer = "marketer"
    auditor = "auditor"
    operator = "operator"  # reads the metrics and the health, nothing else
    admin = "admin"


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class KeyExistsError(Exception):
    def __init__(self, name: str):
        super().__init__("a key with this name exists already (names are never reused, even when revoked)")


class LastAdminError(Exception):
    def __init__(self) -> None:
        super().__init__(
            "this is the last active admin key: revoking it would leave no one able to manage keys "
            "over the API; create another admin key first (or use the journeys keys command)"
        )


class KeyNotFoundError(Exception):
    def __init__(self, name: str):
        super().__init__("no key has this name")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


class KeyStore:
    def __init__(self, view: SqlStore, cache_seconds: float = 1.0):
        self.view = view
        self.table = view.table("api_keys")
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKey]] = {}
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()
        try:
            view.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (name TEXT PRIMARY KEY, role TEXT NOT NULL, "
                "key_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, last_used_at TEXT, revoked_at TEXT)"
            )
        except IntegrityError:  # PostgreSQL: another process created it at the same moment; it exists now
            view.query(f"SELECT 1 FROM {self.table} LIMIT 1")

    def create(self, name: str, role: Role) -> str:
        """A new key for `role`; the secret is returned here and never again."""
        key = PREFIX + secrets.token_urlsafe(32)
        if self.view.query(f"SELECT name FROM {self.table} WHERE name = ?", [name]):
            raise KeyExistsError(name)
        self.view.execute(
            f"INSERT INTO {self.table} (name, role, key_hash, created_at) VALUES (?, ?, ?, ?)",
            [name, role.value, hash_key(key), ts(_now())],
        )
        return key

    def list(self) -> list[ApiKey]:
        return [_key(row) for row in self.view.query(f"SELECT * FROM {self.table} ORDER BY name")]

    def _active(self, name: str) -> bool:
        return bool(self.view.query(f"SELECT 1 FROM {self.table} WHERE name = ? AND revoked_at IS NULL", [name]))

    def any_active(self) -> bool:
        return bool(self.view.query(f"SELECT name FROM {self.table} WHERE revoked_at IS NULL LIMIT 1"))

    def revoke(self, name: str, keep_an_admin: bool = False) -> ApiKey:
        """Revoke a key. With keep_an_admin (the API), never the last active admin key: only the
        command line, which needs no key, could recover from that."""
        rows = self.view.query(f"SELECT * FROM {self.table} WHERE name = ?", [name])
        if not rows:
            raise KeyNotFoundError(name)
        if rows[0]["revoked_at"] is None:
            guard = (
                f" AND (role <> 'admin' OR (SELECT COUNT(*) FROM {self.table} WHERE role = 'admin' "
                "AND revoked_at IS NULL) > 1)" if keep_an_admin else ""
            )
            changed = self.view.execute(
                f"UPDATE {self.table} SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL{guard}", [ts(_now()), name]
            )
            if not changed and keep_an_admin and rows[0]["role"] == Role.admin.value and self._active(name):
                raise LastAdminError()  # (not changed because another request revoked it first: done)
        with self._lock:
            self._cache = {h: c for h, c in self._cache.items() if c[1].name != name}
        return _key(self.view.query(f"SELECT * FROM {self.table} WHERE name = ?", [name])[0])

    def verify(self, key: str) -> ApiKey | None:
        """The active key this secret belongs to, or None."""
        if not key.startswith(PREFIX) or len(key) > 200:
            return None
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self.cache_seconds:
            found: ApiKey | None = cached[1]
        else:
            try:
                rows = self.view.query(
                    f"SELECT * FROM {self.table} WHERE key_hash = ? AND revoked_at IS NULL", [digest]
                )
            except UNAVAILABLE:
                # While the database is away no key can be revoked (revoking writes to it), so a
                # key verified shortly before still stands; /health can then say what is wrong.
                if cached is not None and now - cached[0] < STALE_DURING_OUTAGE:
                    return cached[1]
                raise
            found = _key(rows[0]) if rows else None
            with self._lock:
                if found is None:
                    self._cache.pop(digest, None)
                else:
                    self._cache[digest] = (now, found)
        if found is not None:
            self._note_use(found.name, now)
        return found

    def _note_use(self, name: str, now: float) -> None:
        with self._lock:
            if now - self._used.get(name, -LAST_USED_EVERY) < LAST_USED_EVERY:
                return
            self._used[name] = now
        try:
            self.view.execute(f"UPDATE {self.table} SET last_used_at = ? WHERE name = ?", [ts(_now()), name])
        except UNAVAILABLE:
            self._used.pop(name, None)  # noted next time


def _now() -> datetime:
    return datetime.now(UTC)


def _key(row: Any) -> ApiKey:
    def parsed(column: str) -> datetime | None:
        return None if row[column] is None else datetime.fromisoformat(row[column])

    return ApiKey(
        name=row["name"],
        role=Role(row["role"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        last_used_at=parsed("last_used_at"),
        revoked_at=parsed("revoked_at"),
    )
