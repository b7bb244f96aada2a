"""Read an OpenSSH client config (ssh_config(5)) into device candidates: one per name on a Host line.

As ssh does, the first value found for a keyword wins, and a Host pattern (`*`, `?`, `!`) or the lines before the
first Host give values to the names they match; the patterns themselves are no devices. HostName, User and Port
are read; IdentityFile only by its name (no file is ever read: the key is set afterwards); other keywords are listed
as ignored. Include and Match are refused: one names files on the client's disk, the other conditions only the
client can evaluate. Nothing here knows Flask.
"""
import re
import shlex
from dataclasses import dataclass, field

KEYWORDS = {"hostname": "host", "user": "username", "port": "port", "identityfile": "identity"}
INCLUDE = ("Include is not followed: Gatehouse reads no file from its own disk. Paste the included file's "
           "content instead.")
MATCH = ("Match blocks are not imported: their conditions are evaluated by the ssh client. The lines up to the next "
         "Host are skipped.")
_KEYWORD_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?:\s*=\s*|\s+|$)(.*)$")
_SHOWN_LINES = 5  # line numbers listed per ignored keyword


@dataclass
class Candidate:
    """A device named by the file, before the rules: its line, name and raw values (lines: where each was set)."""

    line: int
    name: str
    values: dict
    note: str = ""
    problem: str | None = None
    lines: dict = field(default_factory=dict)


def _pattern(text):
    """Return a compiled ssh host pattern: * any run of characters, ? one, case-insensitive."""
    return re.compile("".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in text),
                      re.IGNORECASE)


@dataclass
class _Block:
    """One Host block: its patterns and the first value of each keyword read in it, with the line."""

    patterns: list
    values: dict = field(default_factory=dict)

    def __post_init__(self):
        self._yes = [_pattern(p) for p in self.patterns if not p.startswith("!")]
        self._no = [_pattern(p[1:]) for p in self.patterns if p.startswith("!")]

    def names(self):
        """Return the plain names on the Host line: each is a device."""
        return [p for p in self.patterns if not set(p) & set("*?!")]

    def wildcards(self):
        """Return the patterns on the Host line."""
        return [p for p in self.patterns if set(p) & set("*?!")]

    def matches(self, name):
        """Say whether the block applies to a host name, as ssh decides it."""
        return any(p.fullmatch(name) for p in self._yes) and not any(p.fullmatch(name) for p in self._no)


def _unquote(value):
    """Return a value without the double quotes around it."""
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _host_block(value):
    """Return (block, problem) for the value of a Host line."""
    try:
        patterns = shlex.split(value)
    except ValueError:
        return _Block([]), "The Host line has a quote that is not closed."
    if not patterns:
        return _Block([]), "The Host line names no host."
    return _Block(patterns), None


def parse_ssh_config(text):
    """Return (candidates, ignored words) of an OpenSSH client config, candidates in the order of their lines."""
    blocks = [_Block(["*"])]  # the lines before the first Host apply to every host
    names, refused, ignored, wildcards = [], [], {}, []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = _KEYWORD_LINE.match(line)
        keyword, value = found.groups() if found else (line[:20], "")
        key = keyword.lower()
        if key == "host":
            block, problem = _host_block(value)
            if problem:
                refused.append(Candidate(number, line[:60], {}, problem=problem))
            blocks.append(block)
            names += [(name, number) for name in block.names()]
            wildcards += [f"{pattern} (line {number})" for pattern in block.wildcards()]
        elif key in ("match", "include"):
            refused.append(Candidate(number, line[:60], {}, problem=MATCH if key == "match" else INCLUDE))
            if key == "match":
                blocks.append(_Block([]))  # its lines apply to nothing
        elif key in KEYWORDS:
            blocks[-1].values.setdefault(KEYWORDS[key], (_unquote(value), number))
        else:
            ignored.setdefault(key, (keyword if found else "unreadable line", []))[1].append(number)
    candidates = sorted([_candidate(name, number, blocks) for name, number in names] + refused, key=lambda c: c.line)
    return candidates, _ignored_words(ignored, wildcards)


def _expand(host, name):
    """Return (HostName with %h and %% expanded, problem)."""
    other = re.search(r"%[^h%]", host)
    if other:
        return host, f"The HostName uses {other.group()}, which only the ssh client expands."
    return re.sub(r"%[h%]", lambda m: name if m.group() == "%h" else "%", host), None


def _candidate(name, number, blocks):
    """Return the candidate of one name on a Host line, with the values of every block that matches it."""
    found = {}
    for block in blocks:
        if block.matches(name):
            for key, value in block.values.items():
                found.setdefault(key, value)
    host, problem = _expand(found.get("host", (name, number))[0], name)
    values = {"name": name, "host": host}
    for key in ("port", "username"):
        if key in found:
            values[key] = found[key][0]
    note = f"key file {found['identity'][0]}: set the key afterwards" if "identity" in found else ""
    return Candidate(number, name, values, note=note, problem=problem,
                     lines={key: line for key, (_, line) in found.items()})


def _ignored_words(ignored, wildcards):
    """Return one sentence per ignored keyword (with its lines), and one for the Host patterns."""
    words = []
    for keyword, lines in ignored.values():
        shown = ", ".join(map(str, lines[:_SHOWN_LINES])) + (", …" if len(lines) > _SHOWN_LINES else "")
        words.append(f"{keyword} (line{'s' if len(lines) > 1 else ''} {shown})")
    if wildcards:
        words.append("Host patterns, which give their values to the names they match and are no devices: "
                     + ", ".join(wildcards[:_SHOWN_LINES]) + (", …" if len(wildcards) > _SHOWN_LINES else ""))
    return words
