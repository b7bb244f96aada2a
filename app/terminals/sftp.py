"""The file manager's SFTP side: one SFTP channel per live terminal, on the terminal's own SSH connection.

Nothing here knows Flask. Files (one per terminal) serialises its calls with a lock: paramiko's SFTPClient reads
its answers on whichever thread asks, so two greenlets asking at once could take each other's answers. Errors from
the device become FileError(status, sentence) in one place (refusal). Uploads go to a hidden part file that is
renamed into place only when complete, so a refused or broken upload leaves nothing under the asked name.
"""
import errno
import hashlib
import logging
import posixpath
import secrets
import stat
import threading

import paramiko

log = logging.getLogger("gatehouse.files")

CHUNK = 32 * 1024  # one SFTP read or write: the most OpenSSH's sftp-server takes in one request
MAX_ENTRIES = 5000  # a folder listed shows at most this many entries (sorted, folders first)
MAX_NAME = 255  # bytes of one file name, as most file systems allow
PATIENCE = 60  # seconds one SFTP answer may take before the operation is given up

_held = {}  # session id -> (the terminal's transport, its Files)
_held_lock = threading.Lock()


class FileError(Exception):
    """A file operation that did not happen: an HTTP status and the sentence the person reads."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def refusal(exc, path):
    """Return the FileError that says, in a sentence, why the device refused an operation on path."""
    if isinstance(exc, FileError):
        return exc
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        return FileError(404, f"There is no file or folder {path} on the device.")
    if code in (errno.EACCES, errno.EPERM):
        return FileError(403, f"Permission denied on the device: {path}.")
    if code == errno.ENOSPC:
        return FileError(507, "No space left on the device.")
    if code == errno.ENOTEMPTY:
        return FileError(409, f"The folder {path} is not empty: delete what is in it first.")
    if code == errno.EEXIST:
        return FileError(409, f"{path} already exists.")
    if isinstance(exc, TimeoutError):
        return FileError(504, f"The device did not answer in time about {path}.")
    if isinstance(exc, (EOFError, paramiko.SSHException, ConnectionError)):
        return FileError(410, "The terminal's connection to the device has closed.")
    text = str(exc).strip() or type(exc).__name__
    return FileError(502, f"The device refused the operation on {path}: {text} (a full disk or a file system "
                          "that does not allow it).")


def check_name(name):
    """Return a file name that may be created in a folder, or raise FileError(400) saying why not."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise FileError(400, "A name may not be empty, \".\" or \"..\", nor contain \"/\".")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise FileError(400, f"A name may be at most {MAX_NAME} bytes long.")
    return name


def kind(attributes):
    """Return the type word of a listed entry: folder, file, link or other."""
    mode = attributes.st_mode or 0
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "link"
    return "file" if stat.S_ISREG(mode) else "other"


class Transfer:
    """What passed through the gateway in one upload or download: its size and the SHA-256 of its bytes."""

    def __init__(self):
        self.size, self._hash, self.complete = 0, hashlib.sha256(), False

    def add(self, data):
        """Count and hash one chunk."""
        self.size += len(data)
        self._hash.update(data)

    @property
    def sha256(self):
        """Return the hex SHA-256 of the bytes counted so far."""
        return self._hash.hexdigest()


class Files:
    """One terminal's SFTP channel; every call takes the lock and answers FileError on trouble."""

    def __init__(self, client):
        self.client = client
        self.lock = threading.Lock()
        self._home = None

    def call(self, path, name, *args):
        """Call one SFTPClient method under the lock; raise FileError about path on trouble."""
        return self.do(path, getattr(self.client, name), *args)

    def do(self, path, function, *args):
        """Call function (an SFTP call, or one of an open file's) under the lock; raise FileError on trouble."""
        with self.lock:
            try:
                return function(*args)
            except Exception as exc:
                raise refusal(exc, path) from exc

    def home(self):
        """Return the folder the SFTP server starts in (the log-in's home)."""
        if self._home is None:
            self._home = self.call(".", "normalize", ".")
        return self._home

    def resolve(self, path):
        """Return path made absolute against the home folder and normalised (no '.' or '..' left)."""
        path = (path or "").strip()
        if "\x00" in path:
            raise FileError(400, "A path may not contain a NUL character.")
        return posixpath.normpath(posixpath.join(self.home(), path or "."))

    def listing(self, path):
        """Return (folder, entries) of a folder: name, type, size, modification time (epoch), folders first."""
        folder = self.call(path, "normalize", self.resolve(path))
        if not stat.S_ISDIR(self.call(folder, "stat", folder).st_mode or 0):
            raise FileError(400, f"{folder} is a file, not a folder.")
        entries = [{"name": a.filename, "type": kind(a), "size": a.st_size, "mtime": a.st_mtime}
                   for a in self.call(folder, "listdir_attr", folder)]
        for entry in entries:  # a link says where it leads: into a folder, or to a file
            if entry["type"] == "link":
                target = self._target_kind(posixpath.join(folder, entry["name"]))
                entry["type"] = "link to folder" if target == "folder" else "link"
        entries.sort(key=lambda e: (e["type"] not in ("folder", "link to folder"), e["name"].casefold(), e["name"]))
        return folder, entries[:MAX_ENTRIES], len(entries) > MAX_ENTRIES

    def _target_kind(self, path):
        """Return the type of what a link leads to, or None when it leads nowhere."""
        try:
            return kind(self.call(path, "stat", path))
        except FileError:
            return None

    def exists(self, path):
        """Say whether something (a file, a folder, a link) has this path."""
        try:
            self.call(path, "lstat", path)
        except FileError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def make_folder(self, path):
        """Create a folder; refuse a name that is taken."""
        if self.exists(path):
            raise FileError(409, f"{path} already exists.")
        self.call(path, "mkdir", path)

    def rename(self, path, new_path):
        """Rename (or move) path to new_path; refuse a name that is taken (no silent overwrite)."""
        if not self.exists(path):
            raise FileError(404, f"There is no file or folder {path} on the device.")
        if self.exists(new_path):
            raise FileError(409, f"{new_path} already exists.")
        self.call(path, "rename", path, new_path)

    def delete(self, path):
        """Delete a file or link, or a folder that is empty; return the type deleted and the file's size."""
        attributes = self.call(path, "lstat", path)
        if not stat.S_ISDIR(attributes.st_mode or 0):
            self.call(path, "remove", path)
            return kind(attributes), attributes.st_size
        if self.call(path, "listdir", path):
            raise FileError(409, f"The folder {path} is not empty: delete what is in it first.")
        self.call(path, "rmdir", path)
        return "folder", None

    def receive(self, path, chunks, transfer):
        """Write the chunks (an iterable of bytes) into a new file at path, counting them in transfer.

        They go to a hidden part file beside it, renamed to path once complete; on any failure (the limit, the
        browser gone, the device refusing) the part file is removed and nothing stays under either name.
        """
        if self.exists(path):
            raise FileError(409, f"{path} already exists: rename or delete it first.")
        folder, name = posixpath.split(path)
        part = posixpath.join(folder, f".{name[:200]}.gatehouse-part-{secrets.token_hex(4)}")
        handle = self.call(path, "open", part, "wb")
        try:
            self._write_all(path, handle, chunks, transfer)
            self.call(path, "rename", part, path)  # fails, never overwrites, when path appeared meanwhile
            transfer.complete = True
        finally:
            if not transfer.complete:
                self._forget(part)

    def _write_all(self, path, handle, chunks, transfer):
        """Write every chunk to an open remote file and close it (its close confirms the last write)."""
        try:
            for data in chunks:
                transfer.add(data)
                self.do(path, handle.write, data)
            self.do(path, handle.close)
        except BaseException as exc:
            try:  # a failure to close after a failure is not news: the first one is what the user hears
                self.do(path, handle.close)
            except FileError:
                log.debug("closing %s after a failed upload", path)
            if isinstance(exc, FileError) and exc.status == 502:  # sftp-server says a bare "Failure" for ENOSPC
                raise FileError(507, f"The device could not write {path}: its disk is probably full.") from exc
            raise

    def _forget(self, part):
        """Remove a part file left by a failed upload; a failure to remove it is logged, not raised."""
        try:
            self.call(part, "remove", part)
        except FileError as exc:
            log.warning("could not remove the partial upload %s: %s", part, exc.message)

    def opened(self, path):
        """Open a regular file for reading; return (handle, size)."""
        attributes = self.call(path, "stat", path)
        if stat.S_ISDIR(attributes.st_mode or 0):
            raise FileError(400, f"{path} is a folder: only files can be downloaded.")
        return self.call(path, "open", path, "rb"), attributes.st_size

    def send(self, path, handle, transfer):
        """Yield the file's bytes in chunks, counting them in transfer; close the file at the end, or when dropped."""
        try:
            while True:
                data = self.do(path, handle.read, CHUNK)
                if not data:
                    transfer.complete = True
                    return
                transfer.add(data)
                yield data
        finally:
            self.do(path, handle.close)

    def close(self):
        """Close the SFTP channel (the terminal's SSH connection stays)."""
        try:
            self.client.close()
        except Exception:  # the transport may be gone already
            log.debug("closing an SFTP channel", exc_info=True)


def files_of(session_id, transport):
    """Return the Files of a live terminal's SSH transport, opening its SFTP channel on first use."""
    with _held_lock:
        held = _held.get(session_id)
        if held and held[0] is transport:
            return held[1]
    try:
        client = paramiko.SFTPClient.from_transport(transport)
        if client is None:
            raise paramiko.SSHException("no channel")
    except Exception as exc:
        log.info("no SFTP for session %s: %r", session_id, exc)
        raise FileError(502, "The device offers no SFTP (its SSH server has no sftp subsystem), so its files "
                             "cannot be shown.") from exc
    client.get_channel().settimeout(PATIENCE)
    files = Files(client)
    with _held_lock:
        held = _held.get(session_id)
        if held and held[0] is transport:  # another request opened one meanwhile: keep that one
            spare, files = files, held[1]
        else:
            _held[session_id], spare = (transport, files), None
    if spare is not None:
        spare.close()
    return files


def close_files(session_id):
    """Close the SFTP channel of a terminal that closes (its close path may call this; sweep() does it anyway)."""
    with _held_lock:
        held = _held.pop(session_id, None)
    if held:
        held[1].close()


def sweep(is_live):
    """Close the SFTP channels whose terminal is gone: is_live(session id, transport) says which stay."""
    with _held_lock:
        gone = [sid for sid, (transport, _) in _held.items() if not is_live(sid, transport)]
    for session_id in gone:
        close_files(session_id)
    return len(gone)
