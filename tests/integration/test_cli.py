"""The `journeys` command: replay as an auditor reads it, rebuild, playbook checks."""

from __future__ import annotations

import contextlib
import os
from io import StringIO
from unittest import mock

import pytest
from typer.testing import CliRunner

from api.cli import _first_admin_key, app
from journeys.storage.api_keys import KeyStore
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

    rebuilt = runner.invoke(app, ["rebuild-projections", "--keep-old", "0"], env=env_for(settings))
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "generation 2 of the read models is live (was 1)" in rebuilt.output
    assert "0 instances reclassified" in rebuilt.output
    system.runner.catch_up()  # follows the switch
    assert system.view.generation == 2
    assert system.view.customer(rid(system, "globex")) == before


def test_check_playbook_reports_the_problem(tmp_path):
    assert runner.invoke(app, ["check-playbook", "seven-steps"]).exit_code == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\njourneys: {}\nevidence: {}\n")
    result = runner.invoke(app, ["check-playbook", str(broken)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "broken.yaml" in result.output and "journeys" in result.output


def test_api_keys_from_the_command_line(system: System, settings):
    env = env_for(settings)
    created = runner.invoke(app, ["keys", "create", "--role", "marketer", "--name", "campaigns"], env=env)
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    assert key.startswith("jrn_")
    assert runner.invoke(app, ["keys", "create", "--role", "marketer", "--name", "campaigns"], env=env).exit_code == 1
    assert runner.invoke(app, ["keys", "create", "--role", "wizard", "--name", "x"], env=env).exit_code == 2
    listed = runner.invoke(app, ["keys", "list"], env=env)
    assert "campaigns" in listed.output and "marketer" in listed.output and key not in listed.output
    store = KeyStore(system.view, cache_seconds=0)
    assert store.verify(key).name == "campaigns"
    assert runner.invoke(app, ["keys", "revoke", "campaigns"], env=env).exit_code == 0
    assert store.verify(key) is None
    assert runner.invoke(app, ["keys", "revoke", "nobody"], env=env).exit_code == 1


def test_serve_creates_and_prints_an_admin_key_on_a_store_without_keys(settings):
    with mock.patch.dict(os.environ, env_for(settings)):
        out = StringIO()
        with contextlib.redirect_stdout(out):
            _first_admin_key()
            _first_admin_key()  # the second start finds a key: prints nothing
    keys = [line for line in out.getvalue().splitlines() if line.startswith("jrn_")]
    assert len(keys) == 1
    built = System.build(settings)
    try:
        assert KeyStore(built.view).verify(keys[0]).role.value == "admin"
    finally:
        built.close()


def test_a_broken_master_key_stops_the_command_with_a_clear_message(settings):
    env = {**env_for(settings), "JOURNEYS_MASTER_KEY": "too-short", "JOURNEYS_PSEUDONYM_KEY": "too-short"}
    result = runner.invoke(app, ["keys", "list"], env=env)
    assert result.exit_code == 2
    assert "JOURNEYS_MASTER_KEY" in result.output and "Traceback" not in result.output


def test_the_auditors_commands_checkpoint_verify_export_and_verify_export(system: System, settings, tmp_path):
    import json

    system.record([Touchpoint(**p) for p in b2b_deal("globex")])
    system.record([Touchpoint(**payload) for payload in [
        {"touchpoint_id": "i1", "customer_id": "initech", "type": "demo_delivered", "channel": "web",
         "occurred_at": "2026-03-05T10:00:00+00:00", "source": "crm", "deal_id": "D-9"},
        {"touchpoint_id": "g9", "customer_id": "globex", "type": "meeting_held", "channel": "web",
         "occurred_at": "2026-03-06T10:00:00+00:00", "source": "crm", "deal_id": "D-9"},
    ]])
    system.runner.catch_up()
    env = env_for(settings)
    sealed = runner.invoke(app, ["checkpoint"], env=env)
    assert sealed.exit_code == 0, sealed.output
    root = json.loads(sealed.output)["root"]

    verified = runner.invoke(app, ["verify", "--root", root], env=env)
    assert verified.exit_code == 0 and "verified: 19 events in 2 chains" in verified.output, verified.output
    assert runner.invoke(app, ["verify", "--deal", "D-9"], env=env).exit_code == 0
    assert runner.invoke(app, ["verify", "--customer", "nobody"], env=env).exit_code == 2

    out = tmp_path / "deal.jsonl"
    exported = runner.invoke(app, ["export", "--deal", "D-9", "--output", str(out)], env=env)
    assert exported.exit_code == 0, exported.output
    lines = out.read_text().splitlines()
    full = [json.loads(line) for line in lines[:-1] if "state" in line]
    assert len(lines) == 20 and len(full) == 2  # both chains whole, the deal's two touchpoints in full
    checked = runner.invoke(app, ["verify-export", str(out), "--root", root], env=env)
    assert checked.exit_code == 0 and "19 sealed under the checkpoint" in checked.output, checked.output

    item = json.loads(lines[5])
    item["hash"] = "0" * 64
    (tmp_path / "bad.jsonl").write_text("\n".join([*lines[:5], json.dumps(item), *lines[6:]]) + "\n")
    bad = runner.invoke(app, ["verify-export", str(tmp_path / "bad.jsonl"), "--root", root], env=env)
    assert bad.exit_code == 1 and "BROKEN: line 6: " in bad.output, bad.output

    # An administrator's edit in the database: verify names it and exits 1.
    events, nid = system.audit.events, system.audit.nid
    system.view.execute(f"UPDATE {events} SET state = ? WHERE {nid} = 3", [b"{}"])
    broken = runner.invoke(app, ["verify"], env=env)
    assert broken.exit_code == 1 and "(notification 3): does not follow from version 2's hash: version 3 was edited" in broken.output


def test_replay_a_deal_across_its_contacts(system: System, settings):
    system.record([Touchpoint(**p) for p in [
        {"touchpoint_id": "r1", "customer_id": "ann", "type": "lead_captured", "channel": "web",
         "occurred_at": "2026-03-05T10:00:00+00:00", "source": "crm", "deal_id": "D-5"},
        {"touchpoint_id": "r2", "customer_id": "ben", "type": "demo_delivered", "channel": "web",
         "occurred_at": "2026-03-06T10:00:00+00:00", "source": "crm", "deal_id": "D-5"},
    ]])
    result = runner.invoke(app, ["replay", "--deal", "D-5"], env=env_for(settings))
    assert result.exit_code == 0, result.output
    assert "contacts: ann (1), ben (1)" in result.output
    assert "deal deal_pipeline: Prospecting -> Presenting" in result.output
    assert "deal_pipeline (deal): furthest Presenting" in result.output
    assert runner.invoke(app, ["replay", "--deal", "D-404"], env=env_for(settings)).exit_code == 1
    assert runner.invoke(app, ["replay"], env=env_for(settings)).exit_code == 2


@pytest.mark.parametrize(("command", "extra_env", "says"), [
    (["consume"], {}, "JOURNEYS_KAFKA_BOOTSTRAP_SERVERS is not set"),
    (["consume"], {"JOURNEYS_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}, "no Kafka broker answers at 127.0.0.1:9"),
    (["publish-stage-changes"], {}, "JOURNEYS_KAFKA_BOOTSTRAP_SERVERS is not set"),
    (["publish-stage-changes"], {"JOURNEYS_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}, "no Kafka broker answers"),
    (["rotate-master-key"], {}, "nothing to rotate: set JOURNEYS_MASTER_KEY"),
    (["publish-stage-changes", "--partition", "4/3"], {}, "K must be between 1 and N"),
    (["project", "--partition", "two"], {}, "is not a part: write K/N"),
])
def test_a_command_without_what_it_needs_says_what_to_set_in_one_line(tmp_path, command, extra_env, says):
    env = {"JOURNEYS_DATABASE_URL": f"sqlite:///{tmp_path / 'j.db'}", "JOURNEYS_KEY_FILE": str(tmp_path / "k"),
           "COLUMNS": "200", "JOURNEYS_KAFKA_BOOTSTRAP_SERVERS": "", "JOURNEYS_KAFKA_BOOTSTRAP_TIMEOUT_MS": "1000"}
    result = CliRunner().invoke(app, command, env={**env, **extra_env})
    assert result.exit_code != 0
    assert says in result.stdout and "Traceback" not in result.output, result.output
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout  # kafka-python's own log lines are on stderr


def test_keys_create_help_names_every_role():
    from journeys.storage.api_keys import Role

    help_text = CliRunner().invoke(app, ["keys", "create", "--help"], env={"COLUMNS": "200"}).output
    assert all(role.value in help_text for role in Role), help_text
