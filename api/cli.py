"""The `journeys` command: serve the API, run or rebuild projections, replay a customer."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from typing import Annotated, NoReturn, Optional

import typer
from kafka.errors import KafkaError
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
from rich.table import Table
from rich.text import Text

from journeys import logs, metrics
from journeys.application import CustomerNotFoundError
from journeys.playbook import PlaybookError, Scope, load_playbook
from journeys.settings import Settings

app = typer.Typer(help="Event-sourced buyer/seller/marketer journey tracker.", no_args_is_help=True)


@app.callback()
def _logging() -> None:
    """Every command logs in the configured format (JOURNEYS_LOG_FORMAT, JOURNEYS_LOG_LEVEL)."""
    settings = Settings()
    logs.configure(settings.log_format, settings.log_level)

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()


def fail(message: object, code: int = 2) -> NoReturn:
    """Say what is wrong, in red, and exit with `code`."""
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


def _playbook(path: str):
    """The playbook, or exit 2 saying which file, where and what is wrong."""
    try:
        return load_playbook(path)
    except PlaybookError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None


def _system():
    """The system from the settings, or exit 2 saying why the store or the keys cannot be used."""
    from journeys.crypto import SecretsError
    from journeys.database import UNAVAILABLE, explain_unavailable
    from projections.system import StoreFormatError, System

    settings = Settings()
    try:
        return System.build(settings, _playbook(settings.playbook))
    except (StoreFormatError, SecretsError) as error:
        fail(error)
    except UNAVAILABLE as error:
        fail(explain_unavailable(settings.database_url, error))


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="default: JOURNEYS_HOST")] = None,
    port: Annotated[Optional[int], typer.Option(help="default: JOURNEYS_PORT")] = None,
) -> None:
    """Run the HTTP API (and, unless JOURNEYS_RUN_PROJECTIONS=false, the projections)."""
    import uvicorn

    from api.main import create_app

    settings = Settings()
    _playbook(settings.playbook)  # a broken playbook stops start-up here, clearly
    _first_admin_key()
    # Uvicorn's access log would print request paths, which may hold customer keys: ours logs
    # route templates instead (api/access_log.py). Logging is configured by the app callback.
    uvicorn.run(
        create_app(settings), host=host or settings.host, port=port or settings.port, access_log=False,
        log_config=None,
    )


def _key_store(system):
    from api.keys import KeyStore

    return KeyStore(system.view)


def _first_admin_key() -> None:
    """On a store with no keys, create an admin key and print it, once."""
    from api.keys import Role

    system = _system()
    try:
        store = _key_store(system)
        if store.any_active():
            return
        key = store.create(f"admin-{datetime.now():%Y%m%d-%H%M%S}", Role.admin)
    finally:
        system.close()
    console.print(
        "No API key existed, so an admin key was created. It is shown only now; keep it secret.\n"
        "Send it as `Authorization: Bearer KEY`; create other keys with `journeys keys create`.",
        highlight=False,
    )
    print(key, flush=True)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="publisher, marketer, auditor, operator or admin")],
    name: Annotated[str, typer.Option(help="a unique name, e.g. the service or person it is for")],
) -> None:
    """Create an API key; the key alone is printed on the last line, and never shown again."""
    from api.keys import KeyExistsError, Role

    try:
        chosen = Role(role)
    except ValueError:
        console.print(f"[red]unknown role {role!r}: use one of {', '.join(r.value for r in Role)}[/red]")
        raise typer.Exit(2) from None
    system = _system()
    try:
        key = _key_store(system).create(name, chosen)
    except KeyExistsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    finally:
        system.close()
    console.print(f"created {chosen.value} key {name!r}; it is shown only now:", highlight=False)
    print(key, flush=True)


@keys_app.command("list")
def keys_list() -> None:
    """Every key's name, role, creation and last use; never the key."""
    system = _system()
    try:
        found = _key_store(system).list()
    finally:
        system.close()
    table = Table(title="API keys")
    for column in ("name", "role", "created (UTC)", "last used (UTC)", "revoked (UTC)"):
        table.add_column(column)
    fmt = lambda t: "" if t is None else f"{t:%Y-%m-%d %H:%M:%S}"  # noqa: E731
    for k in found:
        table.add_row(k.name, k.role.value, fmt(k.created_at), fmt(k.last_used_at), fmt(k.revoked_at))
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Revoke a key: it stops working in every process within a second."""
    from api.keys import KeyNotFoundError

    system = _system()
    try:
        _key_store(system).revoke(name)
    except KeyNotFoundError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    finally:
        system.close()
    console.print(f"revoked {name!r}")


@app.command()
def project() -> None:
    """Keep the projections current (for deployments that run them apart from the API)."""
    system = _system()
    stop = threading.Event()
    _on_signals(stop.set)
    metrics.serve(system.settings.metrics_port, system.settings.metrics_host)
    system.runner.start()
    console.print(f"following the event log from position {system.runner.position}")
    stop.wait()
    system.close()


def _on_signals(stop) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop())


@app.command()
def consume() -> None:
    """Record touchpoints from Kafka (JOURNEYS_KAFKA_*); SIGTERM finishes the batch and leaves the group."""
    from consumers.touchpoints import TouchpointConsumer

    settings = Settings()
    _require_kafka(settings)
    system = _system()
    try:
        consumer = TouchpointConsumer(system, settings)
    except KafkaError as error:
        system.close()
        fail(_no_kafka(settings, error))
    _on_signals(consumer.stop)
    metrics.serve(settings.metrics_port, settings.metrics_host)
    if settings.run_projections:
        system.runner.start()
    console.print(f"consuming {settings.kafka_topic!r} as group {settings.kafka_group_id!r}")
    try:
        consumer.run()
    finally:
        system.close()
    console.print(dict(consumer.counts))


def _require_kafka(settings: Settings) -> None:
    if not settings.kafka_bootstrap_servers:
        fail("JOURNEYS_KAFKA_BOOTSTRAP_SERVERS is not set: set it to your Kafka brokers, e.g. localhost:9092")


def _no_kafka(settings: Settings, error: Exception) -> str:
    return (f"no Kafka broker answers at {settings.kafka_bootstrap_servers} ({type(error).__name__}): "
            "set JOURNEYS_KAFKA_BOOTSTRAP_SERVERS to your brokers, or start one")


@app.command("publish-stage-changes")
def publish_stage_changes() -> None:
    """Publish every stage transition to JOURNEYS_KAFKA_STAGE_CHANGES_TOPIC as a CloudEvent."""
    from kafka import KafkaProducer

    from consumers.stage_changes import StageChangePublisher

    settings = Settings()
    _require_kafka(settings)
    system = _system()
    try:
        producer = KafkaProducer(**settings.kafka_producer_config())
    except KafkaError as error:
        system.close()
        fail(_no_kafka(settings, error))
    publisher = StageChangePublisher(system, producer, settings.kafka_stage_changes_topic)
    _on_signals(publisher.stop)
    metrics.serve(settings.metrics_port, settings.metrics_host)
    console.print(f"publishing stage changes to {settings.kafka_stage_changes_topic!r}")
    try:
        publisher.run()
    finally:
        system.close()


@app.command()
def erase(
    customer: Annotated[str, typer.Argument(help="the publisher's customer id")],
    by: Annotated[str, typer.Option(help="who asks (kept in the erasure event; nothing personal)")] = "cli",
) -> None:
    """Erase a customer's personal data everywhere by destroying its data key (GDPR art. 17)."""
    system = _system()
    try:
        erased = system.erase(customer, erased_by=by)
        system.runner.catch_up()  # the read models forget it now, and the tombstone is queued
    except CustomerNotFoundError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    finally:
        system.close()
    also = f", and so are the records linked to it: {', '.join(map(str, erased.linked))}" if erased.linked else ""
    console.print(f"erased: record {erased.record_id} is anonymous now{also}; data keys destroyed", highlight=False)


identities_app = typer.Typer(help="Identity links (Segment identify and alias): undo one.", no_args_is_help=True)
app.add_typer(identities_app, name="identities")


@identities_app.command("unlink")
def unlink(
    customer: Annotated[str, typer.Argument(help="the customer id that was linked (the anonymous or previous id)")],
    by: Annotated[str, typer.Option(help="who asks (kept in the unlink event)")] = "cli",
) -> None:
    """Undo a customer's link to another: both customers' stages are derived again as if it never
    happened. The link and the unlink stay in the history, as events."""
    system = _system()
    try:
        was = system.app.unlink(customer, unlinked_by=by)
        system.runner.catch_up()
    except CustomerNotFoundError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    finally:
        system.close()
    if was is None:
        console.print("not linked: nothing to undo")
        raise typer.Exit(1)
    console.print(f"unlinked from record {was}; both customers' stages are derived again", highlight=False)


@app.command("rotate-master-key")
def rotate_master_key() -> None:
    """Re-wrap every data key under JOURNEYS_MASTER_KEY (the old one in JOURNEYS_PREVIOUS_MASTER_KEYS)."""
    if Settings().previous_master_keys is None:
        fail("nothing to rotate: set JOURNEYS_MASTER_KEY to the new master key and JOURNEYS_PREVIOUS_MASTER_KEYS "
             "to the one it replaces, then run this again")
    system = _system()
    try:
        changed = system.keyring.rewrap()
    finally:
        system.close()
    console.print(
        f"{changed} data keys re-wrapped under master key {system.keyring.secrets.master_key_id}; "
        "the previous master key can now be destroyed",
        highlight=False,
    )


@app.command("check-playbook")
def check_playbook(path: Annotated[Optional[str], typer.Argument()] = None) -> None:
    """Validate a playbook file (default: JOURNEYS_PLAYBOOK)."""
    playbook = _playbook(path or Settings().playbook)
    console.print(f"playbook {playbook.name!r} is valid: {len(playbook.evidence)} touchpoint types")


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
        console.print("[red]give a CUSTOMER or --deal ID[/red]")
        raise typer.Exit(2)
    system = _system()
    try:
        if deal is not None:
            _print_deal(system, deal, _aware(as_of), _aware(known_at))
            return
        if record:
            result = system.app.replay_record(UUID(customer), as_of=_aware(as_of), known_at=_aware(known_at))
        else:
            result = system.app.replay(customer, as_of=_aware(as_of), known_at=_aware(known_at))
        revisions = system.view.revisions_of(Scope.customer, [str(result.record_id)])
    except CustomerNotFoundError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    finally:
        system.close()
    _print_replay(result, system.playbook, _aware(as_of))
    _print_revisions(revisions, _aware(known_at))


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
        console.print(f"[red]no touchpoint with deal_id {deal!r} has been recorded[/red]")
        raise typer.Exit(1)
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


def _aware(value: datetime | None) -> datetime | None:

    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _print_replay(result, playbook, as_of: datetime | None) -> None:
    title = f"Customer {result.customer_id}" + (f" as of {as_of.isoformat()}" if as_of else "")
    caused = {}
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


from api import cli_audit, cli_marketing, cli_models  # noqa: E402,F401 - register their commands on `app`

if __name__ == "__main__":
    from api.cli import app as registered  # the module the other command modules registered on

    registered()
