"""The `journeys` command: replay as an auditor reads it, rebuild, playbook checks."""

from __future__ import annotations

from typer.testing import CliRunner

from api.cli import app
from journeys.touchpoint import Touchpoint
from projections.system import System
from tests.factories import b2b_deal, rid

runner = CliRunner()


def env_for(settings) -> dict[str, str]:
    return {"JOURNEYS_DATABASE_URL": settings.database_url, "JOURNEYS_KEY_FILE": settings.key_file, "COLUMNS": "200"}


def test_replay_and_rebuild(system: System, settings):
    system.record([Touchpoint(**p) for p in b2b_deal("globex")])
    system.runner.catch_up()
    before = system.view.customer(rid(system, "globex"))

    replay = runner.invoke(app, ["replay", "globex"], env=env_for(settings))
    assert replay.exit_code == 0, replay.output
    assert "Buyer's journey: Purchase" in replay.output
    assert "seller: Presenting -> restart" in replay.output
    earlier = runner.invoke(app, ["replay", "globex", "--as-of", "2026-03-16T00:00:00+00:00"], env=env_for(settings))
    assert "Buyer's journey: Negotiation" in earlier.output
    assert "contract_signed" not in earlier.output

    missing = runner.invoke(app, ["replay", "nobody"], env=env_for(settings))
    assert missing.exit_code == 1 and "no touchpoint has been recorded" in missing.output

    rebuilt = runner.invoke(app, ["rebuild-projections"], env=env_for(settings))
    assert rebuilt.exit_code == 0, rebuilt.output
    assert system.view.customer(rid(system, "globex")) == before


def test_check_playbook_reports_the_problem(tmp_path):
    assert runner.invoke(app, ["check-playbook", "seven-steps"]).exit_code == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\njourneys: {}\nevidence: {}\n")
    result = runner.invoke(app, ["check-playbook", str(broken)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "broken.yaml" in result.output and "journeys" in result.output
