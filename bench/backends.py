"""The stores a benchmark runs on: a fresh SQLite file, and a fresh PostgreSQL schema
(dropped afterwards) on JOURNEYS_BENCH_POSTGRES_URL or the local server."""

from __future__ import annotations

import argparse
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from journeys.settings import Settings

POSTGRES = os.environ.get("JOURNEYS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


@contextmanager
def store(backend: str) -> Iterator[Settings]:
    """Settings for an empty store of the backend, removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "sqlite":
            yield Settings(database_url=f"sqlite:///{tmp}/bench.db", key_file=f"{tmp}/keys")
            return
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        try:
            yield Settings(database_url=f"{POSTGRES}?schema={schema}", key_file=f"{tmp}/keys")
        finally:
            with psycopg.connect(POSTGRES, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, action="append",
                        help="run on this backend only (repeatable); all of them by default")


def each_store(chosen: list[str] | None) -> Iterator[tuple[str, Settings]]:
    """An empty store of each chosen backend (all by default), one after the other."""
    for backend in chosen or BACKENDS:
        with store(backend) as settings:
            yield backend, settings
