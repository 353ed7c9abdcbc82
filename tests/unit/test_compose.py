"""docker-compose.yml cannot run here; check it names real settings and real commands."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer.main
import yaml

from api.cli import app
from journeys.settings import Settings

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OURS = {name: s for name, s in COMPOSE["services"].items() if s.get("build")}


def test_the_whole_stack_is_there():
    assert {"postgres", "kafka", "api", "consumer", "projections", "publisher"} <= set(COMPOSE["services"])
    assert COMPOSE["services"]["kafka"]["image"].startswith("apache/kafka")
    assert COMPOSE["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert all("healthcheck" in COMPOSE["services"][s] for s in ("postgres", "kafka", "api"))
    assert (ROOT / "Dockerfile").is_file()


def test_every_journeys_variable_is_a_setting_the_code_reads():
    fields = {f"JOURNEYS_{name.upper()}" for name in Settings.model_fields}
    for name, service in OURS.items():
        env = service["environment"]
        assert env, name
        unknown = {k for k in env if k.startswith("JOURNEYS_")} - fields
        assert not unknown, f"{name} sets {unknown}, which no setting reads"
        Settings(**{k.removeprefix("JOURNEYS_").lower(): v for k, v in env.items()})  # and they parse


def test_every_command_exists():
    commands = set(typer.main.get_command(app).commands)
    assert len(OURS) == 4
    for name, service in OURS.items():
        argv = service["command"] if isinstance(service["command"], list) else shlex.split(service["command"])
        assert argv[0] == "journeys", name
        assert argv[1] in commands, f"{name} runs 'journeys {argv[1]}', which does not exist"


def test_the_api_healthcheck_asks_readyz_which_needs_no_key():
    check = " ".join(COMPOSE["services"]["api"]["healthcheck"]["test"])
    assert "/readyz" in check and "Authorization" not in check
