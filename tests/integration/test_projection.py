"""The stage projection equals the derivation, in any arrival order, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journeys.playbook import Journey, Scope
from journeys.settings import Settings
from journeys.stages import derive
from journeys.touchpoint import EARLIEST, Touchpoint
from projections.system import System
from tests.factories import assert_counters_equal_a_recount, b2b_deal, rid, tp

TYPES = ["ad_clicked", "lead_captured", "inquiry_received", "meeting_held", "demo_delivered",
         "deal_lost", "quote_requested", "contract_signed", "customer_churned", "mystery_signal",
         "product_used", "renewal_signed", "order_placed"]  # the relationship: churn, win-back (a new cycle)


def touched_by(rng: random.Random) -> dict[str, str | None]:
    """A campaign (or none), whose stay counters the projection keeps, and a channel."""
    return {"campaign": rng.choice([None, None, "spring", "autumn"]), "channel": rng.choice(["web", "email", "ads"])}


def deliver_shuffled(system: System, touchpoints: list, rng: random.Random, repeats: int, largest_batch: int) -> None:
    """Deliver in random order and batches, some twice, projecting now and then; then catch up."""
    arrival = touchpoints + rng.sample(touchpoints, repeats)
    rng.shuffle(arrival)
    while arrival:
        size = rng.randint(1, largest_batch)
        system.record(arrival[:size])
        arrival = arrival[size:]
        if rng.random() < 0.5:
            system.runner.run_once()
    system.runner.catch_up()


@contextmanager
def fresh(store_urls, key_file: str) -> Iterator[System]:
    """A fresh store of the backend under test (hypothesis runs many examples per test)."""
    built = System.build(Settings(database_url=store_urls(), key_file=key_file, database_timeout=10))
    try:
        yield built
    finally:
        built.close()


@contextmanager
def delivered(store_urls, key_file: str, touchpoints: list[Touchpoint], rng: random.Random) -> Iterator[System]:
    """A fresh store holding the touchpoints, delivered shuffled, in batches, with repeats."""
    with fresh(store_urls, key_file) as built:
        # An instance with a late touchpoint is derived again from its first touchpoint or from
        # the stages just before the late one, by its size: both ways, and their mix, drawn.
        built.runner.projection.rederive_below = rng.choice([0, 3, 200])
        deliver_shuffled(built, touchpoints, rng, repeats=min(5, len(touchpoints)), largest_batch=6)
        yield built


def view_state(system: System, customer: str):
    row = system.view.customer(rid(system, customer))
    stages = row["stages"]
    return stages.positions, stages.met, stages.defects, system.view.transitions_of(rid(system, customer))


def derived_state(system: System, touchpoints: list[Touchpoint]):
    d = derive(touchpoints, system.playbook)
    record = rid(system, touchpoints[0].customer_id)
    transitions = [
        {**t.__dict__, "skipped": list(t.skipped), "defects": list(t.defects), "record_id": record,
         "playbook": system.playbook.fingerprint}
        for t in d.transitions
    ]
    return d.stages.positions, d.stages.met, d.stages.defects, transitions


def test_shuffled_batches_with_duplicates_equal_the_derivation(system: System):
    rng = random.Random(2026)
    customers = [f"cust-{n}" for n in range(6)]
    touchpoints = [
        tp(f"t{n:03d}", rng.choice(TYPES), rng.randint(0, 50), customer=rng.choice(customers))
        for n in range(150)
    ]
    deliver_shuffled(system, touchpoints, rng, repeats=30, largest_batch=25)
    for customer in customers:
        mine = [t for t in touchpoints if t.customer_id == customer]
        assert view_state(system, customer) == derived_state(system, mine)
        assert system.view.customer(rid(system, customer))["touchpoint_count"] == len(mine)


def test_position_is_recorded_with_the_view_and_a_restart_resumes(settings):
    first = System.build(settings)
    first.record([tp("t1", "email_opened", 0)])
    position = first.runner.catch_up()
    assert position == first.app.recorder.max_notification_id()
    first.close()

    second = System.build(settings)
    try:
        assert second.runner.position == position
        assert second.runner.run_once() == 0  # nothing processed twice
        second.record([tp("t2", "demo_delivered", 1)])
        second.runner.catch_up()
        assert second.view.customer(rid(second, "acme"))["touchpoint_count"] == 2
    finally:
        second.close()


def test_rebuild_gives_the_same_view(system: System):
    system.record([Touchpoint(**p) for p in b2b_deal()])
    system.record([tp("x1", "ad_clicked", 3, customer="initech")])
    system.runner.catch_up()
    before = [view_state(system, c) for c in ("globex", "initech")]
    summary = system.view.summary()
    system.runner.rebuild()
    assert [view_state(system, c) for c in ("globex", "initech")] == before
    assert system.view.summary() == summary


def test_background_runner_keeps_the_view_current(system: System):
    system.runner.start()
    recorded = system.record([tp("t1", "pricing_page_viewed", 0)])
    assert system.runner.wait(recorded.position, timeout=10)
    assert system.view.customer(rid(system, "acme"))["stages"][Journey.awareness].stage == "Interested"


def test_segments_and_summary(system: System):
    system.record([tp(f"t{n}", "email_opened", 0, customer=f"c{n:02d}") for n in range(12)])
    system.record([tp("d1", "demo_delivered", 1, customer="c03")])
    system.runner.catch_up()

    def keys(rows):
        names = system.personal.customer_keys(rows)
        return [names[r["record_id"]] for r in rows]

    aware = system.view.segment({Journey.awareness: "Aware"}, None, 5)
    page2 = system.view.segment({Journey.awareness: "Aware"}, aware[-1]["record_id"], 100)
    assert [r["record_id"] for r in aware + page2] == sorted(r["record_id"] for r in aware + page2)
    assert len(aware) == 5 and sorted(keys(aware) + keys(page2)) == [f"c{n:02d}" for n in range(12) if n != 3]
    both = system.view.segment({Journey.awareness: "Evaluating", Journey.seller: "Presenting"}, None, 10)
    assert keys(both) == ["c03"]
    assert len(system.view.segment({Journey.buyer: None}, None, 2)) == 2
    summary = system.view.summary()
    assert summary[Journey.awareness] == {"Aware": 11, "Evaluating": 1}
    assert summary[Journey.buyer] == {None: 11, "Evaluation": 1}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from(TYPES), st.integers(0, 5)), min_size=1, max_size=60
    ),
    seed=st.integers(0, 2**32),
)
def test_any_arrival_order_and_batching_gives_the_derivation(store_urls, tmp_path, data, seed):
    """Late touchpoints re-derive from the stages before them; the view still equals derive()."""
    rng = random.Random(seed)
    touchpoints = [tp(f"t{n:02d}", type_, day / 2, customer=f"c{c}", **touched_by(rng)) for n, (c, type_, day) in enumerate(data)]
    with delivered(store_urls, str(tmp_path / "keys"), touchpoints, rng) as built:
        for customer in {t.customer_id for t in touchpoints}:
            mine = [t for t in touchpoints if t.customer_id == customer]
            assert view_state(built, customer) == derived_state(built, mine)
        assert_counters_equal_a_recount(built.view)


DEAL_TYPES = ["lead_captured", "meeting_held", "qualification_assessed", "demo_delivered", "deal_lost",
              "contract_signed", "email_opened", "complaint_filed", "complaint_evaluated"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 1), st.sampled_from(DEAL_TYPES), st.integers(0, 5),
                  st.lists(st.sampled_from(["vision", "budget", "authority", "need", "timeframe"]), max_size=3)),
        min_size=1, max_size=50,
    ),
    seed=st.integers(0, 2**32),
)
def test_a_deal_spread_over_contacts_gives_its_derivation_in_any_order(store_urls, tmp_path, data, seed):
    """Deals (and their criteria) in any arrival order and batching, duplicates included, equal derive()."""
    rng = random.Random(seed)
    touchpoints = [
        tp(f"t{n:02d}", type_, day / 2, customer=f"contact-{c}", deal_id=f"D-{d}", criteria=criteria, **touched_by(rng))
        for n, (c, d, type_, day, criteria) in enumerate(data)
    ]
    with delivered(store_urls, str(tmp_path / "keys"), touchpoints, rng) as built:
        for deal in {t.deal_id for t in touchpoints}:
            mine = [t for t in touchpoints if t.deal_id == deal]
            expected = derive(mine, built.playbook, scope=Scope.deal)
            found = built.view.subject(Scope.deal, deal)
            assert found["stages"].positions == expected.stages.positions
            assert found["stages"].met == expected.stages.met and found["stages"].defects == expected.stages.defects
            stored = built.view.transitions_of(deal, scope=Scope.deal)
            assert [(t["journey"], t["to_stage"], t["touchpoint_id"], t["defects"]) for t in stored] == [
                (t.journey, t.to_stage, t.touchpoint_id, list(t.defects)) for t in expected.transitions
            ]
            assert found["touchpoint_count"] == len(mine)
        assert_counters_equal_a_recount(built.view)



def test_touchpoints_read_a_page_at_a_time_keep_occurred_order(system: System):
    """A late touchpoint in a big history reads the touchpoints after it a page at a time; pages
    end between occurred times, and a page wholly of one time reads all of that time."""
    days = [0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 3, 3, 4, 5, 5]
    touchpoints = [tp(f"t{n:02d}", "email_opened", day, customer="c0") for n, day in enumerate(days)]
    random.Random(7).shuffle(touchpoints)
    system.record(touchpoints)
    system.runner.catch_up()
    record = rid(system, "c0")
    for start in (EARLIEST, touchpoints[0].occurred_at):
        expected = sorted(system.view.touchpoints_from(Scope.customer, record, start),
                          key=lambda r: (r["occurred_at"], r["touchpoint_id"]))
        assert len(expected) > 4
        for page in (1, 2, 3, 5, 100):
            pages = list(system.view.touchpoint_pages(Scope.customer, record, start, page))
            assert [row for p in pages for row in p] == expected, page
            assert all(p[-1]["occurred_at"] != q[0]["occurred_at"] for p, q in zip(pages, pages[1:], strict=False))
