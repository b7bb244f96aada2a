"""`flask audit ...`: verify the chain, prune now."""
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from app.signals import verify_requested

from .events import FAILURE, SUCCESS, record
from .integrity import verify
from .retention import prune


@click.group("audit", cls=AppGroup, help="Inspect and maintain the audit trail.")
def audit_cli():
    """Group the audit commands."""


@audit_cli.command("verify")
@click.option("--recordings", is_flag=True, help="Also re-hash every kept session recording against its seal.")
def verify_command(recordings):
    """Walk the hash chain; exit 1 and name the first broken row (or bad recording) if something was tampered with."""
    verdict = verify()
    details = {"count": verdict.count, "bad_id": verdict.bad_id, "problem": verdict.problem}
    problems, summary = [], str(verdict)
    if recordings:
        # Recordings live with the terminals, which the trail does not import (it must not depend on
        # what it records): they answer a signal. The hashing is CPU work, fine in a console command.
        for _, answer in verify_requested.send(current_app._get_current_object(), recordings=True):
            if answer is not None:
                verified, found = answer
                problems += found
                summary += f"; {verified} recordings verified" + (f", {len(found)} with problems" if found else "")
                details.update(recordings_verified=verified, recording_problems=len(found))
    ok = verdict.ok and not problems
    message = "audit trail verified" if verdict.ok else f"audit trail broken at event {verdict.bad_id}"
    if problems:
        message += f"; {len(problems)} recordings do not match their seals"
        if verdict.ok:  # the last line must not start with OK when the command fails
            summary = f"RECORDINGS FAILED ({len(problems)} listed above); chain {summary}"
    record("audit.verified", message, outcome=SUCCESS if ok else FAILURE, actor="console", details=details,
           strict=False)
    for problem in problems:
        click.echo(problem)
    click.echo(summary)
    sys.exit(0 if ok else 1)


@audit_cli.command("prune")
@click.option("--days", type=click.IntRange(1, 36500),
              help="Keep this many days of events (default AUDIT_RETENTION_DAYS; recordings keep theirs).")
def prune_command(days):
    """Prune events older than the retention now (archived first if AUDIT_ARCHIVE_DIR is set), then recordings."""
    result = prune(retention_days=days)
    if result.refused:
        click.echo(f"REFUSED: expired events were kept because they do not verify: {result.refused}")
        sys.exit(1)
    click.echo(f"pruned {result.count} events older than {result.cutoff.isoformat()}")
    for path in result.archives:
        click.echo(f"archived to {path}")
    for note in result.notes:
        click.echo(note)
