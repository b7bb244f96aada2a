"""Signed checkpoints: the chain head signed with an Ed25519 key kept outside the database."""
import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import current_app
from sqlalchemy import func, select, type_coerce
from sqlalchemy.types import NullType

from app.dbtypes import iso_utc, now_utc
from app.extensions import db

from .chain import CHECKPOINT_FIELDS, WRONG_KEY, BadKey, checkpoint_bytes, json_lines, key_id, signature_fault
from .events import record
from .integrity import snapshot
from .models import AuditChainHead, AuditEvent

log = logging.getLogger("gatehouse.audit")
ACTION = "audit.checkpoint"


def key_path():
    """Return the path of the signing key file (AUDIT_SIGNING_KEY, else beside the secret key)."""
    config = current_app.config
    return Path(config.get("AUDIT_SIGNING_KEY") or Path(config["INSTANCE_DIR"]) / "audit_signing_key")


def checkpoint_file():
    """Return the path of the file every checkpoint is also appended to."""
    config = current_app.config
    return Path(config.get("AUDIT_CHECKPOINT_FILE") or Path(config["INSTANCE_DIR"]) / "audit_checkpoints.jsonl")


def signing_key(create=True):
    """Return the private key from its file, generated there (0600, folder 0700) on first use; None if absent."""
    path = key_path()
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BadKey(f"AUDIT_SIGNING_KEY {path} is not an Ed25519 private key")
    return key


def checkpoint(force=False):
    """Sign the chain head and record it as audit.checkpoint; return the details, or None if the head stayed put."""
    key = signing_key()
    last = db.session.scalar(select(func.max(AuditEvent.id)).where(AuditEvent.action == ACTION))
    head = db.session.execute(select(AuditChainHead.last_id, AuditChainHead.last_hash)
                              .where(AuditChainHead.id == 1)).one()
    db.session.rollback()
    # Nothing was written since the newest checkpoint (it is the head itself): another would only add noise.
    if not force and (head.last_id == 0 or (last is not None and last >= head.last_id)):
        return None
    public = key.public_key()
    details = {"head_id": head.last_id, "head_hash": head.last_hash, "signed_at": iso_utc(now_utc()),
               "key_id": key_id(public)}
    message = checkpoint_bytes(details["head_id"], details["head_hash"], details["signed_at"], details["key_id"])
    details["signature"] = base64.b64encode(key.sign(message)).decode("ascii")
    row = record(ACTION, f"signed the audit trail's head at event {head.last_id}", actor="system", details=details)
    _append_to_file({"event_id": row["id"], **details})
    return {"event_id": row["id"], **details}


def _append_to_file(line):
    """Append one checkpoint to the checkpoint file (0600), so the newest survives rows deleted from the database."""
    path = checkpoint_file()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        # The event is in the trail already; the file is the second copy, so its loss is logged, not raised.
        log.error("could not append the checkpoint to %s: %s", path, exc)


def _decode(raw):
    """Return details as a dict whatever the driver gave (SQLite: text)."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def stored(conn=None):
    """Return the kept audit.checkpoint events as export lines, oldest first."""
    query = (select(AuditEvent.id, type_coerce(AuditEvent.details, NullType()).label("details"))
             .where(AuditEvent.action == ACTION).order_by(AuditEvent.id))
    rows = (conn or db.session).execute(query).all()
    if conn is None:
        db.session.rollback()
    return [{"event_id": row.id, **{k: v for k, v in _decode(row.details).items() if k in CHECKPOINT_FIELDS}}
            for row in rows]


def read_lines(path):
    """Return the checkpoints of a JSON Lines file; a line that is not one is returned as its own problem."""
    found, bad = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in json_lines(handle):
            if line is not None:
                found.append(line)
            else:
                bad.append(f"CHECKPOINT line {number} of {path}: not a JSON object")
    return found, bad


@dataclass
class CheckpointVerdict:
    """What verify_checkpoints() found: how many were checked, whether signatures were, and the problems."""

    checked: int
    signatures_checked: bool
    problems: list
    notes: list


def _signature_problem(line, public):
    """Return why a checkpoint's signature fails, or None."""
    if public is None:
        return None
    message = checkpoint_bytes(line["head_id"], line["head_hash"], line["signed_at"], line["key_id"])
    fault = signature_fault(public, line.get("key_id"), line.get("signature"), message)
    if fault == WRONG_KEY:
        return f"it is signed by key {line.get('key_id')}, not by this trail's key {key_id(public)}"
    return fault and "its signature does not verify (forged or altered)"


def verify_checkpoints(against=(), public=None):
    """Check every kept checkpoint, the checkpoint file's and those of the against files, in one snapshot."""
    notes, problems = [], []
    if public is None:
        private = signing_key(create=False)
        public = private.public_key() if private else None
    if public is None:
        notes.append(f"checkpoint signatures not checked: no signing key at {key_path()} and no --pubkey")
    with snapshot() as conn:
        sources = [("trail", line) for line in stored(conn)] + _file_sources(against, notes, problems)
        oldest, newest = conn.execute(select(func.min(AuditEvent.id), func.max(AuditEvent.id))).one()
        hashes, checkpoint_details = _named_rows(conn, sources)
    seen, top = set(), None
    for source, line in sources:
        identity = json.dumps({k: line.get(k) for k in ("event_id",) + CHECKPOINT_FIELDS}, sort_keys=True)
        if identity in seen:
            continue  # the same checkpoint from the trail and the file: judge it once
        seen.add(identity)
        found = _line_problems(line, source, public, oldest, hashes, checkpoint_details)
        name = f"CHECKPOINT event {line.get('event_id')}" + ("" if source == "trail" else f" (from {source})")
        problems += [f"{name}: {problem}" for problem in found]
        if isinstance(line.get("head_id"), int) and (top is None or line["head_id"] > top[1]["head_id"]):
            top = (name, line)
    if top is not None and top[1]["head_id"] > (newest or 0):
        problems.append(f"{top[0]}: it saw the trail up to event {top[1]['head_id']}, but the trail now ends at "
                        f"event {newest or 0}: the newest rows were deleted and the head rewound")
    # A trail that has no checkpoint yet (a fresh one) has nothing to say about keys and files.
    return CheckpointVerdict(len(seen), public is not None, problems, notes if seen else [])


def _file_sources(against, notes, problems):
    """Return (path, line) of the checkpoint file's lines and the against files'; a missing own file is a note."""
    sources = []
    for path, required in [(checkpoint_file(), False)] + [(Path(p), True) for p in against]:
        if not path.exists() and not required:
            notes.append(f"no checkpoint file at {path}")
            continue
        found, bad = read_lines(path)
        problems += bad
        sources += [(str(path), line) for line in found]
    return sources


def _named_rows(conn, sources):
    """Return {id: hash} of every row a checkpoint names (head or own event), and {id: details} of checkpoints."""
    wanted = sorted({line[name] for _, line in sources for name in ("head_id", "event_id")
                     if isinstance(line.get(name), int)})
    hashes, checkpoint_details = {}, {}
    for start in range(0, len(wanted), 500):
        for row in conn.execute(select(AuditEvent.id, AuditEvent.hash, AuditEvent.action,
                                       type_coerce(AuditEvent.details, NullType()).label("details"))
                                .where(AuditEvent.id.in_(wanted[start:start + 500]))):
            hashes[row.id] = row.hash
            if row.action == ACTION:
                checkpoint_details[row.id] = _decode(row.details)
    return hashes, checkpoint_details


def _line_problems(line, source, public, oldest, hashes, checkpoint_details):
    """Return what one checkpoint contradicts: its signature, the row it names, its own event."""
    if not isinstance(line.get("head_id"), int) or not isinstance(line.get("head_hash"), str) \
            or not isinstance(line.get("signed_at"), str) or not isinstance(line.get("key_id"), str):
        return ["it is malformed (head_id, head_hash, signed_at or key_id missing)"]
    found = []
    bad_signature = _signature_problem(line, public)
    if bad_signature:
        found.append(bad_signature)

    def pruned(row_id):
        # Rows before the oldest kept one went by retention; the chain walk already checks that start.
        return oldest is not None and row_id < oldest

    head_id = line["head_id"]
    if not pruned(head_id):
        if head_id not in hashes:
            found.append(f"it names event {head_id}, which is gone from the trail (the newest rows were deleted?)")
        elif hashes[head_id] != line["head_hash"]:
            found.append(f"it names event {head_id} with hash {line['head_hash']}, but that row's hash is now "
                         f"{hashes[head_id]} (the chain was rewritten)")
    event_id = line.get("event_id")
    if source != "trail" and isinstance(event_id, int) and not pruned(event_id):
        kept = checkpoint_details.get(event_id)
        if event_id not in hashes:
            found.append(f"the checkpoint event {event_id} itself is missing from the trail")
        elif kept is None or kept.get("signature") != line.get("signature"):
            found.append(f"event {event_id} of the trail is not this checkpoint (replaced or altered)")
    return found
