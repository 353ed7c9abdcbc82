"""Dead letters: a message that cannot be recorded goes to its own topic, with why and whence."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer

from journeys import metrics


class DeadLetters:
    def __init__(self, producer: KafkaProducer, topic: str):
        self.producer = producer
        self.topic = topic
        self.sent = 0
        self._pending: list[tuple[Any, str]] = []  # (the send's future, the dead letter's kind)

    def send(self, message: Any, kind: str, reason: str) -> None:
        """Keep the original key, value and headers; add headers saying why, where from and when."""
        headers = list(message.headers or []) + [
            ("dlq.reason", reason.encode()),
            ("dlq.error_kind", kind.encode()),
            ("dlq.topic", message.topic.encode()),
            ("dlq.partition", str(message.partition).encode()),
            ("dlq.offset", str(message.offset).encode()),
            ("dlq.dead_lettered_at", datetime.now(UTC).isoformat().encode()),
        ]
        self._pending.append(
            (self.producer.send(self.topic, key=message.key, value=message.value, headers=headers), kind)
        )

    def flush(self, timeout: float = 30.0) -> None:
        """Block until every dead letter is acknowledged; raises if one was not."""
        self.producer.flush(timeout)
        pending, self._pending = self._pending, []
        for future, _ in pending:
            future.get(timeout)  # raises the KafkaError of a failed send
        self.sent += len(pending)
        for _, kind in pending:
            metrics.DEAD_LETTERS.labels(kind).inc()
