"""The archive of pruned events: immutable gzip JSON Lines files, each prune batch sealed by a signed manifest.

A batch of rows about to be pruned becomes one file per UTC day, `audit-YYYY-MM-DD-<first>-<last>.jsonl.gz`,
and then one manifest, `audit-<first>-<last>.manifest.json`, that lists them with their SHA-256 and is
signed with the checkpoint key. Nothing is ever appended to a file once written, so its hash can be signed
once. archive_check.py checks an archive; docs/audit.md, *Archive manifests*, has the format and what it checks.
"""
import base64
import gzip
import hashlib
import json
import os
import re
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from app.dbtypes import iso_utc, now_utc
from app.extensions import db

from . import checkpoints
from .chain import key_id
from .models import AuditEvent

FORMAT = "gatehouse-audit-archive-v1"
_COLUMNS = [c for c in AuditEvent.__table__.columns]
DATA_NAME = re.compile(r"^audit-\d{4}-\d{2}-\d{2}-(\d+)-(\d+)\.jsonl\.gz$")
OLD_DATA_NAME = re.compile(r"^audit-\d{4}-\d{2}-\d{2}\.jsonl\.gz$")  # appended per day before manifests existed
MANIFEST_NAME = re.compile(r"^audit-(\d+)-(\d+)\.manifest\.json$")


def signed_bytes(manifest):
    """Return the bytes a manifest's signature covers: its fields but the signature, as canonical JSON."""
    body = {name: value for name, value in manifest.items() if name != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def write(folder, after_id, upto_id):
    """Archive the rows after_id < id <= upto_id: the day files, then their signed manifest; return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = db.session.execute(
        select(*_COLUMNS).where(AuditEvent.id > after_id, AuditEvent.id <= upto_id).order_by(AuditEvent.id)
    ).mappings().all()
    db.session.rollback()
    rows = _not_yet_archived(folder, rows)
    if not rows:
        return []
    by_day = {}
    for row in rows:
        line = {key: (iso_utc(value) if isinstance(value, datetime) else value) for key, value in row.items()}
        by_day.setdefault(row["occurred_at"].strftime("%Y-%m-%d"), []).append(line)
    files, paths = [], []
    for day, lines in by_day.items():
        name = f"audit-{day}-{lines[0]['id']}-{lines[-1]['id']}.jsonl.gz"
        text = "".join(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n" for line in lines)
        data = gzip.compress(text.encode("utf-8"), mtime=0)  # the same rows always give the same bytes
        _write_durably(folder / name, data)
        files.append({"name": name, "first_id": lines[0]["id"], "last_id": lines[-1]["id"], "count": len(lines),
                      "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        paths.append(str(folder / name))
    key = checkpoints.signing_key()
    manifest = {"format": FORMAT, "first_id": rows[0]["id"], "last_id": rows[-1]["id"], "count": len(rows),
                "prev_hash": rows[0]["prev_hash"], "last_hash": rows[-1]["hash"], "files": files,
                "created_at": iso_utc(now_utc()), "key_id": key_id(key.public_key())}
    manifest["signature"] = base64.b64encode(key.sign(signed_bytes(manifest))).decode("ascii")
    name = f"audit-{manifest['first_id']}-{manifest['last_id']}.manifest.json"
    _write_durably(folder / name, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    paths.append(str(folder / name))
    return paths


def _not_yet_archived(folder, rows):
    """Drop the leading rows that a prune interrupted before its delete already archived under a manifest."""
    # Its rows were never deleted, so they come again; archiving them twice would make manifests overlap.
    while rows:
        first, done = rows[0]["id"], None
        for path in folder.glob(f"audit-{first}-*.manifest.json"):
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
                last = manifest["last_id"]
                if first <= last <= rows[-1]["id"] and rows[last - first]["hash"] == manifest["last_hash"]:
                    done = max(done or last, last)
            except (OSError, ValueError, KeyError, TypeError, IndexError):
                continue  # not a manifest this batch can rely on: write the rows again, verify will tell
        if done is None:
            return rows
        rows = rows[done - first + 1:]
    return rows


def _write_durably(path, data):
    """Write a whole file under a temporary name, fsync it, rename it into place and fsync the folder."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
