"""Read a device list to import (an OpenSSH client config or CSV) and sort it into a preview: what will be created,
skipped (a name already in the list, or twice in the file) or refused (with the line and the reason).

Nothing here knows Flask. The caller passes the form's own validation (`check`), so a value the device form refuses
is refused here with the same words; the rules below are the ones only a file needs (formulas, shell characters,
look-alike letters).
"""
import csv
import io
import re
from dataclasses import dataclass, field

from .import_ssh import Candidate, parse_ssh_config

MAX_BYTES = 400 * 1024  # under the request (1 MiB) and form-field (500 kB) limits, so this message is the one seen
MAX_LINES = 5000
MAX_DEVICES = 1000  # devices in one import
FORMATS = {"ssh": "OpenSSH client config", "csv": "CSV"}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run as a formula
SHELL_CHARACTERS = set(";|&$`<>(){}\\'\"*?!#~")
_NAME = re.compile(r"[^\W_][\w .:@+#/()-]*")  # starts with a letter or digit: no formula, no markup
_CSV_COLUMNS = {"name": "name", "host": "host", "hostname": "host", "address": "host", "port": "port",
                "user": "username", "username": "username", "folder": "folder", "tags": "tags"}


class ImportProblem(ValueError):
    """The whole file cannot be imported (too large, binary, unreadable); the message says why."""


@dataclass
class Row:
    """One device that will be created."""

    line: int
    name: str
    host: str
    port: int
    username: str
    folder: str | None
    tags: list
    note: str = ""


@dataclass
class Outcome:
    """A line that will be skipped or refused, and why."""

    line: int
    name: str
    reason: str


@dataclass
class Preview:
    """What an import would do."""

    format: str
    create: list = field(default_factory=list)
    skip: list = field(default_factory=list)
    refuse: list = field(default_factory=list)
    ignored: list = field(default_factory=list)  # words about what the file said that is not imported

    @property
    def counts(self):
        """Return the numbers the trail and the page show."""
        return {"created": len(self.create), "skipped": len(self.skip), "refused": len(self.refuse)}


def decode(data):
    """Return the text of an uploaded or pasted file, or raise ImportProblem for one too large or not text."""
    if len(data) > MAX_BYTES:
        raise ImportProblem(f"The file is {len(data) // 1024} KiB; at most {MAX_BYTES // 1024} KiB are imported at "
                            "once. Split it into smaller files.")
    if b"\x00" in data:
        raise ImportProblem("This is a binary file (it holds NUL bytes), not a text file: export the list as CSV "
                            "or copy your ~/.ssh/config.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportProblem(f"The file is not UTF-8 text (byte {exc.start + 1} cannot be read): save it as UTF-8.") \
            from None
    if len(text.splitlines()) > MAX_LINES:
        raise ImportProblem(f"The file has more than {MAX_LINES} lines: split it into smaller files.")
    return text


def detect(text):
    """Return "csv" when the first line that says something is a CSV header naming name and host, else "ssh"."""
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            cells = {cell.strip().strip('"').lower() for cell in re.split(r"[,;]", line)}
            return "csv" if {"name", "host"} <= {_CSV_COLUMNS.get(cell) for cell in cells} else "ssh"
    return "ssh"


def read(text, kind):
    """Return (candidates, ignored words) of a text in the given format, or raise ImportProblem."""
    if kind == "csv":
        candidates, ignored = parse_csv(text)
    else:
        candidates, ignored = parse_ssh_config(text)
        if not candidates:
            raise ImportProblem("No Host line naming a device: this is neither an OpenSSH client config (Host blocks) "
                                "nor a CSV with a header line (name,host,port,user,folder,tags).")
    if len(candidates) > MAX_DEVICES:
        raise ImportProblem(f"The file names {len(candidates)} devices; at most {MAX_DEVICES} are imported at once. "
                            "Split it into smaller files.")
    return candidates, ignored


def _header(row, line):
    """Return the field names of a CSV header row, or raise ImportProblem."""
    names = [_CSV_COLUMNS.get(cell.strip().lower(), "") for cell in row]
    if not {"name", "host"} <= set(names):
        raise ImportProblem(f"Line {line} should be a header naming at least the columns name and host "
                            f"(name,host,port,user,folder,tags); it reads {','.join(row)[:80]!r}.")
    taken = [name for name in names if name]
    if len(taken) != len(set(taken)):
        raise ImportProblem(f"The header on line {line} names a column twice.")
    return names


def parse_csv(text):
    """Return (candidates, ignored words) of a CSV with a header line; tags are split on ';' or spaces."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = ";" if ";" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    names, candidates, ignored = None, [], []
    try:
        start = 1
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if names is None:
                names = _header(row, line)
                ignored = [f"column {cell.strip()!r}" for cell, name in zip(row, names) if not name and cell.strip()]
                continue
            candidates.append(_csv_candidate(row, names, line))
    except csv.Error as exc:
        raise ImportProblem(f"The CSV cannot be read at line {reader.line_num}: {exc}.") from None
    if names is None:
        raise ImportProblem("The file is empty.")
    return candidates, ignored


def _csv_candidate(row, names, line):
    """Return the candidate of one CSV data row."""
    values = {name: cell.strip() for name, cell in zip(names, row) if name}
    candidate = Candidate(line, values.get("name", ""), values)
    if len(row) > len(names) and any(cell.strip() for cell in row[len(names):]):
        candidate.problem = f"{len(row)} cells, but the header names {len(names)} columns."
    values["tags"] = values.get("tags", "").replace(";", " ")
    return candidate


def hostile(values):
    """Return (field, why) when a candidate's values are refused before the form's own rules, else None."""
    for key, label in (("name", "name"), ("host", "host"), ("username", "user"), ("folder", "folder")):
        value = values.get(key) or ""
        if value.startswith(FORMULA_START):
            return key, f"The {label} starts with {value[:1]!r}, which a spreadsheet would run as a formula."
    host = values.get("host") or ""
    if set(host) & SHELL_CHARACTERS:
        shown = " ".join(sorted(set(host) & SHELL_CHARACTERS))
        return "host", f"The host holds shell characters ({shown}): a host is a name or an address, nothing else."
    if any(ch.isspace() for ch in host):
        return "host", "The host holds a space: a host is one name or address."
    if not host.isascii():
        return "host", "The host holds letters outside ASCII (a look-alike letter?): write it in ASCII, an IDN as xn--…"
    name = values.get("name") or ""
    if name and not _NAME.fullmatch(name):
        return "name", ("Not a valid device name: it starts with a letter or digit and holds only letters, digits, "
                        "spaces and . _ - : @ + # / ( ).")
    return None


def preview(kind, candidates, ignored, existing, check, defaults=None):
    """Sort candidates into a Preview.

    existing: the lower-cased names already in the user's list; check(values) returns (clean values, None) or
    (None, (field, the form's message)); defaults fill a missing user or folder. A refusal names the line of the
    value refused (in an ssh config it may be set below the Host line).
    """
    result, seen = Preview(kind, ignored=list(ignored)), {}
    for candidate in candidates:
        given = {key: value for key, value in candidate.values.items() if value not in (None, "")}
        values = {**{key: value for key, value in (defaults or {}).items() if value}, **given}
        problem = ("name", candidate.problem) if candidate.problem else hostile(values)
        clean = None
        if problem is None:
            clean, problem = check(values)
        if problem:
            line = candidate.lines.get(problem[0], candidate.line)
            result.refuse.append(Outcome(line, candidate.name, problem[1]))
            continue
        key = clean["name"].casefold()
        if key in existing:
            result.skip.append(Outcome(candidate.line, clean["name"], "A device of this name is already in your list."))
        elif key in seen:
            result.skip.append(Outcome(candidate.line, clean["name"], f"Also on line {seen[key]}: that one is kept."))
        else:
            seen[key] = candidate.line
            result.create.append(Row(candidate.line, note=candidate.note, **clean))
    result.refuse.sort(key=lambda outcome: outcome.line)
    return result
