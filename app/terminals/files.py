"""The file manager's routes: a live terminal's remote files over SFTP, for the session's owner alone.

Every route finds the terminal in this process (registry.find), refuses anyone but the user who opened it (404:
another user's session does not exist for them, admins included) and a device whose file transfer is off (403),
then works on the terminal's own SSH connection (sftp.py). Uploads and downloads stream in chunks; each operation
is an audit event (file.*) with the path, the size and the SHA-256 of the bytes that passed through, or a failure.
"""
import posixpath
import re
import unicodedata
from datetime import datetime, timezone
from urllib.parse import quote

from flask import Response, abort, current_app, jsonify, make_response, request, stream_with_context
from flask_login import current_user

from app.access import may_transfer_files
from app.audit.events import FAILURE, SUCCESS, record
from app.blocking import release_idle_connection
from app.dbtypes import iso_utc
from app.devices.models import Device
from app.extensions import db

from . import registry, sftp
from .sftp import CHUNK, FileError, Transfer, check_name
from .views import bp

BASE = "/terminals/sessions/<session_id>/files"
NOT_HERE = "This terminal is not open (it ended, or it is not yours), so its files cannot be shown."
OFF = "File transfer is off for this device: an admin can allow it in the device's settings."
WORDS = {"file.uploaded": "upload", "file.downloaded": "download", "file.deleted": "delete",
         "file.renamed": "rename", "file.folder_created": "create folder"}


@bp.url_value_preprocessor
def lift_body_limit(endpoint, _values):
    """Let an upload's body through the app's 1 MB form limit (before CSRF reads the form): upload() checks
    SFTP_MAX_UPLOAD_MB itself, with a clear message and an audit event, and reads the body in chunks."""
    if endpoint == "terminals.upload_file":
        request.max_content_length = 1 << 62


def _refuse(status, message):
    """Stop the request with status and a JSON {"error", "message"} the panel shows (every status, 409 and 507 too)."""
    abort(make_response(jsonify(error=f"{status}", message=message), status))


def _is_live(session_id, transport):
    """Say whether the terminal that opened this SFTP channel is still open in this process."""
    terminal = registry.find(session_id)
    return terminal is not None and terminal.bridge.transport is transport and not terminal.bridge.closed.is_set()


def _terminal(session_id):
    """Return (terminal, Files) of the current user's live terminal, if its device allows file transfer."""
    sftp.sweep(_is_live)  # channels of terminals that closed go first
    terminal = registry.find(session_id)
    if terminal is None or terminal.metadata is None or terminal.user.id != current_user.id \
            or terminal.bridge.closed.is_set():
        _refuse(404, NOT_HERE)
    device = db.session.get(Device, terminal.device.id)
    if device is None:
        _refuse(404, NOT_HERE)
    if not may_transfer_files(current_user, terminal.user.id, device):
        _refuse(403, OFF)
    release_idle_connection()  # no database connection held across the device's answers
    try:
        return terminal, sftp.files_of(session_id, terminal.bridge.transport)
    except FileError as exc:
        _refuse(exc.status, exc.message)


def _audit(action, terminal, path, outcome=SUCCESS, **details):
    """Record one file operation of a session, or its failure (details say why)."""
    target = terminal.metadata.target
    words = f"{WORDS[action]} of {path}" if outcome == FAILURE else f"{action.split('.')[1].replace('_', ' ')} {path}"
    message = f"{'failed: ' if outcome == FAILURE else ''}{words} in the session with {target}"
    record(action, message, outcome=outcome, target=target, session_id=terminal.metadata.id, strict=False,
           details={"session_id": terminal.metadata.id, "path": path, **details})


def _attempt(action, terminal, path, operation, *args):
    """Run one operation; a FileError is recorded as the action's failure and answered with its status."""
    try:
        return operation(*args)
    except FileError as exc:
        if action:
            _audit(action, terminal, path, FAILURE, error=exc.message)
        _refuse(exc.status, exc.message)


def _body():
    """Return the JSON object a POST carried, or answer 400."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        _refuse(400, "Send a JSON object (Content-Type: application/json).")
    return data


def _text(data, key):
    """Return a text field of a JSON body, or answer 400 naming it."""
    value = data.get(key)
    if not isinstance(value, str) or not value:
        _refuse(400, f"The field {key!r} must be a non-empty text.")
    return value


def _name(data):
    """Return the "name" field of a JSON body (a text; check_name judges it), or answer 400."""
    name = data.get("name")
    if not isinstance(name, str):
        _refuse(400, "The field 'name' must be a text.")
    return name


def _entry(folder, item):
    """Return one listed entry as JSON: name, full path, type, size and UTC modification time."""
    mtime = item["mtime"]
    modified = iso_utc(datetime.fromtimestamp(mtime, timezone.utc)) if mtime is not None else None
    return {"name": item["name"], "path": posixpath.join(folder, item["name"]), "type": item["type"],
            "size": item["size"], "modified": modified}


@bp.get(BASE)
def list_files(session_id):
    """List a folder of the session's device (its home when no path is given), folders first."""
    terminal, files = _terminal(session_id)
    folder, entries, truncated = _attempt(None, terminal, request.args.get("path", ""), files.listing,
                                          request.args.get("path", ""))
    return jsonify(path=folder, parent=None if folder == "/" else posixpath.dirname(folder), truncated=truncated,
                   entries=[_entry(folder, item) for item in entries], home=files.home(),
                   max_upload_mb=current_app.config["SFTP_MAX_UPLOAD_MB"])


def _target(files, terminal, action, raw, name=None):
    """Return the absolute path a request names (raw, or name in the folder raw), or answer 400 recorded as action.

    The last part must be a name one may create (check_name): a new name is checked as it was typed."""
    if name is not None:
        _attempt(action, terminal, posixpath.join(raw, name), check_name, name)
        raw = posixpath.join(raw, name)
    path = _attempt(action, terminal, raw or "", files.resolve, raw or "")
    _attempt(action, terminal, path, check_name, posixpath.basename(path))
    return path


@bp.post(BASE + "/folder")
def make_folder(session_id):
    """Create a folder: JSON {"path": folder, "name": new folder's name}."""
    terminal, files = _terminal(session_id)
    data = _body()
    path = _target(files, terminal, "file.folder_created", _text(data, "path"), _name(data))
    _attempt("file.folder_created", terminal, path, files.make_folder, path)
    _audit("file.folder_created", terminal, path)
    return jsonify(path=path), 201


@bp.post(BASE + "/rename")
def rename(session_id):
    """Rename a file or folder within its folder: JSON {"path": what, "name": its new name}."""
    terminal, files = _terminal(session_id)
    data = _body()
    path = _target(files, terminal, "file.renamed", _text(data, "path"))
    new_path = _target(files, terminal, "file.renamed", posixpath.dirname(path), _name(data))
    try:
        files.rename(path, new_path)
    except FileError as exc:
        _audit("file.renamed", terminal, path, FAILURE, new_path=new_path, error=exc.message)
        _refuse(exc.status, exc.message)
    _audit("file.renamed", terminal, path, new_path=new_path)
    return jsonify(path=new_path)


@bp.post(BASE + "/delete")
def delete(session_id):
    """Delete a file, a link or an empty folder: JSON {"path": what}."""
    terminal, files = _terminal(session_id)
    path = _target(files, terminal, "file.deleted", _text(_body(), "path"))
    kind, size = _attempt("file.deleted", terminal, path, files.delete, path)
    _audit("file.deleted", terminal, path, type=kind, size=size)
    return jsonify(path=path, type=kind)


def _chunks(length, limit, transfer):
    """Yield the request body in chunks; stop with FileError when it is longer than allowed or ends early."""
    stream, left = request.stream, length
    while left > 0:
        data = stream.read(min(CHUNK, left))
        if not data:
            break
        left -= len(data)
        if transfer.size + len(data) > limit:  # the bytes counted, not only the header
            raise FileError(413, _too_large(limit))
        yield data  # counted into transfer as it is written
    if left:
        raise FileError(400, f"The upload was interrupted after {length - left} of {length} bytes; nothing was kept.")


def _too_large(limit):
    """Return the sentence for an upload over SFTP_MAX_UPLOAD_MB."""
    return f"The file is larger than the upload limit of {limit // (1024 * 1024)} MB (SFTP_MAX_UPLOAD_MB); nothing " \
           "was kept."


@bp.put(BASE + "/content")
def upload_file(session_id):
    """Store the request body (raw bytes, read in chunks) as a new file at ?path=; refuse one over the limit."""
    terminal, files = _terminal(session_id)
    path = _target(files, terminal, "file.uploaded", request.args.get("path"))
    limit, length = current_app.config["SFTP_MAX_UPLOAD_MB"] * 1024 * 1024, request.content_length
    if length is None:
        _refuse(411, "Send the file with a Content-Length.")
    if length > limit:
        _audit("file.uploaded", terminal, path, FAILURE, size=length, error=_too_large(limit))
        _refuse(413, _too_large(limit))
    transfer = Transfer()
    try:
        files.receive(path, _chunks(length, limit, transfer), transfer)
    except FileError as exc:
        _audit("file.uploaded", terminal, path, FAILURE, size=transfer.size, sha256=transfer.sha256, error=exc.message)
        _refuse(exc.status, exc.message)
    _audit("file.uploaded", terminal, path, size=transfer.size, sha256=transfer.sha256)
    return jsonify(path=path, size=transfer.size, sha256=transfer.sha256), 201


def disposition(name):
    """Return a Content-Disposition for a download named name, safe whatever the name holds (RFC 6266, 5987)."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    plain = re.sub(r"[^A-Za-z0-9._ ()+-]", "_", plain).strip(" .") or "download"
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


@bp.get(BASE + "/content")
def download_file(session_id):
    """Send a file of the device in chunks as it is read; the event records what was sent, and its SHA-256."""
    terminal, files = _terminal(session_id)
    path = _attempt("file.downloaded", terminal, request.args.get("path", ""), files.resolve,
                    request.args.get("path", ""))
    handle, _ = _attempt("file.downloaded", terminal, path, files.opened, path)
    transfer = Transfer()

    def body():
        """Yield the file; record the download once it ended, completely or not."""
        error = "the browser stopped the download"
        try:
            yield from files.send(path, handle, transfer)
        except FileError as exc:
            error = exc.message
        finally:
            if transfer.complete:
                _audit("file.downloaded", terminal, path, size=transfer.size, sha256=transfer.sha256)
            else:
                _audit("file.downloaded", terminal, path, FAILURE, size=transfer.size, sha256=transfer.sha256,
                       error=error)

    headers = {"Content-Disposition": disposition(posixpath.basename(path)), "X-Content-Type-Options": "nosniff",
               "Cache-Control": "no-store"}
    return Response(stream_with_context(body()), mimetype="application/octet-stream", headers=headers)
