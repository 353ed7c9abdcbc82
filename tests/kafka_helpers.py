"""Producing, reading and consuming in Kafka tests, bounded in time."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from consumers.touchpoints import TouchpointConsumer


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, Any, list | None]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, value, headers in messages:
        raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
        producer.send(topic, key=key, value=raw, headers=headers or [])
    producer.flush()
    producer.close()


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """Every message on a topic, waiting until at least `expected` have arrived."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=1000)
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            found += batch
        if len(found) >= expected:
            time.sleep(0.5)  # anything beyond what was expected shows up too
            for batch in consumer.poll(timeout_ms=500).values():
                found += batch
            break
    consumer.close()
    return found


class Running:
    """A TouchpointConsumer in a thread, stopped (finish batch, commit, leave) on exit."""

    def __init__(self, consumer: TouchpointConsumer):
        self.consumer = consumer
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.consumer.run()
        except BaseException as error:  # surfaced by __exit__
            self.error = error

    def __enter__(self) -> TouchpointConsumer:
        self.thread.start()
        return self.consumer

    def __exit__(self, *exc: object) -> None:
        self.consumer.stop()
        self.thread.join(30)
        if self.error:
            raise self.error
