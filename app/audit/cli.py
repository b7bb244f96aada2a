"""`flask audit ...`: verify the chain, checkpoints, archives, bundles; prune; write bundles; keys and checkpoints."""
import json
import sys

import click
from flask.cli import AppGroup

from . import archive_check, bundle, bundle_writer, checkpoints
from .chain import BadKey, parse_public_key, public_text
from .events import FAILURE, SUCCESS, record
from .retention import prune
from .verification import record_report, report_lines, run_verify


@click.group("audit", cls=AppGroup, help="Inspect and maintain the audit trail.")
def audit_cli():
    """Group the audit commands."""


@audit_cli.command("verify")
@click.option("--recordings", is_flag=True, help="Also re-hash every kept session recording against its seal.")
@click.option("--against", "against", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Also check the trail against checkpoints exported earlier (JSON Lines); may be repeated.")
@click.option("--archive", "archive_dir", type=click.Path(file_okay=False),
              help="Check the archive folder instead: its signed manifests, files and rows, and the link to the trail.")
@click.option("--bundle", "bundle_file", type=click.Path(exists=True, dir_okay=False),
              help="Check an evidence bundle instead, offline: the database is not touched.")
@click.option("--pubkey", help="Public key for the signatures (base64 or PEM, or a file); default: the signing key's.")
def verify_command(recordings, against, archive_dir, bundle_file, pubkey):
    """Walk the hash chain and its checkpoints; exit 1 and name what was tampered with."""
    try:
        public = parse_public_key(pubkey) if pubkey else None
    except BadKey as exc:
        raise click.BadParameter(str(exc), param_hint="--pubkey") from None
    if bundle_file:  # before anything reads the database or the key: a bundle is checked where neither is
        sys.exit(bundle.report(bundle.check(bundle_file, public), echo=click.echo))
    if archive_dir:
        sys.exit(_verify_archive(archive_dir, public))
    report = run_verify(against, public, recordings=recordings)
    record_report(report)
    for line in report_lines(report):
        click.echo(line)
    sys.exit(0 if report.ok else 1)


def _verify_archive(folder, public):
    """Check an archive folder and its link to the kept trail; print each problem, record it; return the exit code."""
    if public is None:
        private = checkpoints.signing_key(create=False)
        public = private.public_key() if private else None
    verdict = archive_check.verify_archive(folder, public)
    try:
        archive_check.check_kept_trail(verdict)
    except Exception as exc:  # the archive may be checked where the database is not
        verdict.notes.append(f"the link to the kept trail was not checked: the database cannot be read "
                             f"({type(exc).__name__})")
    details = {"archive": str(folder), "manifests": verdict.manifests, "files": verdict.files,
               "events": verdict.events, "archive_problems": len(verdict.problems),
               "signatures_checked": public is not None}
    message = (f"audit archive {folder} verified" if not verdict.problems else
               f"audit archive {folder}: {len(verdict.problems)} problems: " + "; ".join(verdict.problems)[:900])
    record("audit.verified", message, outcome=FAILURE if verdict.problems else SUCCESS, actor="console",
           details=details, strict=False)
    return bundle.report(verdict, echo=click.echo)  # the same notes, problems and last line as a bundle's


@audit_cli.command("bundle")
@click.option("--from", "start", required=True, help="First moment, ISO-8601 (UTC unless a zone is given).")
@click.option("--to", "end", required=True, help="Last moment, ISO-8601, included (a date alone: its midnight).")
@click.option("--user", help="Only this user's events (actor).")
@click.option("--session", help="Only this terminal session's events.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True), help="The bundle file (zip).")
def bundle_command(start, end, user, session, out):
    """Write an evidence bundle: the selected events, the chain to a signed checkpoint, the sealed recordings."""
    try:
        start_at, end_at = bundle_writer.parse_time(start), bundle_writer.parse_time(end)
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO-8601 time: {exc}") from None
    try:
        summary, notes = bundle_writer.write(out, start_at, end_at, user=user, session=session)
    except bundle_writer.BundleError as exc:
        click.echo(f"no bundle written: {exc}")
        sys.exit(1)
    for note in notes:
        click.echo(f"warning: {note}")
    click.echo(f"wrote {out}: {summary['events']} events ({summary['selected']} selected), ids {summary['first_id']}.."
               f"{summary['last_id']}, {summary['checkpoints']} checkpoints, {summary['recordings']} recordings; "
               f"SHA-256 {summary['sha256']}")


@audit_cli.command("pubkey")
def pubkey_command():
    """Print the checkpoint signing key's public half (base64 of 32 bytes) for a verifier to keep elsewhere."""
    key = checkpoints.signing_key().public_key()  # made on first use, like at the first checkpoint
    click.echo(public_text(key))


@audit_cli.command("checkpoints")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="Write here instead of to stdout.")
def checkpoints_command(out):
    """Export the kept checkpoints as JSON Lines, the form `verify --against` reads."""
    lines = "".join(json.dumps(line, sort_keys=True) + "\n" for line in checkpoints.stored())
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(lines)
    else:
        click.echo(lines, nl=False)


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
