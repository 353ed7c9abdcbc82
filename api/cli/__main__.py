"""`python -m api.cli`: the same tool as the `journeys` command."""

from api.cli import app

app()
