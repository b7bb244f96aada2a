"""Evidence bundles: one zip file that an outside auditor checks offline with the public key alone.

write() runs in the app: it signs the head, then puts into the file the chain segment from the first
selected event to a signed checkpoint, that checkpoint (and any other inside the segment), and the
plaintext recordings of the selected sessions. check() runs anywhere: it reads only the file and needs
the standard library and `cryptography` alone, never Flask or the database: `python -m app.audit.bundle
FILE --pubkey KEY`, or this file copied to the auditor's machine and run as a script. docs/audit.md,
*Evidence bundles*, has the format and what a check proves.
"""
import argparse
import base64
import hashlib
import json
import os
import sys
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "gatehouse-evidence-bundle-v1"
# The chain's documented forms (docs/audit.md), restated here so that checking needs nothing of the app;
# tests/test_bundle.py holds them equal to app.audit.events and app.audit.checkpoints.
HASHED_FIELDS = ("id", "occurred_at", "actor", "user_id", "action", "outcome", "severity", "message", "source_ip",
                 "user_agent", "request_id", "target", "session_id", "details")
ROW_FIELDS = HASHED_FIELDS + ("prev_hash", "hash")
_FIXED = ("bundle.json", "events.jsonl", "checkpoints.jsonl", "README.txt")
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
with its file app/audit/bundle.py alone and the Python package `cryptography`:

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


def matches(row, request):
    """Say whether an event (as a bundle holds it) is in the request's time range, of its user and its session."""
    return (request["from"] <= row["occurred_at"] <= request["to"]
            and (not request.get("user") or row["actor"] == request["user"])
            and (not request.get("session") or row["session_id"] == request["session"]))


def row_hash(row):
    """Return sha256(prev_hash || canonical(row)) for an event as a bundle holds it (time already in ISO form)."""
    body = {name: row.get(name) for name in HASHED_FIELDS}
    body["details"] = body["details"] or {}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(str(row["prev_hash"]).encode() + text.encode()).hexdigest()
    except (KeyError, TypeError, ValueError):
        return None


def checkpoint_bytes(head_id, head_hash, signed_at, key):
    """Return the bytes a checkpoint's signature covers."""
    return f"gatehouse-audit-checkpoint-v1\n{head_id}\n{head_hash}\n{signed_at}\n{key}\n".encode("utf-8")


def key_id(public):
    """Return the first 16 hex digits of the SHA-256 of a public key's 32 raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def parse_public_key(text):
    """Return an Ed25519 public key from base64 of its 32 bytes or PEM, the text or a file; raise ValueError."""
    text = text.strip()
    if not text.startswith("-----BEGIN") and os.path.isfile(text):
        text = Path(text).read_text().strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode("ascii"))
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the public key is not an Ed25519 key")
        return key
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


# --- checking (no Flask, no database) -------------------------------------------------------------------------


@dataclass
class BundleVerdict:
    """What check() found: the events, how many selected, checkpoints, recordings, problems and notes."""

    path: str
    events: int = 0
    selected: int = 0
    first_id: int | None = None
    last_id: int | None = None
    checkpoint_id: int | None = None
    recordings: int = 0
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def __str__(self):
        what = (f"{self.events} events ({self.selected} selected), ids {self.first_id}..{self.last_id}, "
                f"covered by checkpoint event {self.checkpoint_id}, {self.recordings} recordings verified")
        if self.problems:
            return f"BUNDLE FAILED ({len(self.problems)} listed above): {self.path}"
        return f"OK: bundle {self.path}: {what}"


def check(path, public=None):
    """Check an evidence bundle with a public key (else the one inside it, said so); return a BundleVerdict."""
    verdict = BundleVerdict(str(path))
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        verdict.problems.append(f"BUNDLE {path}: not a readable zip file ({exc})")
        return verdict
    with archive:
        names = archive.namelist()
        for name in sorted({name for name in names if names.count(name) > 1}):
            verdict.problems.append(f"BUNDLE {name}: appears more than once (only one copy is read)")
        for name in _FIXED[:3]:
            if name not in names:
                verdict.problems.append(f"BUNDLE {name}: missing")
        if verdict.problems:
            return verdict
        meta = _json_entry(archive, "bundle.json", verdict)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("request"), dict):
            verdict.problems.append(f"BUNDLE bundle.json: not a {FORMAT} description")
            return verdict
        public = public or _key_of(meta, verdict)
        signed = _checkpoints(archive, public, verdict)
        seals = _walk(archive, meta["request"], signed, verdict)
        _recordings(archive, names, seals, verdict)
    return verdict


def _json_entry(archive, name, verdict):
    """Return one JSON member of the bundle, or None (named as a problem)."""
    try:
        return json.loads(archive.read(name).decode("utf-8"))
    except (ValueError, zipfile.BadZipFile, OSError) as exc:
        verdict.problems.append(f"BUNDLE {name}: cannot be read ({exc})")
        return None


def _lines(archive, name, verdict):
    """Yield (line number, object) of a JSON Lines member; a line that is not a JSON object is named."""
    try:
        with archive.open(name) as handle:
            for number, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                except ValueError:
                    line = None
                if isinstance(line, dict):
                    yield number, line
                else:
                    verdict.problems.append(f"BUNDLE {name} line {number}: not a JSON object")
    except (zipfile.BadZipFile, OSError) as exc:  # a member whose bytes were changed fails its CRC
        verdict.problems.append(f"BUNDLE {name}: cannot be read ({exc})")


def _key_of(meta, verdict):
    """Return the public key the bundle carries, with a note that it proves nothing by itself."""
    try:
        public = parse_public_key(str(meta.get("public_key", "")))
    except ValueError:
        verdict.problems.append("BUNDLE bundle.json: no usable public key inside, and none given (--pubkey)")
        return None
    verdict.notes.append(f"the public key was taken from the bundle itself (key id {key_id(public)}): "
                         "compare it with the one kept elsewhere (`flask audit pubkey`), or pass --pubkey; whoever "
                         "made a forged bundle would have put their own key in it")
    return public


def _checkpoints(archive, public, verdict):
    """Check each checkpoint's signature; return {head_id: (event_id, head_hash)} of those that verify."""
    signed = {}
    for number, line in _lines(archive, "checkpoints.jsonl", verdict):
        name = f"CHECKPOINT event {line.get('event_id')}"
        if not isinstance(line.get("head_id"), int) or not all(
                isinstance(line.get(k), str) for k in ("head_hash", "signed_at", "key_id", "signature")):
            verdict.problems.append(f"{name}: malformed (line {number} of checkpoints.jsonl)")
            continue
        if public is None:
            continue
        if line["key_id"] != key_id(public):
            verdict.problems.append(f"{name}: signed by key {line['key_id']}, not by the given key {key_id(public)}")
            continue
        try:
            public.verify(base64.b64decode(line["signature"], validate=True), checkpoint_bytes(
                line["head_id"], line["head_hash"], line["signed_at"], line["key_id"]))
        except (InvalidSignature, ValueError):
            verdict.problems.append(f"{name}: its signature does not verify (forged or altered)")
            continue
        signed[line["head_id"]] = (line.get("event_id"), line["head_hash"])
    if not signed and public is not None and not verdict.problems:
        verdict.problems.append("BUNDLE checkpoints.jsonl: holds no checkpoint")
    return signed


def _walk(archive, request, signed, verdict):
    """Check each event's hash, link, id, selection and the signed end; return the selected sessions' seals."""
    previous, seals = None, {}
    for _, row in _lines(archive, "events.jsonl", verdict):
        row_id = row.get("id")
        if not isinstance(row_id, int) or any(name not in row for name in ROW_FIELDS):
            verdict.problems.append(f"EVENT {row_id}: fields missing")
            continue
        name = f"EVENT {row_id}"
        if previous is not None and row_id != previous["id"] + 1:
            gap = f"{previous['id'] + 1}..{row_id - 1}" if row_id > previous["id"] + 1 else "out of order"
            verdict.problems.append(f"{name}: events {gap} are missing from the bundle (removed?)")
        elif previous is not None and row["prev_hash"] != previous["hash"]:
            verdict.problems.append(f"{name}: does not link to the event before it")
        if row_hash(row) != row["hash"]:
            verdict.problems.append(f"{name}: its content was altered (its hash does not recompute)")
        if row_id in signed and signed[row_id][1] != row["hash"]:
            verdict.problems.append(f"{name}: its hash is not the one checkpoint event {signed[row_id][0]} signed")
        try:
            wanted = matches(row, request)
        except (KeyError, TypeError):
            wanted = None
        if row.get("selected") is not wanted:
            verdict.problems.append(f"{name}: marked selected={row.get('selected')}, but the request in bundle.json "
                                    f"gives {wanted}")
        if wanted:
            verdict.selected += 1
            seal = (row["details"] or {}).get("recording") if isinstance(row["details"], dict) else None
            if row["action"] == "session.ended" and isinstance(seal, dict) and seal.get("sha256"):
                seals[row["session_id"]] = (row_id, seal)
        verdict.events += 1
        verdict.first_id = verdict.first_id if verdict.first_id is not None else row_id
        previous = row
    if previous is None:
        verdict.problems.append("BUNDLE events.jsonl: holds no event")
        return seals
    verdict.last_id = previous["id"]
    end = signed.get(previous["id"])
    if end is None or end[1] != previous["hash"]:
        verdict.problems.append(f"EVENT {previous['id']}: the last event of the bundle is not the head of a "
                                "checkpoint that verifies: nothing signed vouches for the segment")
    else:
        verdict.checkpoint_id = end[0]
    for head_id, (event_id, _) in sorted(signed.items()):
        if not verdict.first_id <= head_id <= verdict.last_id:
            verdict.problems.append(f"CHECKPOINT event {event_id}: signs event {head_id}, which is not in the bundle "
                                    "(events removed from its end?)")
    if not verdict.selected:
        verdict.problems.append("BUNDLE events.jsonl: no event is selected")
    return seals


def _recordings(archive, names, seals, verdict):
    """Check every sealed recording against its seal, and name recordings nothing in the bundle seals."""
    for session_id, (event_id, seal) in sorted(seals.items()):
        member = f"recordings/{session_id}.cast"
        if member not in names:
            verdict.problems.append(f"RECORDING {session_id}: missing (sealed by event {event_id})")
            continue
        digest, size = hashlib.sha256(), 0
        try:
            with archive.open(member) as handle:
                while piece := handle.read(1024 * 1024):
                    digest.update(piece)
                    size += len(piece)
        except (zipfile.BadZipFile, OSError) as exc:
            verdict.problems.append(f"RECORDING {session_id}: cannot be read ({exc})")
            continue
        if digest.hexdigest() != seal.get("sha256") or size != seal.get("bytes"):
            verdict.problems.append(f"RECORDING {session_id}: {size} bytes with SHA-256 {digest.hexdigest()}, but "
                                    f"event {event_id} seals {seal.get('bytes')} bytes with {seal.get('sha256')} "
                                    "(altered)")
        else:
            verdict.recordings += 1
    expected = set(_FIXED) | {f"recordings/{session_id}.cast" for session_id in seals}
    for name in names:
        if name not in expected and not name.endswith("/"):
            verdict.problems.append(f"BUNDLE {name}: nothing selected in the bundle seals or explains it")


def main(argv=None):
    """Check a bundle from the command line: print notes, problems and a last line; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m app.audit.bundle", description="Check a Gatehouse evidence "
                                     "bundle offline.")
    parser.add_argument("file")
    parser.add_argument("--pubkey", help="the trail's public key: base64 of 32 bytes, PEM, or a file holding one")
    args = parser.parse_args(argv)
    try:
        public = parse_public_key(args.pubkey) if args.pubkey else None
    except ValueError as exc:
        parser.error(f"--pubkey is neither base64 of 32 bytes nor PEM: {exc}")
    return report(check(args.file, public))


def report(verdict, echo=print):
    """Print a verdict's notes, problems and last line; return the exit code."""
    for note in verdict.notes:
        echo(f"note: {note}")
    for problem in verdict.problems:
        echo(problem)
    echo(str(verdict))
    return 1 if verdict.problems else 0


# --- writing (in the app) ------------------------------------------------------------------------------------
# The app's parts are imported inside these functions, not at the top, so that the checking half above runs
# with the standard library and `cryptography` alone (this file can even be copied to the auditor's machine).


def write(out, start, end, user=None, session=None):
    """Write the bundle of the events in [start, end] (of one user, of one session) to out; return what it holds."""
    from flask import current_app

    from app.dbtypes import iso_utc, now_utc
    from app.signals import recordings_requested

    from . import checkpoints
    from .events import record
    from .integrity import snapshot

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
                "key_id": checkpoints.key_id(public), "public_key": checkpoints.public_text(public), "notes": notes}
        bundle.writestr("bundle.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
        bundle.writestr("README.txt", README.format(format=FORMAT))
    digest, size = _file_hash(out)
    summary = {**request, **counts, "checkpoints": len(signed), "recordings": len(recordings),
               "file": os.path.basename(out), "sha256": digest, "bytes": size}
    record("audit.bundled", f"wrote an evidence bundle of {counts['selected']} events ({request['from']} to "
           f"{request['to']}" + (f", user {user}" if user else "") + (f", session {session}" if session else "")
           + f") with {len(recordings)} recordings", actor="console", details=summary)
    return summary, notes


def _selected_ids(conn, start, end, user, session, upto):
    """Return the first and last id of the events asked for, up to the signed head; raise BundleError if none."""
    from sqlalchemy import func, select

    from .models import AuditEvent

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
    from sqlalchemy import select

    from .checkpoints import ACTION, FIELDS
    from .models import AuditEvent

    rows = conn.execute(select(AuditEvent.id, AuditEvent.details)
                        .where(AuditEvent.action == ACTION, AuditEvent.id > first, AuditEvent.id <= newest)
                        .order_by(AuditEvent.id)).all()
    found = []
    for row in rows:
        details = row.details if isinstance(row.details, dict) else json.loads(row.details)
        line = {"event_id": row.id, **{name: details.get(name) for name in FIELDS}}
        if isinstance(line["head_id"], int) and line["head_id"] >= first:
            found.append(line)
            if line["head_id"] >= last:
                return found
    raise BundleError(f"no checkpoint covers event {last}")


def _write_events(bundle, conn, first, upto, request):
    """Write the segment first..upto as events.jsonl, marking the selected; return counts and the selected seals."""
    from sqlalchemy import select

    from .events import plain
    from .models import AuditEvent

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


def _file_hash(path):
    """Return the SHA-256 and size of a file, read piece by piece."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while piece := handle.read(1024 * 1024):
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size


if __name__ == "__main__":
    sys.exit(main())
