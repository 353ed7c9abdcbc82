"""Follows the application's notification log and feeds the projection in batches.

Works the same on SQLite (which eventsourcing's ProjectionRunner cannot
subscribe to) and PostgreSQL: read the next notifications after the position
the view recorded, process them, and record the new position in the view's own
transaction. A crash between batches loses nothing: the next run starts from
the recorded position.
"""

from __future__ import annotations

import logging
import threading
import time

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, Tracking

from journeys.errors import describe
from projections.stages import StageProjection

log = logging.getLogger(__name__)


class ProjectionRunner:
    def __init__(
        self,
        app: Application,
        projection: StageProjection,
        batch_size: int = 1000,
        poll_interval: float = 0.05,
    ):
        self.app = app
        self.projection = projection
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.last_error: str | None = None
        self._advanced = threading.Condition()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def position(self) -> int:
        """The last notification id the view has processed (0: none)."""
        return self.projection.view.max_tracking_id(self.app.name) or 0

    def run_once(self) -> int:
        """Process the next batch; returns how many notifications it covered."""
        start = self.position + 1
        notifications = self.app.recorder.select_notifications(start=start, limit=self.batch_size)
        if not notifications:
            return 0
        events = [self.app.mapper.to_domain_event(n) for n in notifications]
        tracking = Tracking(self.app.name, notifications[-1].id)
        try:
            self.projection.process(events, tracking, after=start - 1)
        except IntegrityError:
            # Another runner recorded this position first; carry on from where it got.
            log.info("position %s was already processed by another runner", tracking.notification_id)
        with self._advanced:
            self._advanced.notify_all()
        return len(notifications)

    def catch_up(self) -> int:
        """Process until the view has reached the end of the log; returns the position."""
        while self.run_once():
            pass
        return self.position

    def rebuild(self) -> int:
        """Forget the view and derive it again from every stored event."""
        self.projection.view.reset(self.app.name)
        self.projection.forget()
        self.projection.outbox = False
        try:
            return self.catch_up()
        finally:
            self.projection.outbox = True

    # -- in the background --------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="projection-runner", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """New events were written: look now rather than at the next poll."""
        self._wakeup.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        backoff = self.poll_interval
        while not self._stopping.is_set():
            try:
                processed = self.run_once()
                self.last_error = None
                backoff = self.poll_interval
            except Exception as error:  # keep running; the position did not move
                self.last_error = describe(error)
                log.warning("projection batch failed (%s); retrying in %.1f s", self.last_error, backoff)
                log.debug("projection batch failure", exc_info=True)
                processed = 0
                backoff = min(backoff * 2, 5.0)
            if not processed:
                self._wakeup.wait(backoff)
                self._wakeup.clear()

    def wait(self, position: int | None, timeout: float) -> bool:
        """Block until the view has processed `position`; False on timeout."""
        if position is None:
            return True
        deadline = time.monotonic() + timeout
        with self._advanced:
            while self.position < position:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.poke()
                self._advanced.wait(min(remaining, 0.1))
        return True
