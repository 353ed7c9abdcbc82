"""Which campaigns touched each instance, and what a batch does to their stay counters.

A funnel filtered by a campaign counts the stays of the instances that campaign touched,
whenever it did: a touch today puts an instance's whole past in the campaign's funnel. So
the projection keeps, per tag ('campaign:<name>'), the stay counters of its instances
(schema.TAG_STAY_*), and which tags each instance has (schema.INSTANCE_TAGS). In a batch's
transaction:

- an instance that keeps a tag adds the batch's deltas of its stays to that tag;
- an instance a tag touches for the first time adds all its stays (as the batch leaves them);
- an instance that loses a tag (an unlink takes the record whose touch it was) takes all its
  stays as they were away from it; a customer that is no more loses all its tags.

`recount_stays` counts all of it again from the touchpoints and the stays; a test compares.

Channels are not kept (schema.TAG_KINDS): nearly every instance has one, so their counters would repeat
the stay counters once per channel an instance used, and the write path measured 17% slower on
PostgreSQL with one channel per customer (bench/batch_throughput.py against the commit before).
A channel filter reads the stays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from projections.storage.rows import by_scope, chunks
from projections.storage.schema import INSTANCE_TAGS, SUBJECT_COLUMN, TAG_KINDS, TOUCHPOINTS
from projections.storage.stays import Deltas, StayCounters

Key = tuple[str, str]  # (scope, subject)
_AT = {name: TOUCHPOINTS.names.index(name) for name in (*TAG_KINDS, *SUBJECT_COLUMN.values())}


def tags_of_row(row: Sequence[Any]) -> set[str]:
    """The tags a touchpoint (a row as written, in TOUCHPOINTS' column order) gives its instances."""
    return tags_of({kind: row[_AT[kind]] for kind in TAG_KINDS})


def tags_of(values: Mapping[str, Any]) -> set[str]:
    """The tags a touchpoint's values (by column name) give its instances."""
    return {f"{kind}:{values[kind]}" for kind in TAG_KINDS if values[kind] is not None}


class TagCounters(StayCounters):
    def tagged(self, c: Any, per: dict[Key, Deltas], touchpoints: Sequence[Sequence[Any]], relinked: bool,
               fresh: set[Key]) -> dict[str, Deltas]:
        """Each tag's deltas from a batch: `per` holds each changed instance's stay deltas (all
        writes done), `touchpoints` the rows the batch inserted, `fresh` the instances it created;
        `relinked`: a link or an unlink moved touchpoints between customers. Records the tags."""
        if not per:
            return {}
        before = self._tags_of(c, per)
        after = {key: set(tags) for key, tags in before.items()}
        if relinked:  # the customers' touchpoints moved: their tags are what their touchpoints say now
            after.update(self._tags_from_touchpoints(c, per))
        else:
            for row in touchpoints:
                tags = tags_of_row(row)
                for scope, column in SUBJECT_COLUMN.items():
                    key = (scope.value, row[_AT[column]])
                    if key in after:
                        after[key] |= tags
        moved = [key for key in per if before[key] != after[key]]
        whole = self.instance_stays(c, [key for key in moved if key not in fresh])
        whole.update({key: per[key] for key in moved if key in fresh})  # all a new instance's stays are the batch's
        deltas: dict[str, Deltas] = {}
        for key, stays in per.items():
            for tag in before[key] & after[key]:
                deltas.setdefault(tag, Deltas()).add(stays)
            for tag in after[key] - before[key]:
                deltas.setdefault(tag, Deltas()).add(whole[key])
            for tag in before[key] - after[key]:  # its stays as they were: now less the batch's deltas
                lost = deltas.setdefault(tag, Deltas())
                lost.add(stays)
                lost.add(whole[key], -1)
        gained = [[*key, tag] for key in moved for tag in sorted(after[key] - before[key])]
        self.insert(c, INSTANCE_TAGS, gained, "ON CONFLICT (scope, subject, tag) DO NOTHING")
        for key in moved:
            for tag in sorted(before[key] - after[key]):
                self.run(c, f"DELETE FROM {self.table('instance_tags')} WHERE scope = ? AND subject = ? AND tag = ?",
                         [*key, tag])
        return deltas

    def _tags_of(self, c: Any, keys: Iterable[Key]) -> dict[Key, set[str]]:
        keys = list(keys)
        found: dict[Key, set[str]] = {key: set() for key in keys}
        for scope, chunk in by_scope(keys):
            for r in self.rows_of(self.table("instance_tags"), "subject", chunk, "x.scope = ?", [scope], "x.subject, x.tag", c):
                found[(scope, r["subject"])].add(r["tag"])
        return found

    def _tags_from_touchpoints(self, c: Any, keys: Iterable[Key]) -> dict[Key, set[str]]:
        """The tags the stored touchpoints give these customers (an identity link's: customers only)."""
        customers = sorted(subject for scope, subject in keys if scope == "customer")
        found: dict[Key, set[str]] = {("customer", s): set() for s in customers}
        for chunk in chunks(customers):
            c.execute(self.dialect.sql(f"SELECT DISTINCT customer, {', '.join(TAG_KINDS)} FROM {self.table('touchpoints')} "
                                       f"WHERE customer IN ({self.dialect.marks(len(chunk))})"), chunk)
            for r in c.fetchall():
                found[("customer", r["customer"])] |= {f"{kind}:{r[kind]}" for kind in TAG_KINDS if r[kind] is not None}
        return found
