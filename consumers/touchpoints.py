"""The touchpoints consumer: an exactly-once effect from Kafka's at-least-once delivery.

For each partition of a poll: skip what the event store says was applied, dead-letter
what cannot be a touchpoint (flushed before anything is recorded), then record the
touchpoints together with the partition's offset in one transaction. Kafka offsets
are committed only after that write, and on revocation; on assignment the consumer
seeks to the position the event store holds, so a lost offset commit replays nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from eventsourcing.persistence import Tracking
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from consumers.dead_letters import DeadLetters
from consumers.messages import InvalidMessage, headers_of, parse
from journeys import metrics
from journeys.application import AlreadyRecordedError, Result
from journeys.customer import Outcome
from journeys.describe import describe
from journeys.retry import logged, until_stopped
from journeys.settings import Settings
from projections.system import System

log = logging.getLogger(__name__)


def source_name(topic: str, partition: int) -> str:
    """How a Kafka partition is named in the event store's tracking table."""
    return f"kafka:{topic}:{partition}"


class TouchpointConsumer:
    def __init__(self, system: System, settings: Settings):
        self.system = system
        self.settings = settings
        self.counts: Counter[str] = Counter()
        self.stopping = threading.Event()
        self._uncommitted: dict[TopicPartition, int] = {}
        self._next_offset: dict[TopicPartition, int] = {}  # per partition seen: the offset after the last polled
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_servers(),
            group_id=settings.kafka_group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.kafka_max_poll_records,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_session_timeout_ms // 4,
            max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
            fetch_max_bytes=64 * 1024 * 1024,
            bootstrap_timeout_ms=settings.kafka_bootstrap_timeout_ms,
        )
        producer = KafkaProducer(**settings.kafka_producer_config())
        self.dead_letters = DeadLetters(producer, settings.kafka_dead_letter_topic)

    def run(self) -> None:
        """Consume until `stop()`; then finish the batch, commit and leave the group."""
        self.consumer.subscribe([self.settings.kafka_topic], listener=_Rebalance(self))
        try:
            while not self.stopping.is_set():
                batch = self.consumer.poll(timeout_ms=500)
                if batch:
                    self._until_done(batch)
                self._observe_lag()
        finally:
            self.commit()
            self.consumer.close()  # leaves the group
            self.dead_letters.producer.close()

    def stop(self) -> None:
        self.stopping.set()

    def _observe_lag(self) -> None:
        """Per partition processed: the messages between the next one to process and the end of
        the partition as the last fetch saw it (no request to the broker)."""
        for tp, following in list(self._next_offset.items()):
            end = self.consumer.highwater(tp)
            if end is not None:
                metrics.KAFKA_LAG.labels(tp.topic, str(tp.partition)).set(max(0, end - following))

    def _until_done(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Process a poll; a failed write is retried with backoff, never skipped: any error, since
        skipping would lose touchpoints (what no message can ever be is dead-lettered before this).
        Told to stop meanwhile, the last error is raised: the rest is redelivered after a restart."""
        for attempt in until_stopped(Exception, self.stopping, first=0.1, longest=10.0, on_retry=logged(log, "recording a batch")):
            with attempt:
                for partition, messages in batch.items():
                    self.process(partition, messages)
                self.commit()

    def process(self, partition: TopicPartition, messages: list[Any]) -> None:
        """Record one partition's messages and its offset in one transaction."""
        name = source_name(partition.topic, partition.partition)
        self._next_offset[partition] = messages[-1].offset + 1
        applied = self.system.app.source_position(name)
        fresh = [m for m in messages if applied is None or m.offset > applied]
        if len(fresh) < len(messages):
            self.counts["redelivered"] += len(messages) - len(fresh)
        if not fresh:
            self._uncommitted[partition] = messages[-1].offset + 1
            return
        touchpoints, sources = [], []
        for message in fresh:
            try:
                touchpoints.append(
                    parse(message.value, headers_of(message.headers), message.key, self.settings.kafka_max_message_bytes)
                )
                sources.append(message)
            except InvalidMessage as error:
                self.dead_letters.send(message, error.kind, error.reason)
                self.counts["dead_lettered"] += 1
        self.dead_letters.flush()

        def dead_letter_conflicts(results: list[Result]) -> None:
            for message, result in zip(sources, results, strict=True):
                if result.outcome is Outcome.conflict:
                    self.dead_letters.send(message, "conflict", result.error or "conflict")
            self.dead_letters.flush()

        try:
            recorded = self.system.record(
                touchpoints, Tracking(name, fresh[-1].offset), before_save=dead_letter_conflicts, intake="kafka"
            )
        except AlreadyRecordedError:
            self.counts["redelivered"] += len(fresh)  # another consumer of the group got there first
        else:
            self.counts.update(r.outcome.value for r in recorded.results)
        self._uncommitted[partition] = fresh[-1].offset + 1

    def commit(self) -> None:
        """Commit the offsets of what the event store holds. Kafka's offsets only save redelivery:
        the store's positions decide (seek_to_recorded), so a commit a rebalance refuses (this
        consumer left the group meanwhile) loses nothing and is not retried."""
        if not self._uncommitted:
            return
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self._uncommitted.items()}
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as error:
            log.info("offsets not committed (%s): the partitions' next owner starts after what the store holds",
                     describe(error))
        self._uncommitted.clear()

    def seek_to_recorded(self, partitions: list[TopicPartition]) -> None:
        """Start each assigned partition after the last offset the event store recorded."""
        for partition in partitions:
            applied = self.system.app.source_position(source_name(partition.topic, partition.partition))
            if applied is not None:
                self.consumer.seek(partition, applied + 1)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owner: TouchpointConsumer):
        self.owner = owner

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        try:
            self.owner.commit()
        except Exception:  # the event store holds the position; a lost commit replays nothing
            log.warning("offset commit on revocation failed", exc_info=True)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned partitions: %s", ", ".join(sorted(f"{p.topic}:{p.partition}" for p in assigned)) or "none")
        self.owner.seek_to_recorded(assigned)
