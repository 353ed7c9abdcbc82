"""The `journeys` command-line tool: one module per group of commands, joined here.

service (serve, project, consume, publish-stage-changes), keys, customers (erase, identities
unlink, replay, rotate-master-key), audit (checkpoint, verify, export, verify-export),
marketing (export-segment, import-spend), models (migrate, rebuild-projections, check-playbook,
playbook diff and versions). What they share is in common.py: the console, `fail()`,
the progress bar and `open_system()`.
"""

from __future__ import annotations

import typer

from api.cli import audit, customers, keys, marketing, models, service
from api.cli.service import _first_admin_key
from journeys import logs
from journeys.settings import Settings

__all__ = ["_first_admin_key", "app"]

app = typer.Typer(help="Event-sourced buyer/seller/marketer journey tracker.", no_args_is_help=True)


@app.callback()
def _logging() -> None:
    """Every command logs in the configured format (JOURNEYS_LOG_FORMAT, JOURNEYS_LOG_LEVEL)."""
    settings = Settings()
    logs.configure(settings.log_format, settings.log_level)


for group in (service, customers, audit, marketing, models):
    app.add_typer(group.app)  # without a name: their commands are the tool's own
app.add_typer(keys.app, name="keys")
app.add_typer(customers.identities, name="identities")
app.add_typer(models.playbook_app, name="playbook")
