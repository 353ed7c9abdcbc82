"""The playbook: journeys (stage models, each kept per customer, account, deal or case), the
evidence for each stage, the qualification criteria and the message catalogue."""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from journeys.rules import KEYWORDS, Consent, Message, Rule, TypeName

__all__ = ["Journey", "Message", "Playbook", "PlaybookError", "Rule", "Scope", "StageModel", "load_playbook"]

RESTART = "restart"


class Journey(str, Enum):
    """The three journeys every playbook keeps per customer (a playbook may add any others)."""

    buyer = "buyer"
    seller = "seller"
    awareness = "awareness"


class Scope(str, Enum):
    """What a journey is kept for: the touchpoint key that names its instance."""

    customer = "customer"
    account = "account"
    deal = "deal"
    case = "case"

    @property
    def key(self) -> str:
        return f"{self.value}_id"


JourneyName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=50)]
CRITERIA = ["vision", "budget", "authority", "need", "timeframe"]  # VBANT (seeds 002, 004)
BUYING_ROLES = ["user", "influencer", "buyer", "decider", "gatekeeper"]  # the buying centre (seed 003)


class StageModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    stages: list[str] = Field(min_length=1)
    initial: str | None = None
    scope: Scope = Scope.customer
    # Criteria that must all be confirmed before a stage counts as reached (e.g. Qualifying).
    requires: dict[str, list[str]] = Field(default_factory=dict)
    # Criteria expected before a stage is passed: the stage is reached on evidence alone, but
    # moving beyond it before they are all confirmed is a process defect (presenting to a
    # customer not yet qualified). Allowed, and shown.
    expects: dict[str, list[str]] = Field(default_factory=dict)
    # Take the evidence of another journey with the same stages (e.g. the seller's pipeline
    # kept per deal moves on the seller's evidence), instead of repeating it.
    evidence_from: str | None = None
    # Exit stages (a former customer): reached from any stage without skipping the ones between,
    # and left by evidence of an earlier stage, which starts a new cycle there (a win-back).
    exits: list[str] = Field(default_factory=list)
    # Every stage is required (a complaint's receipt, processing, response, control,
    # evaluation): a skipped stage is a process defect, shown with the others.
    every_stage_required: bool = False

    @model_validator(mode="after")
    def _check(self) -> StageModel:
        if len(set(self.stages)) != len(self.stages):
            raise ValueError("stages must be unique")
        if RESTART in self.stages:
            raise ValueError(f"{RESTART!r} is reserved and cannot be a stage")
        if self.initial is not None and self.initial not in self.stages:
            raise ValueError(f"initial stage {self.initial!r} is not one of {self.stages}")
        for key, rules in (("requires", self.requires), ("expects", self.expects)):
            for stage in rules:
                if stage not in self.stages:
                    raise ValueError(f"{key}: {stage!r} is not one of {self.stages}")
        for stage in self.exits:
            if stage not in self.stages:
                raise ValueError(f"exits: {stage!r} is not one of {self.stages}")
        if self.exits and self.stages[-len(self.exits):] != self.exits:
            raise ValueError(f"exits: {self.exits} must be the last stages, in order")
        if self.exits and (self.initial in self.exits or self.requires or self.expects):
            raise ValueError("exits: a journey with exit stages has no criteria and does not start at an exit")
        both = set(self.requires) & set(self.expects)
        if both:
            raise ValueError(f"expects: {sorted(both)} are already in requires")
        return self

    @cached_property  # a plain attribute once computed: the fold asks it per touchpoint and journey
    def qualification(self) -> dict[str, list[str]]:
        """The criteria each stage needs, required or expected (empty for most journeys)."""
        return {**self.expects, **self.requires}

    def index(self, stage: str | None) -> int:
        """Position of a stage; -1 for 'not started'."""
        return -1 if stage is None else self.stage_indexes[stage]

    @cached_property
    def stage_indexes(self) -> dict[str, int]:
        """Each stage's position (asked per touchpoint and journey by the fold)."""
        return {stage: i for i, stage in enumerate(self.stages)}

    @property
    def last(self) -> str:
        """The last stage that is not an exit: where the journey is complete (Purchase, Evaluation)."""
        return [s for s in self.stages if s not in self.exits][-1]

    def is_terminal(self, stage: str | None) -> bool:
        """Where the journey ends (its last stage, or an exit): a stay there is an outcome, not a wait."""
        return stage is not None and (stage == self.last or stage in self.exits)




class SegmentNames(BaseModel):
    """How the Segment-compatible intake names touchpoint types (see journeys/intake/segment.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: dict[str, TypeName] = Field(
        default_factory=dict, description="track calls' event names; others become the name in snake_case"
    )
    pages: dict[str, TypeName] = Field(default_factory=dict, description="page and screen calls by name")
    page: TypeName = Field("website_visited", description="the type of any other page or screen call")


class Leads(BaseModel):
    """Which journey is the lead funnel (seed 001: identify, qualify, nurture, convert) and which
    one a lead enters on becoming a customer: leads, conversion and cost per lead count these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    journey: JourneyName = "lead_funnel"
    customers: JourneyName = "relationship"


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    journeys: dict[JourneyName, StageModel]
    evidence: dict[str, dict[str, str]]
    # The message rules in order (journeys/rules.py); `messages:` per awareness stage is the
    # short form of one rule per stage, kept for playbooks written before rules.
    rules: list[Rule] = Field(default_factory=list)
    consent: Consent = Field(default_factory=Consent)
    criteria: list[str] = Field(default_factory=lambda: list(CRITERIA))
    buying_roles: list[str] = Field(default_factory=lambda: list(BUYING_ROLES))
    # Buying-centre roles an account or a deal should have engaged, and from which stage of its
    # journeys a missing one is warned about (a journey not named: from its second-to-last stage).
    expected_roles: list[str] = Field(default_factory=lambda: ["decider", "buyer"])
    roles_expected_from: dict[JourneyName, str] = Field(default_factory=dict)
    leads: Leads = Field(default_factory=Leads)  # a playbook without its journeys counts no leads
    segment: SegmentNames = Field(default_factory=SegmentNames)  # intake naming: derives nothing

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("messages"), dict):
            data = dict(data)
            rules = [
                {"name": f"awareness: {stage}", "when": {Journey.awareness.value: stage}, "messages": messages}
                for stage, messages in data.pop("messages").items()
            ]
            data["rules"] = [*(data.get("rules") or []), *rules]
        return data

    @model_validator(mode="after")
    def _check(self) -> Playbook:
        missing = [j.value for j in Journey if j.value not in self.journeys]
        if missing:
            raise ValueError(f"journeys: missing {missing}")
        wrong_scope = [j.value for j in Journey if self.journeys[j.value].scope is not Scope.customer]
        if wrong_scope:
            raise ValueError(f"journeys: {wrong_scope} are kept per customer (scope: customer)")
        for name, model in self.journeys.items():
            source = self.journeys.get(model.evidence_from or name)
            if source is None or source.evidence_from is not None:
                raise ValueError(
                    f"journeys.{name}.evidence_from: {model.evidence_from!r} is not a journey with evidence of its own"
                )
            if source.stages != model.stages:
                raise ValueError(f"journeys.{name}.evidence_from: {model.evidence_from!r} has other stages")
            for key, rules in (("requires", model.requires), ("expects", model.expects)):
                for stage, needed in rules.items():
                    unknown = [c for c in needed if c not in self.criteria]
                    if unknown:
                        raise ValueError(f"journeys.{name}.{key}.{stage}: {unknown} are not criteria {self.criteria}")
        for touchpoint_type, stages in self.evidence.items():
            for journey, stage in stages.items():
                evidenced = self.journeys.get(journey)
                if evidenced is None:
                    raise ValueError(
                        f"evidence.{touchpoint_type}.{journey}: no journey is named {journey!r} "
                        f"(journeys: {list(self.journeys)})"
                    )
                if stage != RESTART and stage not in evidenced.stages:
                    raise ValueError(
                        f"evidence.{touchpoint_type}.{journey}: {stage!r} is not a "
                        f"stage of the {journey} journey {evidenced.stages} nor {RESTART!r}"
                    )
        self._check_rules()
        for key in ("journey", "customers"):
            name = getattr(self.leads, key)
            if name in self.journeys and self.journeys[name].scope is not Scope.customer:
                raise ValueError(f"leads.{key}: {name!r} is not kept per customer")
        for role in self.expected_roles:
            if role not in self.buying_roles:
                raise ValueError(f"expected_roles: {role!r} is not one of the buying roles {self.buying_roles}")
        for journey, stage in self.roles_expected_from.items():
            kept = self.journeys.get(journey)
            if kept is None or kept.scope not in (Scope.account, Scope.deal):
                raise ValueError(f"roles_expected_from.{journey}: not a journey kept per account or deal")
            if stage not in kept.stages:
                raise ValueError(f"roles_expected_from.{journey}: {stage!r} is not one of {kept.stages}")
        return self

    def _check_rules(self) -> None:
        ids: set[str] = set()
        names: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in names:
                raise ValueError(f"rules.{i}.name: {rule.name!r} is used twice")
            names.add(rule.name)
            for journey, values in rule.when.items():
                model = self.journeys.get(journey)
                if model is None:
                    raise ValueError(f"rules.{i}.when.{journey}: no journey is named {journey!r}")
                wrong = [v for v in values if v not in model.stages and v not in KEYWORDS]
                if wrong:
                    raise ValueError(
                        f"rules.{i}.when.{journey}: {wrong} are not stages {model.stages} nor {list(KEYWORDS)}"
                    )
            for message in rule.messages:
                if message.id in ids:
                    raise ValueError(f"rules.{i}.messages: message id {message.id!r} is used twice")
                ids.add(message.id)

    def stage_for(self, touchpoint_type: str, journey: str) -> str | None:
        """The stage (or 'restart') a touchpoint type is evidence of in a journey."""
        return self.evidence_of(touchpoint_type).get(journey)

    def evidence_of(self, touchpoint_type: str) -> dict[str, str]:
        """journey -> the stage (or 'restart') a touchpoint type is evidence of there; a journey
        that takes another's evidence (`evidence_from`) included. The fold asks it per touchpoint."""
        return self._evidence_by_journey.get(touchpoint_type, {})

    @cached_property
    def _evidence_by_journey(self) -> dict[str, dict[str, str]]:
        return {
            touchpoint_type: {journey: stage for journey, model in self.journeys.items()
                              if (stage := by_source.get(model.evidence_from or journey)) is not None}
            for touchpoint_type, by_source in self.evidence.items()
        }

    def journeys_of(self, scope: Scope) -> list[str]:
        """The journeys kept per instance of a scope, in the playbook's order."""
        return self.by_scope[scope]

    @cached_property  # computed once: a plain attribute read on the derivation's hot path
    def by_scope(self) -> dict[Scope, list[str]]:
        return {s: [n for n, m in self.journeys.items() if m.scope is s] for s in Scope}

    def canonical(self) -> str:
        """The playbook's content as canonical JSON: the same for the same meaning, however the
        YAML was laid out or commented. The intake's naming is left out: it derives no stage."""
        return json.dumps(self.model_dump(mode="json", exclude={"segment"}), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the content (16 hex digits): which playbook derived a stage."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:16]

    @property
    def scopes(self) -> list[Scope]:
        """The scopes some journey is kept for (customer always)."""
        return [s for s in Scope if self.journeys_of(s)]

    def knows(self, touchpoint_type: str) -> bool:
        return touchpoint_type in self.evidence

    def roles_warned_from(self, journey: str) -> int:
        """The index of the stage of an account or deal journey from which a missing expected
        buying-centre role is warned about."""
        model = self.journeys[journey]
        stage = self.roles_expected_from.get(journey)
        return model.index(stage) if stage is not None else max(len(model.stages) - 2, 0)


class PlaybookError(Exception):
    """A playbook file that cannot be used; says which file, where and what."""


DEFAULT_PLAYBOOK = "default"


def load_playbook(path: str | Path | None = None) -> Playbook:
    """Load and validate a playbook file; a bundled name ('default', 'seven-steps') works too."""
    source, text = _read(path or DEFAULT_PLAYBOOK)
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PlaybookError(f"{source}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise PlaybookError(f"{source}: expected a mapping at the top level")
    try:
        return Playbook.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            loc = [str(part) for part in item["loc"]]
            message = item["msg"].removeprefix("Value error, ")
            if not loc and ": " in message:  # a cross-check: its message starts with the key
                path, message = message.split(": ", 1)
                loc = path.split(".")
            line = _line_of(node, loc)
            where = f"line {line}, " if line else ""
            key = ".".join(loc) or "(top level)"
            problems.append(f"{source}: {where}key {key}: {message}")
        raise PlaybookError("invalid playbook\n" + "\n".join(problems)) from None


def _read(path: str | Path) -> tuple[str, str]:
    bundled = resources.files("journeys") / "playbooks" / f"{path}.yaml"
    if isinstance(path, str) and "/" not in path and bundled.is_file():
        return str(bundled), bundled.read_text()
    file = Path(path)
    try:
        return str(file), file.read_text()
    except OSError as error:
        raise PlaybookError(f"{file}: cannot read playbook: {error.strerror}") from error


def _line_of(node: Any, loc: list[str]) -> int | None:
    """1-based line of the deepest YAML node found along a validation error's path."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if str(k.value) == part), None)
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
        else:
            break
        line = node.start_mark.line + 1
    return line
