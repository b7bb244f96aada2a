"""Checking the archive of pruned events: every manifest's signature, files, rows and links, and the kept trail.

docs/audit.md, *Archive manifests*, says what verify_archive() checks and what it proves.
"""
import gzip
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from app.extensions import db

from .archive import DATA_NAME, FORMAT, MANIFEST_NAME, OLD_DATA_NAME, signed_bytes
from .chain import WRONG_KEY, key_id, signature_fault
from .events import chain_hash
from .models import GENESIS_HASH, AuditEvent


@dataclass
class ArchiveVerdict:
    """What verify_archive() found: manifests and files checked, the events they hold, problems and notes."""

    manifests: int = 0
    files: int = 0
    events: int = 0
    first_id: int | None = None
    last_id: int | None = None
    last_hash: str | None = None
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def __str__(self):
        held = f"events {self.first_id}..{self.last_id}" if self.events else "no events"
        what = f"{self.manifests} manifests, {self.files} files, {self.events} {held}"
        if self.problems:
            return f"ARCHIVE FAILED ({len(self.problems)} listed above): {what}"
        return f"OK: archive {what}"


def verify_archive(folder, public=None):
    """Check every manifest's signature, its files' SHA-256 and rows, the manifests' chain, and stray files."""
    folder, verdict = Path(folder), ArchiveVerdict()
    if not folder.is_dir():
        verdict.problems.append(f"ARCHIVE {folder}: not a folder")
        return verdict
    if public is None:
        verdict.notes.append("manifest signatures not checked: no signing key and no --pubkey")
    covered, previous = set(), None
    for path in sorted(folder.iterdir(), key=_manifest_order):
        if not MANIFEST_NAME.match(path.name):
            continue
        manifest = _read_manifest(path, verdict)
        if manifest is None:
            continue
        verdict.manifests += 1
        covered.update(entry.get("name") for entry in manifest["files"])
        _check_signature(path.name, manifest, public, verdict)
        _check_files(folder, path.name, manifest, verdict)
        _check_link(path.name, manifest, previous, verdict)
        previous = manifest
    for path in sorted(folder.iterdir()):
        if path.name in covered or MANIFEST_NAME.match(path.name):
            continue
        if OLD_DATA_NAME.match(path.name):
            verdict.notes.append(f"ARCHIVE {path.name}: an older unsigned archive (appended per day): "
                                 "no manifest vouches for it")
        elif DATA_NAME.match(path.name):
            verdict.problems.append(f"ARCHIVE {path.name}: no manifest covers it")
        elif path.name.endswith(".tmp"):
            verdict.notes.append(f"ARCHIVE {path.name}: an unfinished write (a prune was interrupted)")
    return verdict


def _manifest_order(path):
    """Sort manifests by their first id, everything else after them."""
    match = MANIFEST_NAME.match(path.name)
    return (0, int(match.group(1)), path.name) if match else (1, 0, path.name)


def _read_manifest(path, verdict):
    """Return a manifest's JSON if it has every field, else name the problem and return None."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        verdict.problems.append(f"ARCHIVE {path.name}: the manifest cannot be read ({exc})")
        return None
    kinds = {"first_id": int, "last_id": int, "count": int, "prev_hash": str, "last_hash": str, "files": list,
             "key_id": str}
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or any(not isinstance(manifest.get(name), kind) for name, kind in kinds.items()) \
            or not all(isinstance(entry, dict) for entry in manifest["files"]):
        verdict.problems.append(f"ARCHIVE {path.name}: not a {FORMAT} manifest (fields missing or malformed)")
        return None
    return manifest


def _check_signature(name, manifest, public, verdict):
    """Name a manifest whose signature is by another key or does not verify."""
    fault = public and signature_fault(public, manifest["key_id"], manifest.get("signature"), signed_bytes(manifest))
    if fault == WRONG_KEY:
        verdict.problems.append(f"ARCHIVE {name}: signed by key {manifest['key_id']}, not by the given key "
                                f"{key_id(public)}")
    elif fault:
        verdict.problems.append(f"ARCHIVE {name}: its signature does not verify (the manifest was forged or altered)")


def _check_files(folder, name, manifest, verdict):
    """Check each listed file: present, its SHA-256 and size, and the rows inside (hashes, links, ids)."""
    previous = {"id": manifest["first_id"] - 1, "hash": manifest["prev_hash"]}
    for entry in manifest["files"]:
        path = folder / str(entry.get("name"))
        if not path.is_file():
            verdict.problems.append(f"ARCHIVE {entry.get('name')}: missing (listed in {name}, events "
                                    f"{entry.get('first_id')}..{entry.get('last_id')})")
            previous = None  # the next file's first row cannot be linked to anything
            continue
        data = path.read_bytes()
        verdict.files += 1
        if hashlib.sha256(data).hexdigest() != entry.get("sha256") or len(data) != entry.get("bytes"):
            verdict.problems.append(f"ARCHIVE {path.name}: its SHA-256 differs from the one {name} lists "
                                    "(the file was altered)")
        previous = _check_rows(path.name, data, entry, previous, verdict)
    if previous is not None and (previous["id"] != manifest["last_id"] or previous["hash"] != manifest["last_hash"]):
        verdict.problems.append(f"ARCHIVE {name}: its files end at event {previous['id']}, not at event "
                                f"{manifest['last_id']} with the hash it lists")


def _check_rows(file_name, data, entry, previous, verdict):
    """Walk one file's rows: ids in order, each hash recomputed, each linked to the one before; return the last."""
    try:
        lines = [json.loads(text) for text in gzip.decompress(data).decode("utf-8").splitlines() if text.strip()]
    except (OSError, EOFError, ValueError, zlib.error) as exc:  # a flipped byte can break the deflate stream
        verdict.problems.append(f"ARCHIVE {file_name}: cannot be read as gzip JSON Lines ({exc})")
        return None
    count = 0
    for line in lines:
        row_id = line.get("id") if isinstance(line, dict) else None
        if not isinstance(row_id, int):
            verdict.problems.append(f"ARCHIVE {file_name}: a line is not an event")
            return None
        if previous is not None and row_id != previous["id"] + 1:
            verdict.problems.append(f"ARCHIVE {file_name}, event {row_id}: events {previous['id'] + 1}..{row_id - 1}"
                                    " are missing")
        elif previous is not None and line.get("prev_hash") != previous["hash"]:
            verdict.problems.append(f"ARCHIVE {file_name}, event {row_id}: does not link to the event before it")
        if _row_hash(line) != line.get("hash"):
            verdict.problems.append(f"ARCHIVE {file_name}, event {row_id}: its content was altered "
                                    "(its hash does not recompute)")
        previous, count = line, count + 1
        _extend(verdict, line)
    if lines and (lines[0]["id"] != entry.get("first_id") or lines[-1]["id"] != entry.get("last_id")
                  or count != entry.get("count")):
        verdict.problems.append(f"ARCHIVE {file_name}: holds events {lines[0]['id']}..{lines[-1]['id']} ({count}),"
                                f" not {entry.get('first_id')}..{entry.get('last_id')} ({entry.get('count')}) "
                                "as its manifest says")
    return previous


def _row_hash(line):
    """Return the hash a row of an archive file should carry, or None if it cannot be computed."""
    try:
        return chain_hash(line["prev_hash"], {**line, "occurred_at": datetime.fromisoformat(line["occurred_at"])})
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _extend(verdict, line):
    """Count one archived row and move the end of what the archive holds."""
    verdict.events += 1
    if verdict.first_id is None or line["id"] < verdict.first_id:
        verdict.first_id = line["id"]
    if verdict.last_id is None or line["id"] >= verdict.last_id:
        verdict.last_id, verdict.last_hash = line["id"], line.get("hash")


def _check_link(name, manifest, previous, verdict):
    """Name a gap or a broken link between one manifest and the one before it."""
    if previous is None:
        if manifest["first_id"] == 1 and manifest["prev_hash"] != GENESIS_HASH:
            verdict.problems.append(f"ARCHIVE {name}: event 1 does not start from the genesis hash")
        elif manifest["first_id"] != 1:
            verdict.notes.append(f"the archive starts at event {manifest['first_id']}: earlier events were pruned "
                                 "before AUDIT_ARCHIVE_DIR was set, or their manifests are elsewhere")
        return
    expected = previous["last_id"] + 1
    if manifest["first_id"] > expected:
        verdict.problems.append(f"ARCHIVE {name}: events {expected}..{manifest['first_id'] - 1} are in no manifest "
                                "(a manifest was deleted, or a prune was not archived)")
    elif manifest["first_id"] < expected:
        verdict.problems.append(f"ARCHIVE {name}: overlaps the manifest before it (events from "
                                f"{manifest['first_id']} archived twice)")
    elif manifest["prev_hash"] != previous["last_hash"]:
        verdict.problems.append(f"ARCHIVE {name}: does not link to the manifest before it (its first event's "
                                "prev_hash is not that manifest's last hash)")


def check_kept_trail(verdict):
    """Name a break between the archive's last event and the oldest event kept in the database."""
    if verdict.last_id is None:
        return
    oldest = db.session.execute(select(AuditEvent.id, AuditEvent.prev_hash).order_by(AuditEvent.id).limit(1)).first()
    follower = db.session.execute(select(AuditEvent.id, AuditEvent.prev_hash)
                                  .where(AuditEvent.id == verdict.last_id + 1)).first()
    db.session.rollback()
    if follower is not None:
        if follower.prev_hash != verdict.last_hash:
            verdict.problems.append(f"ARCHIVE: event {follower.id} of the trail does not link to the archive's last "
                                    f"event {verdict.last_id}")
    elif oldest is not None and oldest.id > verdict.last_id + 1:
        verdict.problems.append(f"ARCHIVE: events {verdict.last_id + 1}..{oldest.id - 1} are neither archived nor "
                                "in the trail")
    elif oldest is None or oldest.id <= verdict.last_id:
        newest = oldest.id if oldest else None
        verdict.notes.append(f"the trail holds no event after the archive's last event {verdict.last_id}"
                             + (f" (its oldest is {newest}: a prune was interrupted)" if newest else ""))
