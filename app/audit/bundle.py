"""Checking an evidence bundle offline: one zip file, checked with the public key alone.

check() reads only the file and needs the standard library, `cryptography` and app/audit/chain.py (the chain's
format), never Flask or the database: `python -m app.audit.bundle FILE --pubkey KEY`, or this file and chain.py
copied side by side to the auditor's machine and run as a script. app/audit/bundle_writer.py writes bundles in
the app. docs/audit.md, *Evidence bundles*, has the format and what a check proves.
"""
import argparse
import hashlib
import json
import sys
import zipfile
from dataclasses import dataclass, field

if __package__:
    from .chain import FORGED, ROW_FIELDS, WRONG_KEY, BadKey, checkpoint_bytes, json_lines, key_id, link_hash
    from .chain import parse_public_key, signature_fault
else:  # run as a script: chain.py was copied beside this file
    from chain import FORGED, ROW_FIELDS, WRONG_KEY, BadKey, checkpoint_bytes, json_lines, key_id, link_hash
    from chain import parse_public_key, signature_fault

FORMAT = "gatehouse-evidence-bundle-v1"
FIXED = ("bundle.json", "events.jsonl", "checkpoints.jsonl", "README.txt")


def matches(row, request):
    """Say whether an event (as a bundle holds it) is in the request's time range, of its user and its session."""
    return (request["from"] <= row["occurred_at"] <= request["to"]
            and (not request.get("user") or row["actor"] == request["user"])
            and (not request.get("session") or row["session_id"] == request["session"]))


def row_hash(row):
    """Return the hash an event as a bundle holds it (time already in ISO form) should carry, or None."""
    try:
        return link_hash(str(row["prev_hash"]), row)
    except (KeyError, TypeError, ValueError):
        return None


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
        for name in FIXED[:3]:
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
            for number, line in json_lines(handle):
                if line is not None:
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
        fault = signature_fault(public, line["key_id"], line["signature"], checkpoint_bytes(
            line["head_id"], line["head_hash"], line["signed_at"], line["key_id"]))
        if fault == WRONG_KEY:
            verdict.problems.append(f"{name}: signed by key {line['key_id']}, not by the given key {key_id(public)}")
            continue
        if fault == FORGED:
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
        _check_event(row, previous, signed, verdict)
        if _check_selection(row, request, verdict):
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
    _check_end(previous, signed, verdict)
    return seals


def _check_event(row, previous, signed, verdict):
    """Name an event that does not follow the one before, whose hash does not recompute, or that a checkpoint denies."""
    name, row_id = f"EVENT {row['id']}", row["id"]
    if previous is not None and row_id != previous["id"] + 1:
        gap = f"{previous['id'] + 1}..{row_id - 1}" if row_id > previous["id"] + 1 else "out of order"
        verdict.problems.append(f"{name}: events {gap} are missing from the bundle (removed?)")
    elif previous is not None and row["prev_hash"] != previous["hash"]:
        verdict.problems.append(f"{name}: does not link to the event before it")
    if row_hash(row) != row["hash"]:
        verdict.problems.append(f"{name}: its content was altered (its hash does not recompute)")
    if row_id in signed and signed[row_id][1] != row["hash"]:
        verdict.problems.append(f"{name}: its hash is not the one checkpoint event {signed[row_id][0]} signed")


def _check_selection(row, request, verdict):
    """Return whether the request selects an event; name an event marked otherwise."""
    try:
        wanted = matches(row, request)
    except (KeyError, TypeError):
        wanted = None
    if row.get("selected") is not wanted:
        verdict.problems.append(f"EVENT {row['id']}: marked selected={row.get('selected')}, but the request in "
                                f"bundle.json gives {wanted}")
    return wanted


def _check_end(last, signed, verdict):
    """Name a segment whose last event no verified checkpoint signs, and checkpoints that sign outside it."""
    verdict.last_id = last["id"]
    end = signed.get(last["id"])
    if end is None or end[1] != last["hash"]:
        verdict.problems.append(f"EVENT {last['id']}: the last event of the bundle is not the head of a "
                                "checkpoint that verifies: nothing signed vouches for the segment")
    else:
        verdict.checkpoint_id = end[0]
    for head_id, (event_id, _) in sorted(signed.items()):
        if not verdict.first_id <= head_id <= verdict.last_id:
            verdict.problems.append(f"CHECKPOINT event {event_id}: signs event {head_id}, which is not in the bundle "
                                    "(events removed from its end?)")
    if not verdict.selected:
        verdict.problems.append("BUNDLE events.jsonl: no event is selected")


def _recordings(archive, names, seals, verdict):
    """Check every sealed recording against its seal, and name recordings nothing in the bundle seals."""
    for session_id, (event_id, seal) in sorted(seals.items()):
        member = f"recordings/{session_id}.cast"
        if member not in names:
            verdict.problems.append(f"RECORDING {session_id}: missing (sealed by event {event_id})")
            continue
        try:
            with archive.open(member) as handle:
                digest, size = file_digest(handle)
        except (zipfile.BadZipFile, OSError) as exc:
            verdict.problems.append(f"RECORDING {session_id}: cannot be read ({exc})")
            continue
        if digest != seal.get("sha256") or size != seal.get("bytes"):
            verdict.problems.append(f"RECORDING {session_id}: {size} bytes with SHA-256 {digest}, but "
                                    f"event {event_id} seals {seal.get('bytes')} bytes with {seal.get('sha256')} "
                                    "(altered)")
        else:
            verdict.recordings += 1
    expected = set(FIXED) | {f"recordings/{session_id}.cast" for session_id in seals}
    for name in names:
        if name not in expected and not name.endswith("/"):
            verdict.problems.append(f"BUNDLE {name}: nothing selected in the bundle seals or explains it")


def file_digest(handle):
    """Return the SHA-256 (hex) and size of what an open binary file holds, read piece by piece."""
    digest, size = hashlib.sha256(), 0
    while piece := handle.read(1024 * 1024):
        digest.update(piece)
        size += len(piece)
    return digest.hexdigest(), size


def main(argv=None):
    """Check a bundle from the command line: print notes, problems and a last line; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m app.audit.bundle", description="Check a Gatehouse evidence "
                                     "bundle offline.")
    parser.add_argument("file")
    parser.add_argument("--pubkey", help="the trail's public key: base64 of 32 bytes, PEM, or a file holding one")
    args = parser.parse_args(argv)
    try:
        public = parse_public_key(args.pubkey) if args.pubkey else None
    except BadKey as exc:
        parser.error(f"--pubkey: {exc}")
    return report(check(args.file, public))


def report(verdict, echo=print):
    """Print a verdict's notes, problems and last line; return the exit code."""
    for note in verdict.notes:
        echo(f"note: {note}")
    for problem in verdict.problems:
        echo(problem)
    echo(str(verdict))
    return 1 if verdict.problems else 0


if __name__ == "__main__":
    sys.exit(main())
