"""The auditor's commands: checkpoint, verify, export, verify-export."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer

from api.cli.common import console, fail, open_system, progress_bar

app = typer.Typer()
Root = Annotated[Optional[str], typer.Option("--root", help="a checkpoint root you kept outside the database")]


@app.command()
def checkpoint() -> None:
    """Seal the heads of all hash chains into a new checkpoint and print it: keep its root
    where the database's administrator cannot edit it."""
    with open_system() as system:
        sealed = system.audit.checkpoint()
    print(json.dumps(sealed.as_dict()))


def _records_or_exit(system, customer: str | None, deal: str | None) -> list[str] | None:
    if customer is not None and deal is not None:
        fail("give --customer or --deal, not both")
    try:
        return system.audit_records(customer, deal)
    except LookupError as error:
        fail(error)


@app.command()
def verify(
    customer: Annotated[Optional[str], typer.Option(help="only this customer's chain")] = None,
    deal: Annotated[Optional[str], typer.Option(help="only the chains of the deal's contacts")] = None,
    root: Root = None,
) -> None:
    """Recompute every hash chain and the checkpoints; name the first broken link.
    Exit status 0 when everything verifies, 1 when anything is broken."""
    with open_system() as system:
        records = _records_or_exit(system, customer, deal)
        total = system.audit.count_events(records)
        with progress_bar("verifying") as bar:
            task = bar.add_task("verify", total=total)
            report = system.audit.verify(records, root, progress=lambda n: bar.advance(task, n))
    checkpoint = report.checkpoint
    sealed = (f"; checkpoint {checkpoint.seq} at position {checkpoint.position}, root {checkpoint.root}"
              if checkpoint else "; no checkpoint yet") + f"; {report.unsealed} events not yet sealed by a checkpoint"
    if report.ok:
        console.print(f"verified: {report.events} events in {report.records} chains{sealed}", highlight=False, soft_wrap=True)
        return
    console.print(f"[red]BROKEN: {report.problems[0]}[/red]", highlight=False, soft_wrap=True)
    for problem in report.problems[1:20]:
        console.print(f"  also: {problem}", highlight=False, soft_wrap=True)
    console.print(f"{len(report.problems)} problems in {report.events} events{sealed}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def export(
    deal: Annotated[Optional[str], typer.Option(help="a deal: its contacts' chains, its touchpoints in full")] = None,
    customer: Annotated[Optional[str], typer.Option(help="one customer's chain")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every stored event")] = False,
    output: Annotated[Optional[Path], typer.Option(help="write here (default: standard output)")] = None,
    checkpoint: Annotated[Optional[int], typer.Option(help="seal under this checkpoint (default: the latest)")] = None,
) -> None:
    """Write stored events with their hashes as JSON Lines, and a manifest proving them under a checkpoint."""
    if sum(x is not None and x is not False for x in (deal, customer, all_ or None)) != 1:
        fail("give exactly one of --deal, --customer, --all")
    with open_system() as system:
        _records_or_exit(system, customer, deal)
        with output.open("w") if output else nullcontext(sys.stdout) as target:
            try:
                for line in system.export(customer, deal, checkpoint):
                    target.write(line)
            except LookupError as error:
                fail(error)


@app.command("verify-export")
def verify_export_command(
    file: Annotated[Path, typer.Argument(help="an export written by `journeys export`")],
    root: Root = None,
) -> None:
    """Check an export with no database: chains, Merkle proofs, checkpoint seals, and the root you hold.
    Exit status 0 when it verifies, 1 when anything is wrong (the first problem names its line)."""
    from journeys.verify_export import verify_export

    if not file.is_file():
        fail(f"{file}: no such file")
    result = verify_export(file, root)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if result.ok:
        console.print(f"verified: {result.events} events, {result.sealed} sealed under the checkpoint, "
                      f"{result.unsealed} after it", highlight=False, soft_wrap=True)
        return
    console.print(f"[red]BROKEN: {result.problems[0]}[/red]", highlight=False, soft_wrap=True)
    for problem in result.problems[1:20]:
        console.print(f"  also: {problem}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
