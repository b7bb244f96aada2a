"""Bulk import of devices (an OpenSSH client config or CSV: preview, then one confirmation) and the CSV export.

The preview's rows travel to the confirmation signed (itsdangerous, the app's secret key), so what is created is
exactly what the server previewed; a cancelled preview was never stored and leaves no trace.
"""
from flask import Response, current_app, render_template, request
from flask_login import current_user
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import MultiDict

from app.access import user_devices
from app.audit.events import record
from app.auth.models import User
from app.blocking import run_blocking
from app.dbtypes import now_utc
from app.extensions import db

from . import exporting, importing, keys
from .forms import KEY_TYPE_CHOICES, DeviceForm
from .models import AUTH_PASSWORD, Device
from .views import _changes, _snapshot, _store_key, bp

PREVIEW_SECONDS = 3600  # how long a preview may wait for its confirmation
_CHECKED = ("name", "host", "port", "username", "folder", "tags")
_MISSING_USER = "No SSH user: add a User line (a User column), or fill in the SSH user for entries without one."
_STALE = "This preview is too old or was changed, so nothing was created: preview the file again."


def _serializer():
    """Return the signer of previews (its own salt: no other signed value of the app passes for one)."""
    return URLSafeTimedSerializer(current_app.secret_key, salt="gatehouse.devices.import")


def _check(values):
    """Return (clean values, None) by the device form's own rules, or (None, (field, its first message))."""
    if not values.get("username"):
        return None, ("username", _MISSING_USER)
    data = {key: str(value) for key, value in values.items() if key in _CHECKED}
    form = DeviceForm(formdata=MultiDict({**data, "auth_type": AUTH_PASSWORD}), meta={"csrf": False})
    if not form.validate():
        key = next((key for key in _CHECKED if getattr(form, key).errors), "name")
        return None, (key, (getattr(form, key).errors or ["Not accepted."])[0])
    clean = {key: getattr(form, key).data for key in _CHECKED}
    return {**clean, "folder": clean["folder"] or None, "tags": clean["tags"] or []}, None


def _existing():
    """Return the lower-cased names of the devices in the user's list."""
    return {device.name.casefold() for device in user_devices()}


def _form_page(error=None, status=200, **kept):
    """Render the import form, with what was typed kept and an error above it."""
    return render_template("devices/import.html", error=error, max_bytes=importing.MAX_BYTES,
                           max_lines=importing.MAX_LINES, kept=kept), status


def _source():
    """Return the bytes to import: the uploaded file, else the pasted text."""
    upload = request.files.get("file")
    if upload and upload.filename:
        return upload.read(importing.MAX_BYTES + 1)
    return (request.form.get("text") or "").encode()


@bp.get("/import")
def import_page():
    """The import form."""
    return _form_page()


@bp.post("/import")
def import_preview():
    """Read the file or the pasted text and show what an import would create, skip and refuse."""
    kept = {name: (request.form.get(name) or "").strip() for name in ("format", "user", "folder")}
    text = request.form.get("text") or ""
    kept["text"] = text if len(text.encode()) <= importing.MAX_BYTES else ""
    try:
        content = importing.decode(_source())
        if not content.strip():
            raise importing.ImportProblem("Choose a file or paste the list first.")
        kind = kept["format"] if kept["format"] in importing.FORMATS else importing.detect(content)
        candidates, ignored = importing.read(content, kind)
    except importing.ImportProblem as problem:
        return _form_page(str(problem), 422, **kept)
    defaults = {"username": kept["user"], "folder": kept["folder"]}
    preview = importing.preview(kind, candidates, ignored, _existing(), _check, defaults)
    token = _serializer().dumps({"u": current_user.id, "f": kind, "s": len(preview.skip), "x": len(preview.refuse),
                                 "r": [[row.line, row.name, row.host, row.port, row.username, row.folder, row.tags]
                                       for row in preview.create]})
    return render_template("devices/import_preview.html", preview=preview, token=token,
                           format_name=importing.FORMATS[kind], key_types=KEY_TYPE_CHOICES)


def _read_token():
    """Return the signed preview of the current user, or None when it is too old, altered or someone else's."""
    try:
        data = _serializer().loads(request.form.get("preview", ""), max_age=PREVIEW_SECONDS)
    except BadSignature:  # SignatureExpired is one too
        return None
    return data if data.get("u") == current_user.id else None


def _new_devices(rows, pair):
    """Return the devices of the rows, each with the shared key pair when there is one (nothing is stored yet)."""
    devices = []
    for line, name, host, port, username, folder, tags in rows:
        device = Device(name=name, host=host, port=port, username=username, folder=folder, owner_id=current_user.id,
                        auth_type=AUTH_PASSWORD, allow_file_transfer=True)
        device.tags = tags
        if pair:
            _store_key(device, *pair, None)
        devices.append(device)
    return devices


@bp.post("/import/confirm")
def import_confirm():
    """Create exactly the previewed devices that are still new, each audited, then one device.imported."""
    data, kind = _read_token(), request.form.get("credentials", "none")
    if data is None or kind not in ("none", *(choice.value for choice in KEY_TYPE_CHOICES)):
        return _form_page(_STALE, 400)
    existing = _existing()
    rows = [row for row in data["r"] if row[1].casefold() not in existing]
    pair = run_blocking(keys.generate, kind) if kind != "none" and rows else None
    devices = _new_devices(rows, pair)
    blank = _snapshot(Device(allow_file_transfer=True))
    audits = [(device.label, _changes(blank, _snapshot(device))) for device in devices]
    created = [{"name": d.name, "address": f"{d.username}@{d.address}"} for d in devices]
    db.session.add_all(devices)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return _form_page("A device of one of these names was added meanwhile, so nothing was created: preview the "
                          "file again.", 409)
    for label, details in audits:
        record("device.created", f"created device {label}", target=label, details=details)
    counts = {"created": len(rows), "skipped": data["s"] + len(data["r"]) - len(rows), "refused": data["x"]}
    record("device.imported", f"imported {len(rows)} device{'s' if len(rows) != 1 else ''} from "
                              f"{importing.FORMATS[data['f']]}",
           details={"format": data["f"], **counts, "shared_key": pair[1].split()[0] if pair else None})
    return render_template("devices/import_done.html", created=created, counts=counts,
                           public_key=pair[1] if pair else None)


@bp.get("/export.csv")
def export_csv():
    """The device list as CSV, without secrets."""
    devices = user_devices()
    owners = dict(db.session.execute(select(User.id, User.username)
                                     .where(User.id.in_({d.owner_id for d in devices}))).all())
    body = exporting.as_csv(devices, owners)
    record("device.exported", f"exported {len(devices)} device{'s' if len(devices) != 1 else ''} as CSV",
           details={"count": len(devices)})
    name = f"gatehouse-devices-{now_utc().date().isoformat()}.csv"
    return Response(body, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"',
                                                        "Cache-Control": "no-store"})
