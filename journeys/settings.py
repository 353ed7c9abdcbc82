"""Settings from the environment (prefix JOURNEYS_), and the eventsourcing env they imply."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from journeys.crypto import Secrets

DEFAULT_DATABASE_URL = "sqlite:///var/journeys.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOURNEYS_", extra="ignore")

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="sqlite:///path/to/file.db (embedded) or postgresql://user:pass@host:port/db[?schema=name]",
    )
    playbook: str = Field("default", description="a bundled playbook name or a YAML file path")
    host: str = "127.0.0.1"
    port: int = 8000
    log_format: Literal["text", "json"] = Field(
        "text", description="text lines, or one JSON object a line (with the request id) for log collectors"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    run_projections: bool = Field(
        True, description="keep the projections current inside the API process"
    )
    auto_rebuild: bool = Field(
        True,
        description="a projection with a newer playbook than the live read models' rebuilds them under it on start",
    )
    projection_batch_size: int = Field(1000, ge=1, le=100_000)
    rebuild_workers: int = Field(
        0, ge=0, le=64,
        description="processes a rebuild derives the log in, each a range of it (0: one per core)",
    )
    projection_parts: int = Field(
        1, ge=1, le=1024,
        description="how many `journeys project --partition K/N` processes project the view (N); every "
                    "process that reads it says the same, to know how far the view is",
    )
    projection_poll_interval: float = Field(0.05, gt=0, le=60)
    aggregate_cache_size: int = Field(10_000, ge=0)
    read_your_writes_timeout: float = Field(
        5.0, ge=0, le=60, description="longest a read waits for ?min_position"
    )
    database_timeout: int = Field(
        2, ge=1, le=60,
        description="seconds a request waits at most for a PostgreSQL connection before answering 503; once one could "
        "not be had, later requests answer 503 at once until the database is back",
    )

    key_file: str = Field(
        "var/journeys.keys",
        description="where the master and pseudonym keys are kept when not set below; created on first run (0600)",
    )
    master_key: SecretStr | None = Field(None, description="base64 of 32 random bytes; wraps every data key")
    pseudonym_key: SecretStr | None = Field(None, description="base64 of 32 random bytes; keys the customer pseudonyms")
    previous_master_keys: SecretStr | None = Field(
        None, description="comma-separated earlier master keys, still read while `journeys rotate-master-key` runs"
    )

    segment_cors_origins: list[str] = Field(
        default_factory=list,
        description='web sites whose pages may send to the Segment intake (/v1/*) from the browser, as a JSON '
        'list, e.g. ["https://www.example.com"]; none by default',
    )
    max_body_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, description="larger request bodies are refused with 413 before being read"
    )
    key_cache_seconds: float = Field(
        1.0, ge=0, le=1, description="how long a verified API key is trusted before it is looked up again"
    )
    rate_limit_per_minute: int = Field(
        0, ge=0, description="requests per API key per minute in each API process; 0: no limit"
    )

    metrics_port: int | None = Field(
        None, ge=1, le=65535,
        description="project, consume and publish-stage-changes serve their Prometheus metrics on this port",
    )
    metrics_host: str = Field("127.0.0.1", description="the address that port listens on (no key is asked there)")

    kafka_bootstrap_servers: str | None = Field(
        None, description="comma-separated host:port list; needed by consume and publish-stage-changes"
    )
    kafka_topic: str = "touchpoints"
    kafka_dead_letter_topic: str = "touchpoints.dlq"
    kafka_stage_changes_topic: str = "journey-stage-changes"
    kafka_group_id: str = "journeys"
    kafka_max_poll_records: int = Field(2000, ge=1)
    kafka_max_message_bytes: int = Field(1_048_576, ge=1024)
    kafka_session_timeout_ms: int = Field(10_000, ge=1000)
    kafka_max_poll_interval_ms: int = Field(300_000, ge=1000)
    kafka_bootstrap_timeout_ms: int = Field(
        30_000, ge=100, description="how long consume and publish-stage-changes wait for a broker at start"
    )

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                f"unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://..."
            )
        return value

    def kafka_producer_config(self) -> dict[str, Any]:
        """The producer settings every producer here uses: every replica acknowledges."""
        return {"bootstrap_servers": self.kafka_servers(), "acks": "all", "linger_ms": 5,
                "bootstrap_timeout_ms": self.kafka_bootstrap_timeout_ms}

    def kafka_servers(self) -> list[str]:
        if not self.kafka_bootstrap_servers:
            raise ValueError("JOURNEYS_KAFKA_BOOTSTRAP_SERVERS is not set (e.g. localhost:9092)")
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]

    def secrets(self) -> Secrets:
        def reveal(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value is not None else None

        return Secrets.load(
            reveal(self.master_key), reveal(self.pseudonym_key), reveal(self.previous_master_keys), self.key_file
        )

    @property
    def is_sqlite(self) -> bool:
        return urlsplit(self.database_url).scheme == "sqlite"

    @property
    def shared_store(self) -> bool:
        """Whether other processes can open the store (not an SQLite database in memory)."""
        return not self.is_sqlite or not any(m in self.database_url for m in (":memory:", "mode=memory"))

    @property
    def rebuild_processes(self) -> int:
        return self.rebuild_workers or os.cpu_count() or 1

    def eventsourcing_env(self) -> dict[str, str]:
        """The persistence settings eventsourcing reads, derived from the one URL."""
        env: dict[str, str] = {}
        url = urlsplit(self.database_url)
        if self.is_sqlite:
            path = unquote(url.path[1:] if url.path.startswith("/") else url.path)
            if path and ":memory:" not in path and "mode=memory" not in path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            env.update(
                PERSISTENCE_MODULE="eventsourcing.sqlite",
                SQLITE_DBNAME=path,
                PROCESS_RECORDER_TOPIC="journeys.storage.recorders:SQLiteJourneysRecorder",
            )
            return env
        query = parse_qs(url.query)
        env.update(
            PERSISTENCE_MODULE="eventsourcing.postgres",
            POSTGRES_DBNAME=unquote(url.path.lstrip("/")) or "postgres",
            POSTGRES_HOST=url.hostname or "127.0.0.1",
            POSTGRES_PORT=str(url.port or 5432),
            POSTGRES_USER=unquote(url.username or "postgres"),
            POSTGRES_PASSWORD=unquote(url.password or ""),
            POSTGRES_SCHEMA=query.get("schema", ["public"])[0],
            POSTGRES_POOL_SIZE="5",
            POSTGRES_MAX_OVERFLOW="10",
            POSTGRES_PRE_PING="y",
            # Fail fast while the database is away (the API answers 503), and never let a
            # stalled client hold the events table's lock for long.
            POSTGRES_CONNECT_TIMEOUT=str(self.database_timeout),
            POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT="30",
            POSTGRES_LOCK_TIMEOUT="10",
            PROCESS_RECORDER_TOPIC="journeys.storage.recorders:PostgresJourneysRecorder",
        )
        return env
