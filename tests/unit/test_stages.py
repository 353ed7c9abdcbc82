"""Stage derivation: a pure function of touchpoints and a playbook."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from journeys.playbook import Journey, Scope, load_playbook
from journeys.stages import derive, fold, initial_stages, sort_key
from tests.factories import B2B_DEAL, T0, tp

PLAYBOOK = load_playbook()
TYPES = sorted(PLAYBOOK.evidence) + ["mystery_signal"]


def stage(derivation, journey: Journey):
    return derivation.stages[journey].stage


def test_no_evidence_buyer_and_seller_not_started_awareness_unaware():
    d = derive([tp("t1", "support_ticket_opened", 0)], PLAYBOOK)
    assert stage(d, Journey.buyer) is None
    assert stage(d, Journey.seller) is None
    assert stage(d, Journey.awareness) == "Unaware"
    assert d.stages[Journey.awareness].since == T0
    assert d.transitions == []


def test_furthest_stage_wins_and_earlier_evidence_does_not_move_back():
    d = derive([tp("t1", "demo_delivered", 0), tp("t2", "requirements_shared", 1)], PLAYBOOK)
    assert stage(d, Journey.buyer) == "Evaluation"
    assert d.stages[Journey.buyer].touchpoint_id == "t1"


def test_jump_is_kept_with_skipped_stages():
    d = derive([tp("t1", "lead_captured", 0), tp("t2", "demo_delivered", 1)], PLAYBOOK)
    seller = [t for t in d.transitions if t.journey == "seller"]
    assert [(t.from_stage, t.to_stage, t.skipped) for t in seller] == [
        (None, "Prospecting", ()),
        ("Prospecting", "Presenting", ("Building Rapport", "Qualifying")),
    ]


def test_restart_counts_only_later_evidence():
    d = derive(
        [tp("t1", "demo_delivered", 0), tp("t2", "deal_lost", 1), tp("t3", "meeting_held", 2)],
        PLAYBOOK,
    )
    assert stage(d, Journey.buyer) is None
    assert stage(d, Journey.seller) == "Building Rapport"
    assert stage(d, Journey.awareness) == "Evaluating"  # deal_lost does not restart awareness
    restarts = [t for t in d.transitions if t.restart]
    assert {(t.journey, t.from_stage, t.to_stage) for t in restarts} == {
        (Journey.buyer, "Evaluation", None),
        (Journey.seller, "Presenting", None),
    }


def test_churn_makes_a_former_customer_not_a_stranger_and_a_new_purchase_wins_them_back():
    d = derive([tp("t1", "contract_signed", 0), tp("t2", "product_used", 3), tp("t3", "customer_churned", 5)], PLAYBOOK)
    assert stage(d, Journey.awareness) == "Purchase"  # awareness never falls back to Unaware
    assert d.stages["relationship"].stage == "Former customer"
    assert (stage(d, Journey.buyer), stage(d, Journey.seller)) == (None, None)  # a new sale is a new buying cycle
    churn = [t for t in d.transitions if t.journey == "relationship"][-1]
    assert (churn.from_stage, churn.skipped, churn.restart) == ("Adoption", (), False)  # nothing skipped on the way out
    back = derive([*d.touchpoints, tp("t4", "order_placed", 40)], PLAYBOOK)
    win_back = [t for t in back.transitions if t.journey == "relationship"][-1]
    assert (win_back.from_stage, win_back.to_stage, win_back.restart) == ("Former customer", "Onboarding", True)
    assert [t.to_stage for t in back.transitions if t.journey == "relationship"] == [
        "Onboarding", "Adoption", "Former customer", "Onboarding"]  # the history keeps both


def test_a_complaint_evaluated_without_a_response_or_a_control_is_a_defect():
    case = {"case_id": "C-10"}
    d = derive([tp("c1", "complaint_filed", 0, **case), tp("c2", "complaint_processing_started", 1, **case),
                tp("c3", "complaint_evaluated", 2, **case)], PLAYBOOK, scope=Scope.case)
    assert d.stages["complaints"].stage == "Evaluation"
    assert d.stages.defects["complaints"] == (
        "Response skipped: every stage is required", "Control skipped: every stage is required")


def test_vbant_needs_all_five_criteria_to_qualify_a_deal():
    deal = {"deal_id": "D-1"}
    three = [tp("q1", "qualification_assessed", 0, criteria=["budget", "authority", "need"], **deal)]
    assert derive(three, PLAYBOOK, scope=Scope.deal).stages["deal_pipeline"].stage is None
    five = [*three, tp("q2", "qualification_assessed", 1, criteria=["vision", "timeframe"], **deal)]
    assert derive(five, PLAYBOOK, scope=Scope.deal).stages["deal_pipeline"].stage == "Qualifying"


def test_unknown_type_moves_nothing():
    d = derive([tp("t1", "email_opened", 0), tp("t2", "mystery_signal", 1)], PLAYBOOK)
    assert stage(d, Journey.awareness) == "Aware"
    assert [t.touchpoint_id for t in d.transitions] == ["t1"]


def test_as_of_gives_the_earlier_stages():
    touchpoints = [tp(i, t, d) for i, t, d in B2B_DEAL]
    assert stage(derive(touchpoints, PLAYBOOK), Journey.buyer) == "Purchase"
    before_loss = derive(touchpoints, PLAYBOOK, as_of=T0 + timedelta(days=15))
    assert stage(before_loss, Journey.buyer) == "Negotiation"
    assert stage(before_loss, Journey.seller) == "Presenting"
    after_loss = derive(touchpoints, PLAYBOOK, as_of=T0 + timedelta(days=25))
    assert stage(after_loss, Journey.buyer) is None


def test_ties_in_occurred_at_are_broken_by_touchpoint_id():
    a, b = tp("a", "deal_lost", 0), tp("b", "demo_delivered", 0)
    assert derive([b, a], PLAYBOOK) == derive([a, b], PLAYBOOK)
    assert stage(derive([b, a], PLAYBOOK), Journey.buyer) == "Evaluation"


def test_seven_steps_playbook_is_configuration_not_code():
    seven = load_playbook("seven-steps")
    d = derive([tp("t1", "lead_captured", 0), tp("t2", "objection_raised", 1)], seven)
    assert stage(d, Journey.seller) == "Overcoming objections"
    assert d.transitions[-1].skipped == ("Pre-approach", "Approach", "Presentation")


touchpoint_lists = st.lists(
    st.tuples(st.sampled_from(TYPES), st.integers(min_value=0, max_value=40)),
    min_size=1,
    max_size=25,
).map(lambda items: [tp(f"t{n:02d}", t, d) for n, (t, d) in enumerate(items)])


@settings(max_examples=300, deadline=None)
@given(touchpoints=touchpoint_lists, data=st.data())
def test_any_arrival_order_with_duplicates_gives_the_same_stages_and_history(touchpoints, data):
    in_order = derive(touchpoints, PLAYBOOK)
    duplicates = data.draw(st.lists(st.sampled_from(touchpoints), max_size=10))
    arrival = data.draw(st.permutations(touchpoints + duplicates))
    assert derive(arrival, PLAYBOOK) == in_order


@settings(max_examples=200, deadline=None)
@given(touchpoints=touchpoint_lists, cut=st.integers(min_value=0, max_value=25))
def test_folding_in_two_parts_equals_deriving_at_once(touchpoints, cut):
    ordered = sorted(touchpoints, key=sort_key)
    first = fold(initial_stages(PLAYBOOK), ordered[:cut], PLAYBOOK)
    second = fold(first.stages, ordered[cut:], PLAYBOOK)
    whole = derive(touchpoints, PLAYBOOK)
    assert second.stages == whole.stages
    assert first.transitions + second.transitions == whole.transitions


def test_stage_never_exceeds_furthest_evidence_since_restart():
    rng = random.Random(7)
    for _ in range(200):
        touchpoints = [tp(f"t{n}", rng.choice(TYPES), rng.randint(0, 30)) for n in range(12)]
        d = derive(touchpoints, PLAYBOOK)
        for journey in Journey:
            model = PLAYBOOK.journeys[journey]
            since_restart = []
            for t in sorted(touchpoints, key=sort_key):
                evidence = PLAYBOOK.stage_for(t.type, journey)
                if evidence == "restart":
                    since_restart = []
                elif evidence:
                    since_restart.append(model.index(evidence))
            expected = max(since_restart, default=model.index(model.initial))
            assert model.index(stage(d, journey)) == expected
