"""Commands on one customer or deal: erase, undo an identity link, replay as an auditor reads it;
and re-wrapping every data key under a new master key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Optional

import typer
from rich.table import Table

from api.cli.common import aware, console, fail, open_system
from journeys.application import CustomerNotFoundError
from journeys.playbook import Scope
from journeys.settings import Settings

app = typer.Typer()
identities = typer.Typer(help="Identity links (Segment identify and alias): undo one.", no_args_is_help=True)


@app.command()
def erase(
    customer: Annotated[str, typer.Argument(help="the publisher's customer id")],
    by: Annotated[str, typer.Option(help="who asks (kept in the erasure event; nothing personal)")] = "cli",
) -> None:
    """Erase a customer's personal data everywhere by destroying its data key (GDPR art. 17)."""
    with open_system() as system:
        try:
            erased = system.erase(customer, erased_by=by)
        except CustomerNotFoundError as error:
            fail(error, 1)
        system.runner.catch_up()  # the read models forget it now, and the tombstone is queued
    also = f", and so are the records linked to it: {', '.join(map(str, erased.linked))}" if erased.linked else ""
    console.print(f"erased: record {erased.record_id} is anonymous now{also}; data keys destroyed", highlight=False)


@identities.command("unlink")
def unlink(
    customer: Annotated[str, typer.Argument(help="the customer id that was linked (the anonymous or previous id)")],
    by: Annotated[str, typer.Option(help="who asks (kept in the unlink event)")] = "cli",
) -> None:
    """Undo a customer's link to another: both customers' stages are derived again as if it never
    happened. The link and the unlink stay in the history, as events."""
    with open_system() as system:
        try:
            was = system.app.unlink(customer, unlinked_by=by)
        except CustomerNotFoundError as error:
            fail(error, 1)
        system.runner.catch_up()
    if was is None:
        fail("not linked: nothing to undo", 1)
    console.print(f"unlinked from record {was}; both customers' stages are derived again", highlight=False)


@app.command("rotate-master-key")
def rotate_master_key() -> None:
    """Re-wrap every data key under JOURNEYS_MASTER_KEY (the old one in JOURNEYS_PREVIOUS_MASTER_KEYS)."""
    if Settings().previous_master_keys is None:
        fail("nothing to rotate: set JOURNEYS_MASTER_KEY to the new master key and JOURNEYS_PREVIOUS_MASTER_KEYS "
             "to the one it replaces, then run this again")
    with open_system() as system:
        changed = system.keyring.rewrap()
    console.print(
        f"{changed} data keys re-wrapped under master key {system.keyring.secrets.master_key_id}; "
        "the previous master key can now be destroyed",
        highlight=False,
    )


@app.command()
def replay(
    customer: Annotated[Optional[str], typer.Argument(help="the publisher's customer id (or, with --record, our record id)")] = None,
    as_of: Annotated[Optional[datetime], typer.Option("--as-of", help="replay up to this moment (UTC if no zone)")] = None,
    known_at: Annotated[Optional[datetime], typer.Option("--known-at", help="only touchpoints recorded by then (UTC if no zone)")] = None,
    record: Annotated[bool, typer.Option("--record", help="CUSTOMER is a record id (e.g. of an erased customer)")] = False,
    deal: Annotated[Optional[str], typer.Option("--deal", help="replay a deal across all its contacts instead")] = None,
) -> None:
    """Replay a customer's stored events, or a deal's: history and stages, as an auditor reads them."""
    from uuid import UUID

    if (customer is None) == (deal is None):
        fail("give a CUSTOMER or --deal ID")
    as_of, known_at = aware(as_of), aware(known_at)
    with open_system() as system:
        if deal is not None:
            _print_deal(system, deal, as_of, known_at)
            return
        try:
            if record:
                result = system.app.replay_record(UUID(customer), as_of=as_of, known_at=known_at)
            else:
                result = system.app.replay(str(customer), as_of=as_of, known_at=known_at)
        except CustomerNotFoundError as error:
            fail(error, 1)
        revisions = system.view.revisions_of(Scope.customer, [str(result.record_id)])
    _print_replay(result, system.playbook, as_of)
    _print_revisions(revisions, known_at)


def _print_deal(system, deal: str, as_of: datetime | None, known_at: datetime | None) -> None:
    from projections.history import Window, history

    system.runner.catch_up()
    table = Table(title=f"Deal {deal}" + (f" as of {as_of.isoformat()}" if as_of else "")
                  + (f" as known at {known_at.isoformat()}" if known_at else ""))
    for column in ("occurred (UTC)", "recorded (UTC)", "contact", "type", "touchpoint", "stage changes"):
        table.add_column(column)
    after, summary = None, None
    while True:
        page = history(system, Scope.deal, deal, Window(as_of, known_at), after, 1000)
        summary = page["summary"]
        for t in page["touchpoints"]:
            changes = [f"{c['scope']} {c['journey']}: {c['from_stage'] or '-'} -> {c['to_stage'] or 'restart'}"
                       + (f" [defect: {'; '.join(c['defects'])}]" if c["defects"] else "") for c in t["transitions"]]
            table.add_row(f"{t['occurred_at']:%Y-%m-%d %H:%M:%S}", f"{t['recorded_at']:%Y-%m-%d %H:%M:%S}",
                          t["customer_id"], t["type"], t["touchpoint_id"], "\n".join(changes))
        after = page["next_cursor"]
        if after is None:
            break
    if not summary["touchpoint_count"]:
        fail(f"no touchpoint with deal_id {deal!r} has been recorded", 1)
    console.print(table)
    contacts = ", ".join(f"{c['customer_id']} ({c['touchpoints']})" for c in summary["contacts"])
    console.print(f"{summary['touchpoint_count']} touchpoints from {summary['first_touch']:%Y-%m-%d} to "
                  f"{summary['last_touch']:%Y-%m-%d}; contacts: {contacts}", highlight=False)
    for journey, entry in summary["journeys"].items():
        console.print(f"{journey} ({entry['scope']}): furthest {entry['furthest_stage'] or '-'}"
                      + (", restarted" if entry["restarted"] else ""), highlight=False)
    _print_revisions(page["revisions"], None)  # already those made by known_at


def _print_revisions(revisions: list[dict], known_at: datetime | None) -> None:
    """How the history shown was revised: late touchpoints, reclassifications under a new playbook."""
    shown = [r for r in revisions if known_at is None or r["recorded_at"] <= known_at]
    if not shown:
        return
    table = Table(title="Revisions of this history")
    for column in ("recorded (UTC)", "scope", "reason", "stages before -> after", "transitions"):
        table.add_column(column)
    for r in shown:
        moved = [f"{j}: {r['before'].get(j) or '-'} -> {r['after'].get(j) or '-'}" for j in r["after"]]
        changes = [f"- {t['journey']}: {t['from_stage'] or '-'} -> {t['to_stage'] or 'restart'}" for t in r["removed"]]
        changes += [f"+ {t['journey']}: {t['from_stage'] or '-'} -> {t['to_stage'] or 'restart'}" for t in r["added"]]
        table.add_row(f"{r['recorded_at']:%Y-%m-%d %H:%M:%S}", r["scope"], r["reason"], "\n".join(moved), "\n".join(changes))
    console.print(table)


def _print_replay(result, playbook, as_of: datetime | None) -> None:
    title = f"Customer {result.customer_id}" + (f" as of {as_of.isoformat()}" if as_of else "")
    caused: dict[str, list[str]] = {}
    for t in result.derivation.transitions:
        label = f"{t.journey}: {t.from_stage or '-'} -> {t.to_stage or 'restart'}"
        if t.skipped:
            label += f" (skipped {', '.join(t.skipped)})"
        if t.defects:
            label += f" [defect: {'; '.join(t.defects)}]"
        caused.setdefault(t.touchpoint_id, []).append(label)
    table = Table(title=title)
    for column in ("occurred (UTC)", "recorded (UTC)", "type", "channel", "source", "touchpoint", "stage changes"):
        table.add_column(column)
    for t in result.derivation.touchpoints:
        table.add_row(
            f"{t.occurred_at:%Y-%m-%d %H:%M:%S}", f"{t.recorded_at:%Y-%m-%d %H:%M:%S}", t.type,
            t.channel, t.source, t.touchpoint_id, "\n".join(caused.get(t.touchpoint_id, [])),
        )
    console.print(table)
    stages = result.derivation.stages
    for journey in stages.positions:
        position = stages[journey]
        since = f" since {position.since:%Y-%m-%d %H:%M}" if position.since else ""
        cause = f" ({position.touchpoint_type} {position.touchpoint_id})" if position.touchpoint_id else ""
        console.print(f"{playbook.journeys[journey].title}: [bold]{position.stage or 'not started'}[/bold]{since}{cause}")
