"""The playbook's message rules and consent types (the models; `journeys.recommend` applies them).

A rule says when it applies (a stage, or `open`, `started`, `not started`, per journey of the
customer or of the deals, cases and account the customer is in), whether it is marketing
(held back by an unsubscription) or service (always allowed), on which channel and topic, and
its messages in the order to send them. The first eligible rule wins (Pega's and Salesforce's
"next best action": eligibility, then arbitration by order).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from journeys.touchpoint import Channel

OPEN = "open"  # started and not complete: not at its last stage, nor at an exit stage
STARTED = "started"
NOT_STARTED = "not started"
KEYWORDS = (OPEN, STARTED, NOT_STARTED)

TypeName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$", max_length=100)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    title: str
    summary: str


class Kind(str, Enum):
    marketing = "marketing"  # needs consent on its channel and topic
    service = "service"  # a complaint's follow-up, onboarding help: sent whatever the consent


def _listed(value: object) -> object:
    return [value] if isinstance(value, str) else value


Values = Annotated[list[str], BeforeValidator(_listed), Field(min_length=1)]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    when: dict[str, Values] = Field(
        default_factory=dict,
        description="journey -> stage(s), or 'open', 'started', 'not started'; all must hold (none: always)",
    )
    kind: Kind = Kind.marketing
    channel: Channel = Channel.email
    topic: str | None = Field(None, description="the subscription topic its messages belong to (none: the channel's)")
    messages: list[Message] = Field(min_length=1)


class Consent(BaseModel):
    """Which touchpoint types withdraw and give consent to marketing.

    An (un)subscription reaches the touchpoint's channel, narrowed to a topic when it carries a
    campaign (the list unsubscribed from); a type in `unsubscribe_everywhere` reaches every
    channel (an objection to direct marketing). The latest that reaches a rule's channel and
    topic decides; before any, marketing is allowed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    unsubscribe: list[TypeName] = Field(default_factory=lambda: ["unsubscribed"])
    unsubscribe_everywhere: list[TypeName] = Field(default_factory=lambda: ["marketing_objected"])
    subscribe: list[TypeName] = Field(default_factory=lambda: ["subscribed"])

    @property
    def types(self) -> set[str]:
        return {*self.unsubscribe, *self.unsubscribe_everywhere, *self.subscribe}
