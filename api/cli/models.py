"""Read-model and playbook commands: migrate, rebuild-projections, check-playbook, playbook diff, playbook versions."""

from __future__ import annotations

import csv
import sys
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from api.cli.common import console, open_system, playbook_or_fail, progress_bar
from journeys.playbook import Scope
from journeys.settings import Settings

app = typer.Typer()
playbook_app = typer.Typer(help="Playbook versions: what a new one would change, which ones derived the read models.",
                           no_args_is_help=True)


@app.command()
def migrate() -> None:
    """Bring the store's schema to this version (every start does too), and list the steps it has had.

    Run it before starting a new version on a large store, so the services start at once."""
    from projections.storage.migrations import LATEST, history

    with open_system() as system:
        ran = {step.version for step in system.migrated}
        table = Table("version", "step", "applied at", "")
        for row in history(system.view):
            table.add_row(str(row["version"]), row["description"], row["applied_at"], "now" if row["version"] in ran else "")
        console.print(table)
        console.print(f"the store is at schema version {LATEST}: "
                      + (f"{len(ran)} step(s) applied now" if ran else "nothing to do"), highlight=False)


@app.command("rebuild-projections")
def rebuild_projections(
    keep_old: Annotated[float, typer.Option(
        "--keep-old", help="seconds the old read models stay after the switch, for readers still on them")] = 10.0,
) -> None:
    """Derive the read models again from every stored event beside the live ones, then switch to them.

    The service keeps answering (and projecting) from the live ones meanwhile. Under a new
    playbook (JOURNEYS_PLAYBOOK), each instance whose stages change gets a revision entry."""
    with open_system() as system:
        with progress_bar("rebuilding") as bar:
            task = bar.add_task("rebuild", total=None)
            rebuilt = system.runner.rebuild(
                lambda done, total: bar.update(task, completed=done, total=total), keep_retired=keep_old
            )
        console.print(
            f"generation {rebuilt.generation} of the read models is live (was {rebuilt.retired}): "
            f"{rebuilt.events:,} events in {rebuilt.seconds:.1f} s ({rebuilt.rate:,.0f} events/s), "
            f"up to position {rebuilt.position}; {rebuilt.reclassified:,} instances reclassified "
            f"under playbook v{system.runner.version}",
            highlight=False,
        )
        time.sleep(keep_old)
        dropped = system.runner.drop_retired(keep_old)
        if dropped:
            console.print(f"dropped the read models of generation {', '.join(map(str, dropped))}", highlight=False)


@playbook_app.command("diff")
def diff(
    new: Annotated[str, typer.Argument(help="the new playbook file")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="the CSV of moves (default: standard output)")] = None,
) -> None:
    """Which customers (and accounts, deals, cases) would move in each journey under NEW, and whose
    recommendation would change (journey "(recommendation)"), as CSV;
    the counts per journey on standard error. Changes nothing."""
    from projections.playbook_diff import count_subjects, playbook_diff

    playbook = playbook_or_fail(new)
    counts: Counter[tuple[str, str]] = Counter()
    with open_system() as system, (output.open("w", newline="") if output else nullcontext(sys.stdout)) as out:
        names = {}
        writer = csv.writer(out)
        writer.writerow(["scope", "subject", "customer_id", "journey", "from_stage", "to_stage"])
        scopes = [s for s in Scope if system.playbook.journeys_of(s) or playbook.journeys_of(s)]
        with progress_bar("comparing") as bar:
            task = bar.add_task("diff", total=count_subjects(system.view, scopes))
            for move in playbook_diff(system, playbook, lambda n: bar.advance(task, n)):
                counts[(move.scope.value, move.journey)] += 1
                customer = ""
                if move.scope is Scope.customer:
                    if move.subject not in names:
                        row = system.view.customer(move.subject)
                        names[move.subject] = system.personal.customer_keys([row]).get(move.subject, "erased") if row else ""
                    customer = names[move.subject]
                writer.writerow([move.scope.value, move.subject, customer, move.journey,
                                 move.before or "", move.after or ""])
    table = Table("scope", "journey", "would move", title=f"{playbook.name} ({playbook.fingerprint}) against the live read models")
    for (scope, journey), n in sorted(counts.items()):
        table.add_row(scope, journey, f"{n:,}")
    err = console.__class__(stderr=True)
    err.print(table if counts else "no instance would move")


@playbook_app.command("versions")
def versions() -> None:
    """The playbooks that derived read models, and which generation is live."""
    with open_system() as system:
        known = system.view.playbooks()
        table = Table("version", "name", "fingerprint", "registered", "generations (live in bold)")
        generations = system.view.generations()
        for fingerprint, p in sorted(known.items(), key=lambda kv: kv[1]["version"]):
            used = [f"[bold]{g['generation']}[/bold]" if g["state"] == "live" else str(g["generation"])
                    for g in generations if g["playbook"] == fingerprint and g["state"] != "dropped"]
            table.add_row(f"v{p['version']}", p["name"], fingerprint, f"{p['registered_at']:%Y-%m-%d %H:%M}", ", ".join(used))
        console.print(table)


@app.command("check-playbook")
def checkplaybook_or_fail(path: Annotated[Optional[str], typer.Argument()] = None) -> None:
    """Validate a playbook file (default: JOURNEYS_PLAYBOOK)."""
    playbook = playbook_or_fail(path or Settings().playbook)
    console.print(f"playbook {playbook.name!r} is valid: {len(playbook.evidence)} touchpoint types")
