"""The one retry helper: only the errors that mean "try again" are retried, and not forever."""

from __future__ import annotations

import threading

import pytest

from journeys.retry import against, until_stopped


class Busy(Exception):
    pass


def attempts_of(retrying, fail_times: int, error: type[Exception] = Busy) -> tuple[int, str]:
    calls = []
    for attempt in retrying:
        with attempt:
            calls.append(1)
            if len(calls) <= fail_times:
                raise error("not yet")
            return len(calls), "done"
    raise AssertionError("unreachable")


def test_against_retries_the_named_errors_up_to_the_limit_then_raises_the_last():
    assert attempts_of(against(Busy, 3), fail_times=2) == (3, "done")
    with pytest.raises(Busy):
        attempts_of(against(Busy, 3), fail_times=3)


def test_against_never_retries_another_error():
    calls = []
    with pytest.raises(KeyError):
        for attempt in against(Busy, 5):
            with attempt:
                calls.append(1)
                raise KeyError("a bug, not a collision")
    assert len(calls) == 1


def test_until_stopped_reports_each_retry_and_ends_when_told_to():
    stop, seen = threading.Event(), []

    def on_retry(error: BaseException, wait: float) -> None:
        seen.append((type(error).__name__, wait))
        if len(seen) == 3:
            stop.set()

    with pytest.raises(Busy):
        attempts_of(until_stopped(Busy, stop, first=0.001, longest=0.004, on_retry=on_retry), fail_times=100)
    assert [name for name, _ in seen] == ["Busy"] * 3
    assert [wait for _, wait in seen] == [0.001, 0.002, 0.004]  # doubling up to the ceiling
    assert attempts_of(until_stopped(Busy, threading.Event(), 0.001, 0.004, lambda e, w: None), fail_times=2) == (3, "done")
