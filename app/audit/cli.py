"""`flask audit ...`: verify the chain, prune now."""
import sys

import click
from flask.cli import AppGroup

from .events import FAILURE, SUCCESS, record
from .integrity import verify
from .retention import prune


@click.group("audit", cls=AppGroup, help="Inspect and maintain the audit trail.")
def audit_cli():
    """Group the audit commands."""


@audit_cli.command("verify")
def verify_command():
    """Walk the hash chain; exit 1 and name the first broken row if it was tampered with."""
    verdict = verify()
    record("audit.verified", "audit trail verified" if verdict.ok else f"audit trail broken at event {verdict.bad_id}",
           outcome=SUCCESS if verdict.ok else FAILURE, actor="console",
           details={"count": verdict.count, "bad_id": verdict.bad_id, "problem": verdict.problem}, strict=False)
    click.echo(str(verdict))
    sys.exit(0 if verdict.ok else 1)


@audit_cli.command("prune")
@click.option("--days", type=click.IntRange(1, 36500), help="Keep this many days (default AUDIT_RETENTION_DAYS).")
def prune_command(days):
    """Delete events older than the retention period now (archived first if AUDIT_ARCHIVE_DIR is set)."""
    result = prune(retention_days=days)
    if result.refused:
        click.echo(f"REFUSED: expired events were kept because they do not verify: {result.refused}")
        sys.exit(1)
    click.echo(f"pruned {result.count} events older than {result.cutoff.isoformat()}")
    for path in result.archives:
        click.echo(f"archived to {path}")
