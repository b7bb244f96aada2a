"""A session's page (facts, seal, commands, player), its recording as a .cast file, and the command search."""
import logging

from flask import Response, current_app, render_template, request, stream_with_context
from flask_login import current_user

from app.access import get_session_or_404, may_read_session, may_watch
from app.audit.events import record
from app.audit.query import parse_filters
from app.blocking import run_blocking
from app.crypto import recording_key
from app.recording.chunks import CutOff, check, iter_cast
from app.recording.store import RecordingError, open_store

from . import session_commands, session_events
from .views import bp

log = logging.getLogger("gatehouse.replay")  # the logger's name stays: operators filter on it

# The player's terminal is WebAssembly, which Chromium compiles only with 'wasm-unsafe-eval' (it still forbids
# eval() and new Function()); only the session page gets it, every other page keeps the strict policy.
PLAYER_CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
              "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")

# Another user's open terminal is not read near-live from its recording: that would be watching, untold.
STILL_OPEN = "This session is still open; its recording can be read when it ends."

# What a seal's own state says about how the recording ended.
ENDINGS = {
    "complete": "complete",
    "limited": "stopped at the size cap (RECORDING_MAX_MB)",
    "failed": "recording failed",
    "interrupted": "interrupted: kept up to the last flush before the server stopped",
}


@bp.app_template_filter("duration")
def duration(seconds):
    """Format seconds as a short duration: 42 s, 3 min 05 s, 2 h 07 min."""
    seconds = int(seconds or 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


@bp.app_template_filter("clock")
def clock(seconds):
    """Format an offset into a recording as the player's clock does: mm:ss (h:mm:ss past an hour)."""
    seconds = int(seconds or 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def _seal(row, store):
    """Return what the page says about the recording: state, detail, the seal, and whether a file is kept."""
    kept = store.size(row.id) is not None
    if row.ended_at is None:
        return {"state": "in progress", "detail": "sealed when the session ends", "seal": None, "kept": kept}
    details = session_events.end_details(row.id)
    seal = (details or {}).get("recording")
    if details is None:
        return {"state": "unsealed", "detail": "its session.ended event is not in the trail", "seal": None,
                "kept": kept}
    if not seal:
        return {"state": "not recorded", "detail": "recording was off", "seal": None, "kept": kept}
    if not seal.get("sha256"):  # it failed before anything was kept: nothing to compare
        return {"state": "failed", "detail": seal.get("error") or "nothing was kept", "seal": seal, "kept": kept}
    try:
        # Re-hashing decrypts and inflates the whole file: CPU work, off the event loop every terminal shares.
        state, problem = run_blocking(check, store, row.id, recording_key(), seal)
    except (OSError, RecordingError) as exc:  # a directory in its place, no permission
        state, problem = "unreadable", str(exc)
    return {"state": state, "detail": problem, "seal": seal, "kept": kept}


@bp.get("/sessions/<session_id>")
def session_page(session_id):
    """Show a terminal session: who, where, when, its seal, the commands typed and the player."""
    row = get_session_or_404(session_id, current_user)
    if not may_read_session(current_user, row):
        return still_open(row)
    seal = _seal(row, open_store(current_app.config))
    page = render_template("terminals/session.html", session=row, seal=seal, endings=ENDINGS,
                           commands=session_commands.commands_of(row.id))
    return page, 200, {"Content-Security-Policy": PLAYER_CSP}


def still_open(row):
    """Answer a read of another user's open session: it is read once it ended (an admin may watch it, told)."""
    page = render_template("terminals/still_open.html", session=row, message=STILL_OPEN,
                           may_watch=may_watch(current_user))
    return page, 403


def _pieces(cast):
    """Yield the pieces of a recording, each decrypted and inflated off the event loop."""
    try:
        while True:
            piece = run_blocking(next, cast, None)
            if piece is None:
                return
            if piece:  # the last chunk may be empty
                yield piece
    finally:
        cast.close()  # a client that went away leaves no open file behind


@bp.get("/sessions/<session_id>/recording.cast")
def recording_cast(session_id):
    """Stream a session's recording as asciicast v2 (?download=1: as a file); audited as viewed or exported."""
    row = get_session_or_404(session_id, current_user)
    if not may_read_session(current_user, row):
        return Response(STILL_OPEN + "\n", 403, mimetype="text/plain")
    store, download = open_store(current_app.config), request.args.get("download") == "1"
    if store.size(row.id) is None:
        return Response("No recording is kept for this session.\n", 404, mimetype="text/plain")
    pieces = _pieces(iter_cast(store, row.id, recording_key()))
    try:
        first = next(pieces, None)  # a file that does not even start right gets an error status, not an empty 200
    except RecordingError as exc:
        if row.ended_at is None:  # its first second: the file exists, its first chunk is not written yet
            return Response("Nothing is recorded yet; reload in a moment.\n", 404, mimetype="text/plain")
        log.error("recording of session %s cannot be read: %s", row.id, exc)
        return Response(f"The recording cannot be read: {exc}.\n", 500, mimetype="text/plain")

    def generate():
        sent, complete = 0, False
        try:
            piece = first
            while piece is not None:
                sent += len(piece)
                yield piece
                piece = next(pieces, None)
            complete = True
        except RecordingError as exc:
            # The status is long sent; ending the stream early is all that is left (the seal says the rest).
            # An open session's last chunk may be half written right now: that is no fault.
            still_written = row.ended_at is None and isinstance(exc, CutOff)
            log.log(logging.INFO if still_written else logging.ERROR,
                    "recording of session %s broke off after %d bytes: %s", row.id, sent, exc)
        finally:
            pieces.close()
            action, verb = ("recording.exported", "exported") if download else ("recording.viewed", "viewed")
            record(action, f"{verb} the recording of {row.actor}'s session with {row.target}", target=row.target,
                   session_id=row.id, details={"user": row.actor, "bytes": sent, "complete": complete}, strict=False)

    headers = {"Content-Disposition": f'attachment; filename="gatehouse-{row.id}.cast"'} if download else {}
    return Response(stream_with_context(generate()), mimetype="application/x-asciicast", headers=headers)


@bp.get("/terminals/commands")
def commands():
    """Render the commands matching the viewer's command filter (the audit viewer embeds and polls this list)."""
    filters = parse_filters(request.args)
    total, matches = 0, []
    if filters.command and not filters.errors:
        total, matches = session_commands.find_commands(current_user, filters.command, filters.user, filters.since,
                                               filters.until)
    return render_template("terminals/_commands.html", filters=filters, total=total, matches=matches)
