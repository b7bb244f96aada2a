"""Where recordings are kept. This module owns the disk-vs-object-store decision: callers ask
open_store(config) for a store and use only the methods of Store, never asking what is behind it.

Two backends offer the same methods: LocalStore, a private folder on this machine (RECORDINGS_DIR), and
S3Store (app.recording.s3store), a bucket of an S3 object store that every node reaches
(RECORDINGS_S3_BUCKET). create appends to a recording being written, repair mends one a dead writer left.
No Flask here.
"""
import os
import re
from pathlib import Path
from typing import BinaryIO, Protocol

_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SUFFIX = ".rec"


class RecordingError(Exception):
    """A recording cannot be written or read."""


def checked_name(name):
    """Return a recording's name when it is a session id; anything else (a path trick) is refused."""
    if not _NAME.match(name or ""):
        raise RecordingError(f"not a recording name: {name!r}")
    return name


def is_name(name):
    """Say whether a stored name is a recording's (a session id)."""
    return bool(_NAME.match(name))


def write_all(handle, data):
    """Write all of data to an unbuffered file: a full disk may take part of it first, then raise."""
    view = memoryview(data)
    while view:
        view = view[handle.write(view):]


class Store(Protocol):
    """What the recorder, the reader, retention and the evidence bundle use of a store."""

    def check(self) -> None:
        """Make sure recordings can be written now, or raise RecordingError saying why."""

    def create(self, name: str) -> BinaryIO:
        """Create a new recording for appending, unbuffered (never an existing one)."""

    def repair(self, name: str, length: int, tail: bytes) -> None:
        """Cut a recording to its first length bytes and append tail, durably (a dead writer's recording)."""

    def open(self, name: str) -> BinaryIO | None:
        """Open a recording for reading, or return None when there is none."""

    def size(self, name: str) -> int | None:
        """Return the stored size in bytes, or None when there is none."""

    def delete(self, name: str) -> bool:
        """Delete a recording; say whether there was one."""

    def names(self) -> list[str]:
        """Return the names of the stored recordings."""


def open_store(config) -> Store:
    """Return the store of session recordings the configuration names (RECORDINGS_S3_BUCKET, else RECORDINGS_DIR)."""
    if config.get("RECORDINGS_S3_BUCKET"):
        from .s3store import S3Store  # boto3 is loaded only where a bucket is used

        return S3Store(config["RECORDINGS_S3_BUCKET"], config.get("RECORDINGS_S3_PREFIX") or "",
                       endpoint=config.get("RECORDINGS_S3_ENDPOINT"), region=config.get("RECORDINGS_S3_REGION"))
    return LocalStore(config["RECORDINGS_DIR"])


class LocalStore:
    """Recordings as files in one private folder (0700, files 0600)."""

    def __init__(self, root):
        self.root = Path(root)

    def path(self, name):
        """Return the file of a recording; only session ids are names (no path tricks)."""
        return self.root / (checked_name(name) + _SUFFIX)

    def check(self):
        """Make sure the folder exists and takes files, or raise RecordingError saying why."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe = self.root / f".probe-{os.getpid()}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
            probe.unlink()
        except OSError as exc:
            raise RecordingError(f"the recordings folder {self.root} is not writable: {exc.strerror or exc}") from None

    def create(self, name):
        """Create a new recording file for appending (never an existing one)."""
        self.check()
        try:
            fd = os.open(self.path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as exc:
            raise RecordingError(f"cannot create recording {name}: {exc.strerror or exc}") from None
        return os.fdopen(fd, "ab", buffering=0)

    def repair(self, name, length, tail):
        """Cut a recording file to length, append tail and sync it to the disk."""
        with open(self.path(name), "r+b", buffering=0) as handle:
            handle.truncate(length)
            handle.seek(length)
            write_all(handle, tail)
            os.fsync(handle.fileno())

    def open(self, name):
        """Open a recording for reading, or return None when there is none."""
        try:
            return open(self.path(name), "rb")
        except FileNotFoundError:
            return None

    def size(self, name):
        """Return the stored size in bytes, or None when there is none."""
        try:
            return self.path(name).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, name):
        """Delete a recording; say whether there was one."""
        try:
            self.path(name).unlink()
            return True
        except FileNotFoundError:
            return False

    def names(self):
        """Return the names of the stored recordings."""
        if not self.root.is_dir():
            return []
        return sorted(p.name[:-len(_SUFFIX)] for p in self.root.iterdir()
                      if p.name.endswith(_SUFFIX) and is_name(p.name[:-len(_SUFFIX)]))
