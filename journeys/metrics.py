"""Operations metrics in Prometheus' format, the same in every process: the API serves them at
GET /metrics (an operator's key); `journeys project`, `consume` and `publish-stage-changes`
serve them on a port of their own when JOURNEYS_METRICS_PORT is set.

Labels are bounded: outcomes, intakes, route templates (never paths, which can hold a customer
key), journeys and stages of the playbook, dead-letter kinds, Kafka partitions.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server

TOUCHPOINTS = Counter(
    "journeys_touchpoints_received", "Touchpoints received, by outcome and intake (http, kafka)", ["outcome", "intake"]
)
REQUESTS = Histogram(
    "journeys_http_request_duration_seconds", "HTTP request latency, by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TRANSITIONS = Counter(
    "journeys_stage_transitions", "Stage transitions derived by the live projection, by journey and stage entered",
    ["journey", "stage"],
)
DEAD_LETTERS = Counter("journeys_dead_letters", "Messages sent to the dead-letter topic, by reason", ["reason"])
PROJECTION_POSITION = Gauge("journeys_projection_position", "The last event position the read models processed")
PROJECTION_LAG_EVENTS = Gauge("journeys_projection_lag_events", "Stored events the read models have not processed yet")
PROJECTION_LAG_SECONDS = Gauge(
    "journeys_projection_lag_seconds", "Seconds since the read models were last current (0 when current)"
)
KAFKA_LAG = Gauge(
    "journeys_kafka_consumer_lag", "Messages on a partition the consumer has not reached yet", ["topic", "partition"]
)


class Lag:
    """Tracks how far the read models are behind the event store, and since when."""

    def __init__(self) -> None:
        self.current_since: float | None = time.time()

    def observe(self, position: int, head: int) -> None:
        behind = max(0, head - position)
        now = time.time()
        if behind == 0:
            self.current_since = now
        PROJECTION_POSITION.set(position)
        PROJECTION_LAG_EVENTS.set(behind)
        PROJECTION_LAG_SECONDS.set(0 if behind == 0 else now - (self.current_since or now))


def serve(port: int | None, host: str) -> None:
    """Serve the metrics on a port of this process (for processes without the API)."""
    if port:
        start_http_server(port, addr=host)
