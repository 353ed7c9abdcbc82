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
    assert playbook.stage_for("customer_churned", Journey.awareness) == "restart"
    assert playbook.stage_for("deal_lost", Journey.awareness) is None
    assert playbook.knows("message_sent") and not playbook.knows("mystery_signal")
    assert set(playbook.messages) == set(playbook.journeys[Journey.awareness].stages)


def test_next_message_skips_what_was_sent():
    playbook = load_playbook()
    assert playbook.next_message("Aware", set()).id == "aware-benefits"
    assert playbook.next_message("Aware", {"aware-benefits"}).id == "aware-ideal-customer"
    assert playbook.next_message("Aware", {"aware-benefits", "aware-ideal-customer"}) is None


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
