"""The read models' tables, each declared once: their DDL and the column types of bulk inserts come from here.

Tables named in GENERATIONAL belong to one generation of the read models (a
rebuild derives the next generation beside the live one, see generations.py);
the others (the outbox, the revisions, the registries, spend) are kept across
generations. Column types are written as both dialects read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from journeys.playbook import Scope


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, type)
    key: str = ""  # the primary key's columns; "" for a table numbered by a serial `seq`
    constraints: str = ""  # more, after the columns

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def typed(self, names: list[str]) -> list[tuple[str, str]]:
        """(name, type) of these columns, in this order (for a dialect's bulk insert)."""
        kinds = dict(self.columns)
        return [(name, kinds[name]) for name in names]

    def ddl(self, qualified: str, serial_key: str) -> str:
        columns = ", ".join(f"{name} {kind}" for name, kind in self.columns)
        if self.key:
            return f"CREATE TABLE IF NOT EXISTS {qualified} ({columns}, PRIMARY KEY ({self.key}){self.constraints})"
        return f"CREATE TABLE IF NOT EXISTS {qualified} (seq {serial_key}, {columns}{self.constraints})"


def _text(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, "text") for name in names)


# -- kept across generations ------------------------------------------------------------------
STAGE_CHANGES = Table("stage_changes", (  # the outbox the stage-change publisher reads
    *_text("scope", "subject", "kind", "journey", "from_stage", "to_stage", "skipped"), ("is_restart", "integer"),
    *_text("occurred_at", "touchpoint_id", "touchpoint_type", "awareness_stage", "defects"),
))
REVISIONS = Table("revisions", _text(
    "scope", "subject", "recorded_at", "kind", "reason", "cause_touchpoint_id", "cause_record_id", "playbook",
    "before", "after", "removed", "added",
))
PLAYBOOKS = Table("playbooks", (("fingerprint", "text"), ("version", "integer"), *_text("name", "registered_at", "body")),
                  key="fingerprint", constraints=", UNIQUE (version)")
GENERATIONS = Table("generations", (("generation", "integer"), *_text("playbook", "state", "started_at", "live_at",
                                                                        "retired_at")), key="generation")
# What marketing spent on each campaign in a period: input, not derived.
SPEND = Table("spend", _text("campaign", "period_start", "period_end", "amount", "currency", "recorded_at", "recorded_by"))
SCHEMA_VERSIONS = Table("schema_versions", (("version", "integer"), *_text("description", "applied_at")), key="version")
KEPT = (STAGE_CHANGES, REVISIONS, PLAYBOOKS, GENERATIONS, SPEND, SCHEMA_VERSIONS)

# -- one generation's read models -------------------------------------------------------------
CUSTOMERS = Table("customers", _text("record_id", "sealed_key", "erased_at"), key="record_id")
SUBJECTS = Table("subjects", (*_text("scope", "subject", "first_seen", "last_occurred_at", "last_touchpoint_id"),
                              ("touchpoint_count", "integer")), key="scope, subject")
POSITIONS = Table("positions", _text(
    "scope", "subject", "journey", "stage", "since", "cause_id", "cause_type", "met", "defects", "playbook",
), key="journey, subject")
# Personal data only sealed: `sealed` holds the touchpoint's customer key, actor and properties.
# `customer` is the record's, or, when it is linked to others (identity stitching), the root's.
TOUCHPOINTS = Table("touchpoints", _text(
    "record_id", "touchpoint_id", "type", "channel", "occurred_at", "recorded_at", "source", "campaign",
    "deal_id", "account_id", "case_id", "buying_role", "criteria", "sealed", "customer",
), key="record_id, touchpoint_id")
IDENTITIES = Table("identities", _text("record_id", "linked_to", "root"), key="record_id")
TRANSITIONS = Table("transitions", (
    *_text("scope", "subject", "journey", "occurred_at", "touchpoint_id", "from_stage", "to_stage", "skipped"),
    ("is_restart", "integer"), *_text("touchpoint_type", "defects", "record_id", "playbook", "from_since"),
    ("stay_seconds", "double precision"),
), key="scope, subject, occurred_at, touchpoint_id, journey")
# How many instances of a scope are in each combination of stages (and process defects) of
# its journeys: stage counts and the alignment matrix without a scan.
COUNTS = Table("counts", (("scope", "text"), ("combination", "text"), ("instances", "bigint")), key="scope, combination")
# Stays by the day they began (see stays.py): how they ended, how long they lasted (log-spaced
# buckets), and the open ones. '' stands for no stage (a key column cannot be NULL).
STAY_ENDS = Table("stay_ends", (
    ("journey", "text"), ("day", "text"), ("from_stage", "text"), ("to_stage", "text"), ("is_restart", "integer"),
    ("skipped", "text"), ("n", "bigint"),
), key="journey, day, from_stage, to_stage, is_restart, skipped")
STAY_TIMES = Table("stay_times", (
    ("journey", "text"), ("day", "text"), ("from_stage", "text"), ("is_restart", "integer"), ("bucket", "integer"),
    ("n", "bigint"),
), key="journey, day, from_stage, is_restart, bucket")
STAYS_OPEN = Table("stays_open", (("journey", "text"), ("day", "text"), ("stage", "text"), ("n", "bigint")),
                   key="journey, day, stage")
# The same counters for the instances a campaign touched (tag 'campaign:<name>'): a funnel
# filtered by one reads days, not stays. `instance_tags` says which tags each instance has.
INSTANCE_TAGS = Table("instance_tags", _text("scope", "subject", "tag"), key="scope, subject, tag")
TAG_KINDS = ("campaign",)  # the touchpoint columns whose values are tags (why not channels: storage/tags.py)
TAG_STAY_ENDS = Table("tag_stay_ends", (("tag", "text"), *STAY_ENDS.columns), key=f"tag, {STAY_ENDS.key}")
TAG_STAY_TIMES = Table("tag_stay_times", (("tag", "text"), *STAY_TIMES.columns), key=f"tag, {STAY_TIMES.key}")
TAG_STAYS_OPEN = Table("tag_stays_open", (("tag", "text"), *STAYS_OPEN.columns), key=f"tag, {STAYS_OPEN.key}")
STAY_TABLES = ((STAY_ENDS, TAG_STAY_ENDS), (STAY_TIMES, TAG_STAY_TIMES), (STAYS_OPEN, TAG_STAYS_OPEN))
# Attribution and leads by the day (see credits.py): each campaign's and channel's credit for the
# advances into a stage, per model, in billionths of an advance; the advances, and those no
# campaign touched; the lead-funnel entries by the campaign and channel of the touchpoint that
# made them ('' for none), with those that converted and became customers since.
CREDIT_DAYS = Table("credit_days", (*_text("journey", "stage", "day", "model", "kind", "name"), ("credit", "bigint")),
                    key="journey, stage, model, day, kind, name")
ADVANCE_DAYS = Table("advance_days", (*_text("journey", "stage", "day"), ("advances", "bigint"),
                                      ("unattributed", "bigint")), key="journey, stage, day")
LEAD_DAYS = Table("lead_days", (*_text("day", "campaign", "channel"), ("leads", "bigint"), ("converted", "bigint"),
                                ("customers", "bigint")), key="day, campaign, channel")
CREDIT_TABLES = (CREDIT_DAYS, ADVANCE_DAYS, LEAD_DAYS)
GENERATIONAL_TABLES = (CUSTOMERS, SUBJECTS, POSITIONS, TOUCHPOINTS, IDENTITIES, TRANSITIONS, COUNTS,
                       STAY_ENDS, STAY_TIMES, STAYS_OPEN, INSTANCE_TAGS, TAG_STAY_ENDS, TAG_STAY_TIMES, TAG_STAYS_OPEN,
                       *CREDIT_TABLES)
GENERATIONAL = tuple(t.name for t in GENERATIONAL_TABLES)

# Which touchpoint column names the instance of each scope.
SUBJECT_COLUMN = {Scope.customer: "customer", Scope.account: "account_id", Scope.deal: "deal_id", Scope.case: "case_id"}
# The columns that name an instance other than a customer: most touchpoints leave them NULL.
KEY_COLUMNS = tuple(column for scope, column in SUBJECT_COLUMN.items() if scope is not Scope.customer)


def keyed_index(column: str) -> str:
    """The index of the touchpoints that name an instance in a key column (step 11's name: the
    indexes before it, `touchpoints_<column>`, held every touchpoint)."""
    return f"touchpoints_named_{column}"

Name = Callable[[str], str]  # a table's or index's name in one generation


def generation_ddl(table: Name, index: Name, serial_key: str) -> list[str]:
    """The read models of one generation: tables and the indexes the projection reads."""
    statements = [t.ddl(table(t.name), serial_key) for t in GENERATIONAL_TABLES]
    statements += [
        f"CREATE INDEX IF NOT EXISTS {index('identities_root')} ON {table('identities')} (root)",
        f"CREATE INDEX IF NOT EXISTS {index('identities_linked')} ON {table('identities')} (linked_to)",
        f"CREATE INDEX IF NOT EXISTS {index('positions_stage')} ON {table('positions')} (journey, stage, subject)",
    ]
    statements += [  # partial: most touchpoints name no deal, account or case, and cost these indexes nothing
        f"CREATE INDEX IF NOT EXISTS {index(keyed_index(column))} ON {table('touchpoints')} ({column}, occurred_at) "
        f"WHERE {column} IS NOT NULL"
        for column in KEY_COLUMNS
    ]
    return statements


def analytics_ddl(table: Name, index: Name) -> list[str]:
    """Indexes the marketing analytics read: stays by the stage left and when it was entered,
    advances by the stage entered and when, current stays by when they began; and a
    customer's touchpoints (of all its linked records) in occurred order."""
    return [
        f"CREATE INDEX IF NOT EXISTS {index('touchpoints_customer')} ON {table('touchpoints')} "
        "(customer, occurred_at, touchpoint_id)",
        # Covering: a funnel counts outcomes and sorts durations from the index alone.
        f"CREATE INDEX IF NOT EXISTS {index('transitions_stays')} ON {table('transitions')} "
        "(journey, from_stage, from_since, stay_seconds, is_restart, to_stage, skipped)",
        f"CREATE INDEX IF NOT EXISTS {index('transitions_entries')} ON {table('transitions')} "
        "(journey, to_stage, occurred_at, from_stage, is_restart, skipped)",
        f"CREATE INDEX IF NOT EXISTS {index('positions_since')} ON {table('positions')} (journey, stage, since)",
    ]


def history_ddl(table: Name, index: Name) -> list[str]:
    """A customer record's touchpoints in occurred order: its history's pages are ranges of this."""
    return [f"CREATE INDEX IF NOT EXISTS {index('touchpoints_record')} ON {table('touchpoints')} "
            "(record_id, occurred_at, touchpoint_id)"]


def kept_ddl(table: Name, serial_key: str) -> list[str]:
    """The tables kept across generations, with their indexes."""
    return [t.ddl(table(t.name), serial_key) for t in KEPT] + [
        f"CREATE INDEX IF NOT EXISTS jv_revisions_subject ON {table('revisions')} (scope, subject, seq)",
        f"CREATE INDEX IF NOT EXISTS jv_spend_campaign ON {table('spend')} (campaign, period_start)",
    ]
