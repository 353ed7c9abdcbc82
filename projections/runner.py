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
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, Tracking

from journeys import metrics
from journeys.describe import describe
from journeys.retry import logged, until_stopped
from projections.bulk import Workers
from projections.partition import InstanceChanged, Part, is_link, part_of
from projections.rebuild import Progress, Rebuild, Rebuilt
from projections.stages import StageProjection, next_batch
from projections.storage.changes import GenerationChanged

log = logging.getLogger(__name__)


class ProjectionRunner:
    def __init__(
        self,
        app: Application,
        projection: StageProjection,
        batch_size: int = 1000,
        poll_interval: float = 0.05,
        version: int = 0,
        auto_rebuild: bool = True,
        parts: int = 1,
        rebuild_workers: Workers | None = None,
    ):
        self.app = app
        self.rebuild_workers = rebuild_workers  # the processes a rebuild's first pass runs in
        self.projection = projection
        self.version = version  # of the playbook this runner derives under
        self.auto_rebuild = auto_rebuild  # rebuild when the live read models come from an older playbook
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.last_error: str | None = None
        self.paused: str | None = None  # why this runner does not write the live read models
        self._advanced = threading.Condition()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._dropper: threading.Timer | None = None  # drops the generation an automatic rebuild retired
        self.lag = metrics.Lag()
        self.projects = False  # whether start() was asked to keep the projection current here
        # How many parts project the view (projections/partition.py), and which one this runner
        # is: None when there are several and this process only reads (see `partition`).
        self.parts = parts
        self.part: Part | None = Part(1, 1) if parts == 1 else None

    def partition(self, part: Part) -> None:
        """Project as this part of several (`journeys project --partition K/N`)."""
        self.parts, self.part = part.count, part
        self.projection.checked = not part.alone

    @property
    def position(self) -> int:
        """The last notification id the view has processed (0: none). With several parts: this
        part's own position; for a process that only reads, the least of the parts' (every
        event up to it is in the view)."""
        view = self.projection.view
        if self.part is not None and self.part.alone:
            return view.max_tracking_id(view.tracking_name(self.app.name)) or 0
        found = self._positions()
        if self.part is not None:
            return found[self.part]
        return min(found.values())

    def _positions(self, recorded: dict[str, int] | None = None) -> dict[Part, int]:
        """Each part's position: its own, or the single runner's (a rebuild's) if further.
        `recorded`: the view's tracking positions, if read already."""
        view = self.projection.view
        name = view.tracking_name(self.app.name)
        if recorded is None:
            recorded = view.tracking_positions(self.app.name)
        return {part: max(recorded.get(part.tracking_name(name), 0), recorded.get(name, 0))
                for part in (Part(k, self.parts) for k in range(1, self.parts + 1))}

    def layout_conflict(self, recorded: dict[str, int] | None = None) -> str | None:
        """Why this runner must not write: the view was projected further by another layout (a
        single runner, or a different number of parts), whose events it would apply again."""
        view, part = self.projection.view, self.part
        name = view.tracking_name(self.app.name)
        if recorded is None:
            recorded = view.tracking_positions(self.app.name)
        mine = max(recorded.get(name, 0), recorded.get(part.tracking_name(name), 0) if part else 0)
        for other, at in recorded.items():
            layout = other.rpartition("/")[2] if "#" in other else "1"
            if at > mine and layout != str(self.parts) and not (layout == "1" and self.parts > 1 and other == name):
                ran = "one runner" if layout == "1" else f"{layout} parts"
                return (f"the read models were projected by {ran} up to position {at}, further than this runner "
                        f"({mine}): run that layout again, or rebuild the read models (journeys rebuild-projections)")
        return None

    def observe(self) -> None:
        """Report the position and the lag behind the event store to the metrics."""
        self.lag.observe(self.position, self.app.recorder.max_notification_id() or 0)

    def run_once(self) -> int:
        """Process the next batch; returns how many notifications it covered."""
        while True:
            try:
                return self._run_once()
            except InstanceChanged as changed:  # another part wrote an instance of the batch: read it again
                log.debug("%s", changed)

    def _run_once(self) -> int:
        view, part = self.projection.view, self.part
        if view.follow():  # a rebuild switched the read models to a new generation
            self.projection.forget()
        if part is None:
            raise RuntimeError(f"the view is projected by {self.parts} parts: run `journeys project --partition K/"
                               f"{self.parts}` for each K; this process only reads")
        recorded, generation = view.tracking_positions(self.app.name), view.generation  # one read serves both
        if not self._may_write(recorded):
            return 0
        if view.generation != generation:  # _may_write rebuilt the read models under a new playbook
            recorded = view.tracking_positions(self.app.name)
        start = self._positions(recorded)[part] + 1
        notifications = self.app.recorder.select_notifications(start=start, limit=self.batch_size)
        if not notifications:
            return 0
        if part.alone:
            events = [self.app.mapper.to_domain_event(n) for n in notifications]
            taken = next_batch(events)  # an identity link is processed alone
            events, notifications = events[:taken], notifications[:taken]
        else:
            notifications = self._up_to_a_link(notifications)
            if not notifications:
                return 0  # at a link another part applies, or that waits for this one's siblings
            events = [self.app.mapper.to_domain_event(n) for n in notifications if part.owns(n.originator_id)]
        tracking = Tracking(part.tracking_name(view.tracking_name(self.app.name)), notifications[-1].id)
        try:
            self.projection.process(events, tracking, after=start - 1)
            if not part.alone and is_link(notifications[0].topic):
                self.projection.forget()  # the link moved records between customers, whichever part applied it
        except IntegrityError:
            # Another runner recorded this position first; carry on from where it got.
            log.info("position %s was already processed by another runner", tracking.notification_id)
        except GenerationChanged:
            log.info("the read models were switched to a new generation; following it")
            return self.run_once()
        with self._advanced:
            self._advanced.notify_all()
        return len(notifications)

    def _up_to_a_link(self, notifications: Sequence[Any]) -> Sequence[Any]:
        """The notifications a part takes next: those before the next identity link, or the link
        alone once it may pass it (a barrier: see projections/partition.py); [] while it waits."""
        first, part = notifications[0], self.part
        assert part is not None
        if not is_link(first.topic):
            return notifications[:next((i for i, n in enumerate(notifications) if is_link(n.topic)), len(notifications))]
        positions = self._positions()
        if part.owns(first.originator_id):  # everyone else has applied what came before it
            ready = all(positions[p] >= first.id - 1 for p in part.siblings())
        else:  # its owner has applied it
            ready = positions[Part(part_of(first.originator_id, part.count), part.count)] >= first.id
        return [first] if ready else []

    def _may_write(self, recorded: dict[str, int]) -> bool:
        """Only a runner with the playbook the live read models were derived under writes them.
        One with a newer playbook rebuilds them under it first (a deployment); one with an older
        one leaves them alone (a process not restarted yet)."""
        view, playbook = self.projection.view, self.projection.playbook
        self.paused = None
        conflict = self.layout_conflict(recorded)
        if conflict is not None:
            self.paused = conflict
            return False
        if view.live_playbook in (None, playbook.fingerprint):  # None: derived before versions were kept
            return True
        live = view.playbooks().get(view.live_playbook, {}).get("version", 0)
        if self.version > live and self.auto_rebuild and self.parts == 1:  # parts wait for a rebuild run once
            log.info("the read models come from playbook v%s; rebuilding them under v%s", live, self.version)
            keep = 30.0
            self.rebuild(keep_retired=keep)
            # The retired generation goes once readers in other processes have followed.
            self._dropper = threading.Timer(keep + 1, self.drop_retired, [keep])
            self._dropper.daemon = True
            self._dropper.start()
            return True
        self.paused = (
            f"the read models were derived under playbook v{live}; this process has playbook v{self.version} "
            "and does not write them: restart it with the playbook they were rebuilt under"
        )
        return False

    def catch_up(self, timeout: float = 60.0) -> int:
        """Process until the view has reached the end of the log; returns the position. Where
        parts project (this process only reads), wait for them to get there."""
        if self.part is None:
            end = self.app.recorder.max_notification_id() or 0
            if not self.wait(end, timeout):
                raise TimeoutError(f"the {self.parts} projection parts did not reach position {end} in {timeout:.0f} s")
            return self.position
        while self.run_once():
            pass
        return self.position

    def rebuild(self, progress: Progress | None = None, keep_retired: float = 30.0) -> Rebuilt:
        """Derive the read models again from every stored event, beside the live ones, and switch
        to them (see projections/rebuild.py); then catch up."""
        rebuilt = Rebuild(
            self.app, self.projection.view, self.projection.playbook, self.version,
            batch_size=max(self.batch_size, 5000), progress=progress, keep_retired=keep_retired,
            workers=self.rebuild_workers,
        ).run()
        self.projection.forget()
        self.catch_up()
        return rebuilt

    def drop_retired(self, keep_retired: float) -> list[int]:
        """Drop the generations retired more than `keep_retired` seconds ago."""
        return self.projection.view.drop_generations(
            self.app.name, ["retired"], datetime.now(UTC) - timedelta(seconds=keep_retired)
        )

    # -- in the background --------------------------------------------------------

    def start(self, project: bool = True) -> None:
        """Project in the background; or, with project=False (another process projects), only
        follow the live generation of the read models, so this process reads the one that is live."""
        if project and self.part is None:
            raise ValueError(f"JOURNEYS_PROJECTION_PARTS={self.parts}: the view is projected by `journeys project "
                             f"--partition K/{self.parts}` processes; set JOURNEYS_RUN_PROJECTIONS=false here")
        self.projects = project
        target = self._loop if project else self._follow
        self._thread = threading.Thread(target=target, name="projection-runner", daemon=True)
        self._thread.start()

    def _follow(self, every: float = 1.0) -> None:
        while not self._stopping.wait(every):
            try:
                self.projection.view.follow()
            except Exception as error:
                log.warning("could not read which read models are live (%s)", describe(error))

    @property
    def stopped(self) -> str | None:
        """Why the projection this process should keep current is not being kept (None: it is, or
        another process keeps it). A pause for an older playbook is not a stop: reads still serve."""
        if not self.projects:
            return None
        if self._thread is None or not self._thread.is_alive():
            return "the projection is not running"
        if self.last_error is not None and self.last_error != self.paused:
            return "the projection's last batch failed"
        return None

    def poke(self) -> None:
        """New events were written: look now rather than at the next poll."""
        self._wakeup.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._dropper is not None:
            self._dropper.cancel()  # the next rebuild drops what is left
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self, observe_every: float = 1.0) -> None:
        observed, report = 0.0, logged(log, "projection batch")

        def failed(error: BaseException, wait: float) -> None:  # the position did not move
            self.last_error = describe(error)
            report(error, wait)

        while not self._stopping.is_set():
            try:  # any error: a batch is never skipped; back within a second of the database
                for attempt in until_stopped(Exception, self._stopping, self.poll_interval, 1.0, failed):
                    with attempt:
                        processed = self.run_once()
                        if time.monotonic() - observed >= observe_every:  # two queries: not at every idle poll
                            self.observe()
                            observed = time.monotonic()
            except Exception:
                return  # told to stop while it failed
            self.last_error = self.paused
            if not processed:
                self._wakeup.wait(self.poll_interval)
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
