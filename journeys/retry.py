"""The one way this code retries (tenacity): only the errors that mean "try again" are retried.

- `against(...)`: a bounded number of attempts, e.g. against concurrent writers, with random
  exponential waits (full jitter) so that the writers that collided do not collide again.
- `until_stopped(...)`: a loop's work retried until it succeeds or the loop is told to stop,
  the wait doubling up to a ceiling and cut short by the stop; every retry is reported.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_none,
    wait_random_exponential,
)

from journeys.describe import describe

Errors = type[BaseException] | tuple[type[BaseException], ...]


def against(errors: Errors, attempts: int, jitter: float = 0.0) -> Retrying:
    """Up to `attempts` tries while `errors` are raised; then the last error is raised again."""
    return Retrying(
        retry=retry_if_exception_type(errors), stop=stop_after_attempt(attempts), reraise=True,
        wait=wait_random_exponential(multiplier=jitter, max=1.0) if jitter else wait_none(),
    )


def until_stopped(errors: Errors, stop: threading.Event, first: float, longest: float,
                  on_retry: Callable[[BaseException, float], None]) -> Retrying:
    """Tries until one succeeds or `stop` is set (then the last error is raised again); waits
    `first` seconds, doubling up to `longest`; `on_retry(error, wait)` before each wait."""

    def report(state: RetryCallState) -> None:
        if state.outcome is not None and state.next_action is not None:
            error = state.outcome.exception()
            if error is not None:
                on_retry(error, state.next_action.sleep)

    def pause(seconds: float) -> None:
        stop.wait(seconds)  # a stop ends the wait at once

    return Retrying(
        retry=retry_if_exception_type(errors), stop=lambda _: stop.is_set(), reraise=True,
        wait=wait_exponential(multiplier=first, min=first, max=longest), sleep=pause, before_sleep=report,
    )


def logged(log: logging.Logger, what: str) -> Callable[[BaseException, float], None]:
    """An `on_retry` that warns of each retry, naming the error without its message (describe())."""

    def report(error: BaseException, wait: float) -> None:
        log.warning("%s failed (%s); retrying in %.1f s", what, describe(error), wait)
        log.debug("%s failure", what, exc_info=error)

    return report
