"""Tables beside the event store (keys, the keyring, the read models): the handle they are
written through, and how a time is written in a text column."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol


class SqlStore(Protocol):
    """Statements with '?' parameters on the events' database (the journey view gives this)."""

    def table(self, name: str) -> str: ...
    def query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]: ...
    def execute(self, statement: str, params: Sequence[Any] = ()) -> int: ...
    def execute_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> int: ...
    def rows_of(self, table: str, column: str, keys: Sequence[Any], where: str = "", params: Sequence[Any] = (),
                columns: str = "x.*", c: Any = None) -> list[Any]: ...


def ts(value: datetime | None) -> str | None:
    """Timestamps as fixed-width UTC text, so text order is time order in both dialects."""
    return None if value is None else _utc_text(value)


@lru_cache(maxsize=8192)
def _utc_text(value: datetime) -> str:
    """(A derivation writes the same few times many times over: a touchpoint's time is every one of
    its transitions' time and the next stay's start. Equal instants give the same text.)"""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def parse_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
