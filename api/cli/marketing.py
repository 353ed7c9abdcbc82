"""Marketing commands: export-segment, import-spend."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import console, fail, open_system, progress_bar
from journeys.playbook import Scope
from projections.segment_export import csv_lines, export_columns, segment_rows
from projections.spend import SpendError, parse_spend

app = typer.Typer()
NOT_STARTED = "not_started"


@app.command("export-segment")
def export_segment(
    stage: Annotated[list[str], typer.Option(
        "--stage", help="JOURNEY=STAGE (or JOURNEY=not_started); repeat for several journeys of one scope")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the file to write")],
    format: Annotated[str, typer.Option("--format", help="csv or jsonl")] = "csv",
) -> None:
    """Write a whole segment (each member's id, stages and next message id) to a file, a page
    at a time, with a progress bar."""
    if format not in ("csv", "jsonl"):
        fail(f"--format: {format!r} is neither csv nor jsonl")
    with open_system() as system:
        filters = {}
        for item in stage:
            journey, sep, name = item.partition("=")
            model = system.playbook.journeys.get(journey)
            if not sep or model is None:
                fail(f"--stage {item!r}: give JOURNEY=STAGE with a journey of the playbook: {list(system.playbook.journeys)}")
            if name != NOT_STARTED and name not in model.stages:
                fail(f"--stage {item!r}: {name!r} is not a stage of {journey}; use one of {model.stages} or {NOT_STARTED}")
            filters[journey] = None if name == NOT_STARTED else name
        scopes = {system.playbook.journeys[j].scope for j in filters} or {Scope.customer}
        if len(scopes) > 1:
            fail("--stage: these journeys are kept for different scopes")
        scope = scopes.pop()
        first = next(iter(filters.items()), None)
        total = system.view.summary().get(first[0], {}).get(first[1]) if first else None
        written = 0
        with output.open("w", encoding="utf-8", newline="") as out, progress_bar("exporting") as bar:
            task = bar.add_task("export", total=total)
            rows = segment_rows(system, filters, scope)
            if format == "csv":
                lines = csv_lines(export_columns(system.playbook, scope), rows)
                out.write(next(lines))
            else:
                lines = (json.dumps(row) + "\n" for row in rows)
            for line in lines:
                out.write(line)
                written += 1
                bar.update(task, completed=written)
        console.print(f"{written:,} members written to {output}", highlight=False)


@app.command("import-spend")
def import_spend(
    file: Annotated[Path, typer.Argument(help="CSV with a header: campaign, period, amount, currency")],
) -> None:
    """Record campaign spend from a CSV file: all rows or, if any is wrong, none (each wrong row is named)."""
    entries, problems = [], []
    try:
        with file.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"campaign", "period", "amount", "currency"} - set(reader.fieldnames or [])
            if missing:
                fail(f"{file}: the header lacks {sorted(missing)}")
            for line, row in enumerate(reader, start=2):
                try:
                    entries.append(parse_spend(row["campaign"] or "", row["period"] or "", row["amount"] or "", row["currency"] or ""))
                except SpendError as error:
                    problems.append(f"line {line}: {error}")
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        fail(f"{file}: {error}")
    if problems:
        for problem in problems[:50]:
            print(problem, file=sys.stderr)
        fail(f"{len(problems)} of {len(entries) + len(problems)} rows are wrong; nothing was recorded")
    with open_system() as system:
        system.spend.record(entries, recorded_by="cli")
    console.print(f"{len(entries):,} spend records recorded", highlight=False)
