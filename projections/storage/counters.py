"""How many instances of a scope are in each combination of its journeys' stages (and process
defects): kept by the projection's writes, so stage counts and the alignment matrix need no scan."""

from __future__ import annotations

import json
from typing import Any

from journeys.playbook import Scope
from projections.storage.base import ReadModelStore
from projections.storage.rows import combination
from projections.storage.schema import COUNTS


class Counters(ReadModelStore):
    def count_all(self) -> None:
        """Count again, from the positions, the instances in each combination of stages (a store
        from before the counters, or rows written around the projection, as benchmarks do)."""
        by_subject: dict[tuple[str, str], dict[str, list[Any]]] = {}
        for row in self.query(f"SELECT scope, subject, journey, stage, defects FROM {self.table('positions')}"):
            by_subject.setdefault((row["scope"], row["subject"]), {})[row["journey"]] = [row["stage"], bool(row["defects"])]
        totals: dict[tuple[str, str], int] = {}
        for (scope, _subject), found in by_subject.items():
            key = (scope, combination(self.playbook, Scope(scope), found))
            totals[key] = totals.get(key, 0) + 1
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"DELETE FROM {self.table('counts')}")
            self.add_counts(c, totals)

    def add_counts(self, c: Any, deltas: dict[tuple[str, str], int]) -> None:
        """Add to the instances counted in each combination of stages."""
        rows = [[scope, key, n] for (scope, key), n in sorted(deltas.items()) if n]
        self.accumulate(c, COUNTS, rows, "instances")

    def counts(self) -> list[dict[str, Any]]:
        """Every combination of stages with instances in it: scope, {journey: [stage, defects]}, instances."""
        rows = self.query(f"SELECT scope, combination, instances FROM {self.table('counts')} WHERE instances > 0")
        return [{"scope": r["scope"], "stages": self._stages_of(r["combination"]), "instances": r["instances"]} for r in rows]

    def _stages_of(self, combination: str) -> dict[str, list[Any]]:
        """A combination's key read back, parsed once per process: there are as many combinations
        as the journeys' stages allow (tens of thousands with four journeys), read at every count.
        Read-only: the same dict is handed to every caller."""
        parsed: dict[str, dict[str, list[Any]]] = self.__dict__.setdefault("_combinations", {})
        found = parsed.get(combination)
        if found is None:
            if len(parsed) >= 500_000:  # a bound, far above what a playbook's stages allow
                parsed.clear()
            found = parsed[combination] = json.loads(combination)
        return found

    def summary(self) -> dict[str, dict[str | None, int]]:
        """How many instances are in each stage of each journey (None: not started)."""
        counts: dict[str, dict[str | None, int]] = {j: {} for j in self.playbook.journeys}
        for row in self.counts():  # the counters: one row per combination, however many instances
            for journey, (stage, _) in row["stages"].items():
                found = counts.setdefault(journey, {})
                found[stage] = found.get(stage, 0) + row["instances"]
        return counts
