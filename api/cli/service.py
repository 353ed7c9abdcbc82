"""The long-running commands: serve the API, project, consume from Kafka, publish stage changes."""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from typing import Annotated, Optional

import typer
from kafka.errors import KafkaError

from api.cli.common import console, fail, open_system, playbook_or_fail
from journeys import metrics
from journeys.settings import Settings
from projections.partition import Part

app = typer.Typer()


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="default: JOURNEYS_HOST")] = None,
    port: Annotated[Optional[int], typer.Option(help="default: JOURNEYS_PORT")] = None,
) -> None:
    """Run the HTTP API (and, unless JOURNEYS_RUN_PROJECTIONS=false, the projections)."""
    import uvicorn

    from api.main import create_app

    settings = Settings()
    playbook_or_fail(settings.playbook)  # a broken playbook stops start-up here, clearly
    _first_admin_key()
    # Uvicorn's access log would print request paths, which may hold customer keys: ours logs
    # route templates instead (api/access_log.py). Logging is configured by the app callback.
    uvicorn.run(
        create_app(settings), host=host or settings.host, port=port or settings.port, access_log=False,
        log_config=None,
    )


def _first_admin_key() -> None:
    """On a store with no keys, create an admin key and print it, once."""
    from journeys.storage.api_keys import KeyStore, Role

    with open_system() as system:
        store = KeyStore(system.view)
        if store.any_active():
            return
        key = store.create(f"admin-{datetime.now():%Y%m%d-%H%M%S}", Role.admin)
    console.print(
        "No API key existed, so an admin key was created. It is shown only now; keep it secret.\n"
        "Send it as `Authorization: Bearer KEY`; create other keys with `journeys keys create`.",
        highlight=False,
    )
    print(key, flush=True)


@app.command()
def project(
    partition: Annotated[Optional[str], typer.Option(
        help="K/N: be part K of N processes that project together, each applying the records that fall "
             "to it (give every process that reads the view JOURNEYS_PROJECTION_PARTS=N)")] = None,
) -> None:
    """Keep the projections current (for deployments that run them apart from the API)."""
    part = _part(partition, Settings().projection_parts)
    stop = threading.Event()
    _on_signals(stop.set)
    with open_system() as system:
        system.runner.partition(part)
        metrics.serve(system.settings.metrics_port, system.settings.metrics_host)
        system.runner.start()
        which = "" if part.alone else f" as part {part}"
        console.print(f"following the event log{which} from position {system.runner.position}")
        stop.wait()


def _part(partition: str | None, count: int) -> Part:
    """The part `--partition K/N` names (part 1 of `count` without it), or exit 2 saying what is wrong."""
    try:
        return Part.parse(partition) if partition else Part(1, count)
    except ValueError as error:
        fail(str(error))


def _on_signals(stop) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop())


@app.command()
def consume() -> None:
    """Record touchpoints from Kafka (JOURNEYS_KAFKA_*); SIGTERM finishes the batch and leaves the group."""
    from consumers.touchpoints import TouchpointConsumer

    settings = Settings()
    _require_kafka(settings)
    with open_system() as system:
        try:
            consumer = TouchpointConsumer(system, settings)
        except KafkaError as error:
            fail(_no_kafka(settings, error))
        _on_signals(consumer.stop)
        metrics.serve(settings.metrics_port, settings.metrics_host)
        if settings.run_projections:
            system.runner.start()
        console.print(f"consuming {settings.kafka_topic!r} as group {settings.kafka_group_id!r}")
        consumer.run()
    console.print(dict(consumer.counts))


def _require_kafka(settings: Settings) -> None:
    if not settings.kafka_bootstrap_servers:
        fail("JOURNEYS_KAFKA_BOOTSTRAP_SERVERS is not set: set it to your Kafka brokers, e.g. localhost:9092")


def _no_kafka(settings: Settings, error: Exception) -> str:
    return (f"no Kafka broker answers at {settings.kafka_bootstrap_servers} ({type(error).__name__}): "
            "set JOURNEYS_KAFKA_BOOTSTRAP_SERVERS to your brokers, or start one")


@app.command("publish-stage-changes")
def publish_stage_changes(
    partition: Annotated[Optional[str], typer.Option(
        help="K/N: be part K of N processes that publish together, each the changes of the customers, "
             "accounts, deals and cases that fall to it, in order")] = None,
) -> None:
    """Publish every stage transition to JOURNEYS_KAFKA_STAGE_CHANGES_TOPIC as a CloudEvent."""
    from kafka import KafkaProducer

    from consumers.stage_changes import StageChangePublisher

    part = _part(partition, 1)
    settings = Settings()
    _require_kafka(settings)
    with open_system() as system:
        try:
            producer = KafkaProducer(**settings.kafka_producer_config())
        except KafkaError as error:
            fail(_no_kafka(settings, error))
        publisher = StageChangePublisher(system, producer, settings.kafka_stage_changes_topic, part=part)
        _on_signals(publisher.stop)
        metrics.serve(settings.metrics_port, settings.metrics_host)
        which = "" if part.alone else f" as part {part}"
        console.print(f"publishing stage changes to {settings.kafka_stage_changes_topic!r}{which} "
                      f"from outbox position {publisher.position}")
        publisher.run()
