"""`journeys keys`: create (shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from api.cli.common import console, fail, open_system

app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)


@app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="publisher, marketer, auditor, operator or admin")],
    name: Annotated[str, typer.Option(help="a unique name, e.g. the service or person it is for")],
) -> None:
    """Create an API key; the key alone is printed on the last line, and never shown again."""
    from journeys.storage.api_keys import KeyExistsError, KeyStore, Role

    try:
        chosen = Role(role)
    except ValueError:
        fail(f"unknown role {role!r}: use one of {', '.join(r.value for r in Role)}")
    with open_system() as system:
        try:
            key = KeyStore(system.view).create(name, chosen)
        except KeyExistsError as error:
            fail(error, 1)
    console.print(f"created {chosen.value} key {name!r}; it is shown only now:", highlight=False)
    print(key, flush=True)


@app.command("list")
def keys_list() -> None:
    """Every key's name, role, creation and last use; never the key."""
    from journeys.storage.api_keys import KeyStore

    with open_system() as system:
        found = KeyStore(system.view).list()
    table = Table(title="API keys")
    for column in ("name", "role", "created (UTC)", "last used (UTC)", "revoked (UTC)"):
        table.add_column(column)
    fmt = lambda t: "" if t is None else f"{t:%Y-%m-%d %H:%M:%S}"  # noqa: E731
    for k in found:
        table.add_row(k.name, k.role.value, fmt(k.created_at), fmt(k.last_used_at), fmt(k.revoked_at))
    console.print(table)


@app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Revoke a key: it stops working in every process within a second."""
    from journeys.storage.api_keys import KeyNotFoundError, KeyStore

    with open_system() as system:
        try:
            KeyStore(system.view).revoke(name)
        except KeyNotFoundError as error:
            fail(error, 1)
    console.print(f"revoked {name!r}")
