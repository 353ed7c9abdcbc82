"""Multi-touch attribution: how an advance's credit is split over the campaign touches before it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MODELS = ("first", "last", "linear", "position")


def credits(model: str, n: int) -> list[float]:
    """How a multi-touch model splits one advance over n touches in occurred order."""
    if model not in MODELS:
        raise ValueError(f"unknown attribution model {model!r}; use one of {MODELS}")
    if model == "first":
        return [1.0] + [0.0] * (n - 1)
    if model == "last":
        return [0.0] * (n - 1) + [1.0]
    if model == "linear" or n <= 2:
        return [1.0 / n] * n
    return [0.4] + [0.2 / (n - 2)] * (n - 2) + [0.4]  # position (U-shaped): 40% first and last, 20% between


def grouped(rows: list[Any]) -> Iterator[list[Any]]:
    """The attribution rows of each advance (subject, time, cause) together."""
    current: list[Any] = []
    key = None
    for row in rows:
        k = (row["subject"], row["advanced_at"], row["cause"])
        if k != key and current:
            yield current
            current = []
        key = k
        current.append(row)
    if current:
        yield current


def ranked(credit: dict[str, float]) -> list[dict[str, Any]]:
    return [{"name": k, "credit": round(v, 4)} for k, v in sorted(credit.items(), key=lambda kv: (-kv[1], kv[0])) if v > 0]
