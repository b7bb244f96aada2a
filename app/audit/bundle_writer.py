"""Writing evidence bundles in the app; app/audit/bundle.py checks them offline.

write() signs the head, then puts into one zip file the chain segment from the first selected event to a
signed checkpoint, that checkpoint (and any other inside the segment), and the plaintext recordings of the
selected sessions. docs/audit.md, *Evidence bundles*, has the format.
"""
import hashlib
import json
import os
import zipfile
from datetime import datetime, timezone

from flask import current_app
from sqlalchemy import func, select

from app.dbtypes import iso_utc, now_utc
from app.signals import recordings_requested

from . import checkpoints
from .bundle import FORMAT, file_digest, matches
from .chain import CHECKPOINT_FIELDS, ROW_FIELDS, key_id, public_text
from .events import plain, record
from .integrity import snapshot
from .models import AuditEvent

_BATCH = 1000  # rows read from the database at a time

README = """Gatehouse evidence bundle ({format})

bundle.json        what was asked (time range, user, session), when, counts, the signing key's id and,
                   as a convenience only, its public key: compare it with a copy kept elsewhere.
events.jsonl       the chain segment from the first selected event to a signed checkpoint, one event a
                   line, every field its hash covers plus prev_hash and hash. "selected": true marks the
                   events asked for; the others are there because a hash can only be recomputed from the
                   whole row, so no row between the first selected one and the checkpoint can be left out.
checkpoints.jsonl  the signed checkpoint(s): Ed25519 over the head (id, hash) of the chain.
recordings/        the plaintext asciicast (v2) of each selected session that ended with a sealed
                   recording; its SHA-256 and size are in the details.recording of its session.ended event.

Check it, without the gateway's database, from a Gatehouse checkout with its Python requirements, or
with its files app/audit/bundle.py and app/audit/chain.py side by side and the Python package `cryptography`:

    python -m app.audit.bundle THIS-FILE --pubkey PUBLIC-KEY
    python bundle.py THIS-FILE --pubkey PUBLIC-KEY

By hand: hash = sha256(prev_hash || canonical(event)) for every event, each prev_hash equals the hash of
the event before, the last event's (id, hash) is the (head_id, head_hash) of a checkpoint whose signature
verifies over "gatehouse-audit-checkpoint-v1\\n{{head_id}}\\n{{head_hash}}\\n{{signed_at}}\\n{{key_id}}\\n",
and each recording's SHA-256 is the one its session.ended event seals. Gatehouse's docs/audit.md
describes canonical(event) and what this does and does not prove.
"""


class BundleError(Exception):
    """An evidence bundle cannot be written as asked."""


def parse_time(text):
    """Return an aware UTC datetime from ISO-8601 text (a date alone is its midnight; no zone means UTC)."""
    moment = datetime.fromisoformat(text.strip())
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def write(out, start, end, user=None, session=None):
    """Write the bundle of the events in [start, end] (of one user, of one session) to out; return what it holds."""
    request = {"from": iso_utc(start), "to": iso_utc(end), "user": user or None, "session": session or None}
    head = checkpoints.checkpoint(force=True)  # so the newest selected event is under a signature
    with snapshot() as conn:  # before the file exists: a request that selects nothing leaves no file behind
        first, last = _selected_ids(conn, start, end, user, session, head["head_id"])
        signed = _covering(conn, first, last, head["event_id"])
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # recordings inside: private from the start
    with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as bundle:
        with snapshot() as conn:
            counts, seals = _write_events(bundle, conn, first, signed[-1]["head_id"], request)
        bundle.writestr("checkpoints.jsonl", "".join(json.dumps(line, sort_keys=True) + "\n" for line in signed))
        readers = [reader for _, reader in recordings_requested.send(current_app._get_current_object()) if reader]
        recordings, notes = _write_recordings(bundle, readers, seals)
        public = checkpoints.signing_key().public_key()
        meta = {"format": FORMAT, "created_at": iso_utc(now_utc()), "request": request, **counts,
                "checkpoint_event_id": signed[-1]["event_id"], "checkpoints": len(signed), "recordings": recordings,
                "key_id": key_id(public), "public_key": public_text(public), "notes": notes}
        bundle.writestr("bundle.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
        bundle.writestr("README.txt", README.format(format=FORMAT))
    with open(out, "rb") as handle:
        digest, size = file_digest(handle)
    summary = {**request, **counts, "checkpoints": len(signed), "recordings": len(recordings),
               "file": os.path.basename(out), "sha256": digest, "bytes": size}
    record("audit.bundled", f"wrote an evidence bundle of {counts['selected']} events ({request['from']} to "
           f"{request['to']}" + (f", user {user}" if user else "") + (f", session {session}" if session else "")
           + f") with {len(recordings)} recordings", actor="console", details=summary)
    return summary, notes


def _selected_ids(conn, start, end, user, session, upto):
    """Return the first and last id of the events asked for, up to the signed head; raise BundleError if none."""
    conditions = [AuditEvent.occurred_at >= start, AuditEvent.occurred_at <= end, AuditEvent.id <= upto]
    if user:
        conditions.append(AuditEvent.actor == user)
    if session:
        conditions.append(AuditEvent.session_id == session)
    first, last = conn.execute(select(func.min(AuditEvent.id), func.max(AuditEvent.id)).where(*conditions)).one()
    if first is None:
        raise BundleError("no kept event matches: nothing to bundle")
    return first, last


def _covering(conn, first, last, newest):
    """Return the checkpoints whose head lies in the segment, up to the oldest one that covers the last event."""
    rows = conn.execute(select(AuditEvent.id, AuditEvent.details)
                        .where(AuditEvent.action == checkpoints.ACTION, AuditEvent.id > first, AuditEvent.id <= newest)
                        .order_by(AuditEvent.id)).all()
    found = []
    for row in rows:
        details = row.details if isinstance(row.details, dict) else json.loads(row.details)
        line = {"event_id": row.id, **{name: details.get(name) for name in CHECKPOINT_FIELDS}}
        if isinstance(line["head_id"], int) and line["head_id"] >= first:
            found.append(line)
            if line["head_id"] >= last:
                return found
    raise BundleError(f"no checkpoint covers event {last}")


def _write_events(bundle, conn, first, upto, request):
    """Write the segment first..upto as events.jsonl, marking the selected; return counts and the selected seals."""
    columns = [getattr(AuditEvent, name) for name in ROW_FIELDS]
    count = selected = 0
    seals = {}
    with bundle.open("events.jsonl", "w", force_zip64=True) as handle:
        after = first - 1
        while after < upto:
            rows = conn.execute(select(*columns).where(AuditEvent.id > after, AuditEvent.id <= upto)
                                .order_by(AuditEvent.id).limit(_BATCH)).mappings().all()
            if not rows:
                break
            for row in rows:
                line = plain(row, ROW_FIELDS)
                line["selected"] = matches(line, request)
                handle.write((json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))
                count += 1
                seal = line["details"].get("recording") if line["selected"] else None
                selected += line["selected"]
                if line["action"] == "session.ended" and isinstance(seal, dict) and seal.get("sha256"):
                    seals[line["session_id"]] = seal
            after = rows[-1]["id"]
    return {"first_id": first, "last_id": upto, "events": count, "selected": selected}, seals


def _write_recordings(bundle, readers, seals):
    """Stream each sealed session's plaintext into the bundle; return what went in and notes on what did not."""
    written, notes = [], []
    for session_id, seal in sorted(seals.items()):
        if not readers:
            notes.append(f"recording {session_id}: nothing here can read recordings")
            continue
        digest, size = hashlib.sha256(), 0
        try:
            pieces = iter(readers[0](session_id))
            piece = next(pieces, b"")  # a missing recording fails here, before its member exists
        except Exception as exc:
            notes.append(f"recording {session_id}: cannot be read ({exc})")
            continue
        try:
            with bundle.open(f"recordings/{session_id}.cast", "w", force_zip64=True) as handle:
                while piece:
                    handle.write(piece)
                    digest.update(piece)
                    size += len(piece)
                    piece = next(pieces, b"")
        except Exception as exc:  # altered mid-way: what was read stays, and fails its seal when checked
            notes.append(f"recording {session_id}: cannot be read past byte {size} ({exc})")
            continue
        if digest.hexdigest() != seal.get("sha256") or size != seal.get("bytes"):
            notes.append(f"recording {session_id}: does not match its seal")
        written.append({"session_id": session_id, "sha256": digest.hexdigest(), "bytes": size})
    return written, notes
