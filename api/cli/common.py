"""What every command shares: the console, one way to fail, the progress bar, and the system
opened from the settings (or a clear exit saying why it cannot be)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from journeys.playbook import Playbook, PlaybookError, load_playbook
from journeys.settings import Settings

if TYPE_CHECKING:
    from projections.system import System

console = Console()


def fail(message: object, code: int = 2) -> NoReturn:
    """Say what is wrong, in red, and exit with `code` (2: the command was given wrong; 1: what it
    was asked about is not there or not whole)."""
    console.print(f"[red]{message}[/red]", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class RateColumn(ProgressColumn):
    """Events per second, as measured by the progress bar."""

    def render(self, task) -> Text:
        return Text(f"{task.speed or 0:,.0f} events/s")


def progress_bar(label: str) -> Progress:
    """A bar with count, rate and time left; silent when the output is not a terminal."""
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(), RateColumn(),
               TimeRemainingColumn())
    return Progress(*columns, console=console, transient=True, disable=not console.is_terminal)


def playbook_or_fail(path: str) -> Playbook:
    """The playbook, or exit 2 saying which file, where and what is wrong."""
    try:
        return load_playbook(path)
    except PlaybookError as error:
        fail(error)


def system_or_fail() -> System:
    """The system from the settings, or exit 2 saying why the store or the keys cannot be used."""
    from journeys.crypto import SecretsError
    from journeys.storage.database import UNAVAILABLE, explain_unavailable
    from projections.storage.migrations import StoreFormatError
    from projections.system import System

    settings = Settings()
    try:
        return System.build(settings, playbook_or_fail(settings.playbook))
    except (StoreFormatError, SecretsError) as error:
        fail(error)
    except UNAVAILABLE as error:
        fail(explain_unavailable(settings.database_url, error))


@contextmanager
def open_system() -> Iterator[System]:
    """The system for the length of a command, closed however the command ends."""
    system = system_or_fail()
    try:
        yield system
    finally:
        system.close()


def aware(value: datetime | None) -> datetime | None:
    """A time given without a zone is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
