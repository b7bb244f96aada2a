"""One verify of the trail: the chain walk, its checkpoints and (when asked) the recordings, as one report.

`flask audit verify` and the scheduled verify both run run_verify(), record the report with record_report()
and, on the console, print it with report_lines(); the summary's chain state shows the last one recorded
(last_recorded()). The words of a report are written here only.
"""
import logging
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.signals import verify_requested

from .checkpoints import CheckpointVerdict, verify_checkpoints
from .events import FAILURE, SUCCESS, record
from .integrity import Verdict, verify
from .models import AuditEvent

log = logging.getLogger("gatehouse.audit")


@dataclass
class VerifyReport:
    """What one verify checked and found: the chain, its checkpoints, the recordings if they were asked for."""

    chain: Verdict
    checkpoints: CheckpointVerdict
    recordings: tuple | None = None  # (how many verified, [problems]) when recordings were checked
    scheduled: bool = False

    @property
    def recording_problems(self):
        """Return the recordings that do not match their seals, one line each."""
        return list(self.recordings[1]) if self.recordings else []

    @property
    def problems(self):
        """Return every problem besides the chain's own verdict: checkpoints first, then recordings."""
        return self.checkpoints.problems + self.recording_problems

    @property
    def ok(self):
        """Say whether the chain, every checkpoint and every checked recording verified."""
        return self.chain.ok and not self.problems

    def details(self):
        """Return the details of the audit.verified event that records this report."""
        details = {"scheduled": True} if self.scheduled else {}
        details.update(count=self.chain.count, bad_id=self.chain.bad_id, problem=self.chain.problem,
                       checkpoints_verified=self.checkpoints.checked,
                       checkpoint_problems=len(self.checkpoints.problems),
                       signatures_checked=self.checkpoints.signatures_checked)
        if self.recordings is not None:
            details.update(recordings_verified=self.recordings[0], recording_problems=len(self.recordings[1]))
        return details


def run_verify(against=(), public=None, recordings=False, scheduled=False):
    """Walk the chain and its checkpoints (and re-hash the kept recordings if asked); return a VerifyReport."""
    chain = verify()
    signed = verify_checkpoints(against, public)
    return VerifyReport(chain, signed, _check_recordings() if recordings else None, scheduled)


def _check_recordings():
    """Ask whoever keeps recordings to re-hash them; return (verified, [problems]), or None if no one answers."""
    # Recordings live with the terminals, which the trail does not import (it must not depend on what it
    # records): they answer a signal. The hashing is CPU work, fine in a console command.
    answers = [answer for _, answer in verify_requested.send(current_app._get_current_object(), recordings=True)
               if answer is not None]
    if not answers:
        return None
    return sum(verified for verified, _ in answers), [problem for _, found in answers for problem in found]


def event_message(report):
    """Return the message of the audit.verified event that records a report."""
    chain, problems = report.chain, report.checkpoints.problems
    if report.scheduled:
        if report.ok:
            return "scheduled verify: audit trail and checkpoints verified"
        return "scheduled verify FAILED: " + "; ".join(([str(chain)] if not chain.ok else []) + problems)
    message = "audit trail verified" if chain.ok else f"audit trail broken at event {chain.bad_id}"
    if problems:
        message += f"; {len(problems)} checkpoint problems: " + "; ".join(problems)[:900]
    if report.recording_problems:
        message += f"; {len(report.recording_problems)} recordings do not match their seals"
    return message


def last_line(report):
    """Return the line a console verify ends with: it starts with OK only when everything verified."""
    signed, found = report.checkpoints, report.recording_problems
    line = f"{report.chain}; {signed.checked} checkpoints checked" + (
        "" if signed.signatures_checked else " (no signatures)")
    if report.recordings is not None:
        line += f"; {report.recordings[0]} recordings verified" + (f", {len(found)} with problems" if found else "")
    if report.chain.ok and signed.problems:
        return f"CHECKPOINTS FAILED ({len(signed.problems)} listed above); chain {line}"
    if report.chain.ok and found:
        return f"RECORDINGS FAILED ({len(found)} listed above); chain {line}"
    return line


def report_lines(report):
    """Return what a console verify prints: the notes, each problem, then the last line."""
    return [f"note: {note}" for note in report.checkpoints.notes] + report.problems + [last_line(report)]


def record_report(report):
    """Record a report as audit.verified (critical when something failed; a scheduled failure is logged too)."""
    message = event_message(report)
    if report.scheduled and not report.ok:
        log.error("%s", message)
    return record("audit.verified", message[:1000], outcome=SUCCESS if report.ok else FAILURE,
                  actor="system" if report.scheduled else "console", details=report.details(), strict=False)


def last_recorded():
    """Return the audit.verified event of the newest report, from the console or the schedule, or None."""
    return db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.verified")
                              .order_by(AuditEvent.id.desc()).limit(1)).first()
