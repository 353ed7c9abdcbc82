"""The playbook ships as data, is validated at start-up, and says clearly what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from journeys.playbook import Journey, PlaybookError, load_playbook

DEFAULT = Path(__file__).parents[2] / "journeys" / "playbooks" / "default.yaml"


def test_default_playbook_matches_the_domain_table():
    playbook = load_playbook()
    assert playbook.journeys[Journey.seller].stages == [
        "Prospecting", "Building Rapport", "Qualifying", "Presenting", "Closing",
    ]
    assert playbook.stage_for("needs_assessment_held", Journey.buyer) == "Determine Requirements"
    assert playbook.stage_for("needs_assessment_held", Journey.seller) == "Qualifying"
    assert playbook.stage_for("customer_churned", Journey.awareness) is None  # a former customer is no stranger
    assert playbook.stage_for("customer_churned", "relationship") == "Former customer"
    assert playbook.stage_for("deal_lost", Journey.awareness) is None
    assert playbook.knows("message_sent") and not playbook.knows("mystery_signal")
    awareness_rules = {s for r in playbook.rules if list(r.when) == ["awareness"] for s in r.when["awareness"]}
    assert awareness_rules == set(playbook.journeys[Journey.awareness].stages)  # every stage has its message


def test_a_playbook_file_path_works(tmp_path):
    file = tmp_path / "team.yaml"
    file.write_text(DEFAULT.read_text().replace("name: default", "name: team"))
    assert load_playbook(file).name == "team"


def test_unknown_stage_names_file_line_and_key(tmp_path):
    file = tmp_path / "broken.yaml"
    text = DEFAULT.read_text().replace(
        "  trial_started: {buyer: Evaluation", "  trial_started: {buyer: Evaluatoin"
    )
    file.write_text(text)
    line = next(n for n, l in enumerate(text.splitlines(), 1) if "Evaluatoin" in l)
    with pytest.raises(PlaybookError) as error:
        load_playbook(file)
    message = str(error.value)
    assert str(file) in message
    assert f"line {line}" in message
    assert "evidence.trial_started.buyer" in message
    assert "'Evaluatoin' is not a stage of the buyer journey" in message
    assert "'Identify Need', 'Determine Requirements', 'Evaluation'" in message  # the buyer journey's own stages


def test_wrong_type_names_the_key(tmp_path):
    file = tmp_path / "broken.yaml"
    file.write_text(DEFAULT.read_text().replace("    initial: Unaware", "    initial: Nowhere"))
    with pytest.raises(PlaybookError, match=r"key journeys\.awareness: .*'Nowhere'"):
        load_playbook(file)


def test_not_yaml_and_missing_file(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("journeys: [unclosed")
    with pytest.raises(PlaybookError, match="not valid YAML"):
        load_playbook(file)
    with pytest.raises(PlaybookError, match="cannot read playbook"):
        load_playbook(tmp_path / "absent.yaml")


def test_the_default_playbook_keeps_the_seeds_processes_at_their_scopes():
    playbook = load_playbook()
    scopes = {name: model.scope.value for name, model in playbook.journeys.items()}
    assert scopes == {
        "buyer": "customer", "seller": "customer", "awareness": "customer", "relationship": "customer",
        "lead_funnel": "customer", "complaints": "case", "account_buying": "account", "deal_pipeline": "deal",
    }
    assert playbook.stage_for("demo_delivered", "deal_pipeline") == "Presenting"  # the seller's evidence
    vbant = ["vision", "budget", "authority", "need", "timeframe"]  # seed 004: all five by default
    assert playbook.journeys["deal_pipeline"].requires == {"Qualifying": vbant}
    assert playbook.journeys["seller"].expects == {"Qualifying": vbant}
    assert playbook.journeys["complaints"].every_stage_required
    assert playbook.roles_warned_from("account_buying") == 2  # Evaluation


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("  demo_delivered: {buyer: Evaluation", "  demo_delivered: {buyr: Evaluation"), "no journey is named 'buyr'"),
        (("    evidence_from: seller", "    evidence_from: buyer"), "has other stages"),
        (("      Qualifying: [vision, budget, authority, need, timeframe]", "      Qualifying: [budget, money]"),
         "['money'] are not criteria"),
        (("    scope: case", "    scope: planet"), "journeys.complaints.scope"),
        (("      Qualifying: [vision", "      Qualifyin: [vision"), "'Qualifyin' is not one of"),
        (("timeframe]\n  awareness:", "timeframe]\n      Closng: [need]\n  awareness:"),
         "key journeys.seller: expects: 'Closng' is not one of"),
        (("timeframe]\n  awareness:", "timeframe]\n      Closing: [money]\n  awareness:"), "journeys.seller.expects.Closing: ['money']"),
    ],
)
def test_check_playbook_explains_journey_mistakes(tmp_path, change, message):
    file = tmp_path / "team.yaml"
    text = DEFAULT.read_text()
    assert change[0] in text
    file.write_text(text.replace(change[0], change[1]))
    with pytest.raises(PlaybookError) as error:
        load_playbook(file)
    assert message in str(error.value), str(error.value)
