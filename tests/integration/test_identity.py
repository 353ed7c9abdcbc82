"""Identity stitching: a visitor's record linked to a known customer's gives one customer,
derived over the union of both histories, in any arrival order (the link too), and an
unlink gives two again, as if the link never happened. On SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journeys.customer import IdentityLink, Outcome
from journeys.playbook import Scope
from journeys.settings import Settings
from journeys.stages import derive
from journeys.touchpoint import Touchpoint
from projections.system import System
from tests.factories import assert_counters_equal_a_recount, tp
from tests.integration.test_projection import TYPES, touched_by

LINK = IdentityLink("identify-1", "visitor", "buyer", "identify")


def customer_of(system: System, key: str) -> str:
    record = str(system.keyring.find(key))
    return system.view.roots([record])[record]


def state(system: System, key: str):
    """What the view holds for the customer a key answers for: stages and stage history."""
    subject = customer_of(system, key)
    found = system.view.customer(subject)
    stages = found["stages"]
    transitions = [(t["journey"], t["to_stage"], t["touchpoint_id"]) for t in system.view.transitions_of(subject)]
    return stages.positions, stages.met, stages.defects, transitions, found["touchpoint_count"]


def derived(system: System, touchpoints: list[Touchpoint]):
    d = derive(touchpoints, system.playbook)
    return (d.stages.positions, d.stages.met, d.stages.defects,
            [(t.journey, t.to_stage, t.touchpoint_id) for t in d.transitions], len(touchpoints))


def counted(system: System) -> int:
    """Customers in the stage counters; must equal the customers the view holds."""
    counters = sum(c["instances"] for c in system.view.counts() if c["scope"] == Scope.customer.value)
    subjects = system.view.query(f"SELECT COUNT(*) AS n FROM {system.view.table('subjects')} WHERE scope = 'customer'")
    assert counters == subjects[0]["n"]
    return counters


@contextmanager
def store(tmp_path_factory) -> Iterator[System]:
    path = tmp_path_factory.mktemp("identity")
    built = System.build(Settings(database_url=f"sqlite:///{path}/j.db", key_file=str(path / "k")))
    try:
        yield built
    finally:
        built.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(st.tuples(st.sampled_from(["visitor", "buyer", "other"]), st.sampled_from(TYPES), st.integers(0, 6)),
                  min_size=1, max_size=40),
    seed=st.integers(0, 2**32),
)
def test_a_link_in_any_arrival_order_gives_the_union_and_an_unlink_undoes_it(tmp_path_factory, data, seed):
    rng = random.Random(seed)
    touchpoints = [tp(f"t{n:02d}", type_, day / 2, customer=who, **touched_by(rng)) for n, (who, type_, day) in enumerate(data)]
    arrival: list = [*touchpoints, LINK, *rng.sample(touchpoints, min(3, len(touchpoints)))]
    rng.shuffle(arrival)
    with store(tmp_path_factory) as system:
        while arrival:  # random batches; a link goes with the touchpoints of its batch
            size = rng.randint(1, 5)
            batch, arrival = arrival[:size], arrival[size:]
            system.record([t for t in batch if isinstance(t, Touchpoint)], links=[x for x in batch if x is LINK])
            if rng.random() < 0.5:
                system.runner.run_once()
        system.runner.catch_up()
        mine = {who: [t for t in touchpoints if t.customer_id == who] for who in ("visitor", "buyer", "other")}
        joined = mine["visitor"] + mine["buyer"]
        if joined:
            assert state(system, "visitor") == state(system, "buyer") == derived(system, joined)
        if mine["other"]:
            assert state(system, "other") == derived(system, mine["other"])
        assert counted(system) == bool(joined) + bool(mine["other"])
        assert_counters_equal_a_recount(system.view)  # the merged customer's stays counted out

        late = tp("late", rng.choice(TYPES), rng.randint(0, 6) / 2, customer="visitor")
        assert system.app.unlink("visitor", "test") is not None
        system.record([late])  # after the unlink: the visitor's alone
        system.runner.catch_up()
        mine["visitor"].append(late)
        for who in ("visitor", "buyer"):
            if mine[who]:
                assert state(system, who) == derived(system, mine[who])
        assert counted(system) == 1 + bool(mine["buyer"]) + bool(mine["other"])
        assert_counters_equal_a_recount(system.view)


def test_links_chain_refuse_circles_and_survive_a_rebuild(system: System):
    a = [tp("a1", "website_visited", 0, customer="a"), tp("a2", "case_study_viewed", 1, customer="a")]
    b = [tp("b1", "lead_captured", 2, customer="b")]
    c = [tp("c1", "demo_delivered", 3, customer="c"), tp("c2", "quote_requested", 4, customer="c")]
    system.record(a + b + c)
    first = system.record([], links=[IdentityLink("m1", "a", "b", "identify"), IdentityLink("m2", "b", "c", "alias")])
    assert [r.outcome for r in first.links] == [Outcome.recorded, Outcome.recorded]
    again = system.record([], links=[IdentityLink("m1", "a", "b", "identify"), IdentityLink("m3", "c", "a", "alias"),
                                     IdentityLink("m4", "a", "c", "alias"), IdentityLink("m5", "c", "c", "alias")])
    assert [r.outcome for r in again.links] == [Outcome.duplicate, Outcome.conflict, Outcome.conflict, Outcome.invalid]
    assert "circle" in again.links[1].error and "unlink it first" in again.links[2].error
    system.runner.catch_up()
    assert state(system, "a") == state(system, "b") == state(system, "c") == derived(system, a + b + c)
    assert counted(system) == 1

    system.runner.rebuild()  # the links are events: a rebuild derives the same
    assert state(system, "a") == derived(system, a + b + c) and counted(system) == 1

    system.app.unlink("b", "test")  # b (and a, linked to it) part from c
    system.runner.catch_up()
    assert state(system, "a") == state(system, "b") == derived(system, a + b)
    assert state(system, "c") == derived(system, c) and counted(system) == 2
    assert system.app.unlink("b", "test") is None  # not linked any more: nothing to undo


def test_a_link_to_a_customer_with_no_touchpoints_yet(system: System):
    visits = [tp("v1", "website_visited", 0, customer="visitor"), tp("v2", "pricing_page_viewed", 1, customer="visitor")]
    system.record(visits)
    system.record([], links=[LINK])  # the buyer is known by the link only
    system.runner.catch_up()
    assert state(system, "buyer") == state(system, "visitor") == derived(system, visits)
    assert counted(system) == 1
    deal = [tp("d1", "demo_delivered", 2, customer="buyer"), tp("d2", "contract_signed", 3, customer="buyer")]
    system.record(deal)
    system.runner.catch_up()
    assert state(system, "visitor") == derived(system, visits + deal)
