"""A Kafka commit a rebalance refuses loses nothing: the store's positions decide where the
partitions' next owner starts, so the consumer goes on (or stops) instead of crashing."""

from __future__ import annotations

from kafka import TopicPartition
from kafka.errors import CommitFailedError

from consumers.touchpoints import TouchpointConsumer


class KickedOut:
    def __init__(self):
        self.asked = []

    def commit(self, offsets):
        self.asked.append(offsets)
        raise CommitFailedError("the consumer was kicked out of the group")


def test_a_refused_commit_is_logged_not_raised_nor_retried():
    consumer = object.__new__(TouchpointConsumer)  # no broker needed for the commit's rule
    consumer.consumer = KickedOut()
    consumer._uncommitted = {TopicPartition("touchpoints", 0): 42}
    consumer.commit()
    assert len(consumer.consumer.asked) == 1 and consumer.consumer.asked[0][TopicPartition("touchpoints", 0)].offset == 42
    assert consumer._uncommitted == {}
    consumer.commit()  # nothing left to commit: not asked again
    assert len(consumer.consumer.asked) == 1
