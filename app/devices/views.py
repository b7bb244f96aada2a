"""List, add, edit and delete SSH targets (the connection test: connection_test.py); htmx swaps the device panel."""
from flask import Blueprint, render_template, request
from flask_login import current_user, login_required
from sqlalchemy import delete as sql_delete
from sqlalchemy.exc import IntegrityError

from app.access import get_device_or_404, user_devices
from app.audit.events import record
from app.blocking import run_blocking
from app.crypto import encrypt
from app.extensions import db
from app.session_ends import end_deviceless, end_sessions_without_access

from . import keys
from .forms import DeviceForm
from .listing import listing
from .models import AUTH_KEY, AUTH_PASSWORD, Device, Favourite

bp = Blueprint("devices", __name__, url_prefix="/devices")

_PLAIN_FIELDS = ("name", "host", "port", "username", "folder")


@bp.before_request
@login_required
def require_login():
    """Every device route needs a logged-in user."""


def _choices():
    """Return the folder and tag names of the devices the user may use, for the form's suggestions."""
    devices = user_devices()
    return sorted({d.folder for d in devices if d.folder}, key=str.casefold), sorted({t for d in devices for t in d.tags})


def _panel(form=None, device=None, notice=None, public_key=None, status=200):
    """Render the device panel: the list, and the editor when a form is open."""
    folders = tags = ()
    if form is not None:
        form.private_key.data = ""  # write-only: a pasted key never comes back, not even after an error
        folders, tags = _choices()
    return render_template("devices/_panel.html", form=form, device=device, notice=notice, public_key=public_key,
                           folder_names=folders, tag_names=tags, **listing()), status


class _Refused(Exception):
    """A credential choice that cannot be saved: the message belongs to one form field."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field, self.message = field, message


def _use_password(form, device):
    """Store the typed password (blank keeps the stored one); return no key to show."""
    if form.password.data:
        device.password_enc = encrypt(form.password.data, "password")
    elif device.auth_type != AUTH_PASSWORD or device.password_enc is None:
        raise _Refused(form.password, "Enter the SSH password.")
    device.auth_type = AUTH_PASSWORD
    device.private_key_enc = device.passphrase_enc = device.public_key = device.key_type = None
    return None


def _use_private_key(form, device):
    """Store a pasted or uploaded key once it parses (blank keeps the stored key); return no key to show."""
    text = form.private_key.data or ""
    upload = form.key_file.data
    if upload and getattr(upload, "filename", ""):
        text = upload.read(65536).decode("utf-8", "replace")
    if not text.strip():
        if device.auth_type == AUTH_KEY and device.private_key_enc is not None:
            return None
        raise _Refused(form.private_key, "Paste or upload a private key.")
    passphrase = form.passphrase.data or None
    try:
        parsed = run_blocking(keys.load_private_key, text, passphrase)
    except keys.KeyProblem as exc:
        raise _Refused(form.private_key, str(exc)) from None
    _store_key(device, text.strip() + "\n", keys.public_line(parsed), passphrase)
    return None


def _use_generated_key(form, device):
    """Generate and store a new key pair; return its public line, shown once to copy."""
    private, public = run_blocking(keys.generate, form.key_type.data)
    _store_key(device, private, public, None)
    return public


def _store_key(device, private, public, passphrase):
    """Make a private key the device's credential, encrypted, with its public half beside it."""
    device.auth_type = AUTH_KEY
    device.private_key_enc = encrypt(private, "private_key")
    device.passphrase_enc = encrypt(passphrase, "passphrase")
    device.password_enc = None
    device.public_key = public
    device.key_type = public.split()[0]


_CREDENTIAL_CHOICES = {"password": _use_password, "key": _use_private_key, "generate": _use_generated_key}


def _snapshot(device):
    """Return what the audit trail compares before and after a save (ciphertexts only, never read)."""
    return {**{field: getattr(device, field) for field in _PLAIN_FIELDS}, "tags": list(device.tags),
            "auth_type": device.auth_type,
            "credential": (device.password_enc, device.private_key_enc, device.passphrase_enc),
            "public_key": device.public_key, "allow_file_transfer": device.allow_file_transfer}


def _changes(before, after):
    """Return the audit details of a save: which fields changed (names, never values) and a new key's type."""
    changed = [name for name in before if name != "public_key" and before[name] != after[name]]
    details = {"auth_type": after["auth_type"], "fields": changed}
    for name in ("folder", "tags", "allow_file_transfer"):  # who may use it follows these (team grants), and SFTP
        if name in changed:
            details[name] = after[name]
    if after["public_key"] and after["public_key"] != before["public_key"]:
        details["key"] = after["public_key"].split()[0]
    return details


def _may_move(form, device, creating):
    """Refuse (on the host field) an editor who is not the owner moving a device to another address while keeping its
    stored credentials: they would go to whatever host the editor names. The owner moves their own freely."""
    if creating or device.owner_id == current_user.id or (form.host.data, form.port.data) == (device.host, device.port):
        return True
    if form.auth_type.data == "generate" or form.password.data or (form.private_key.data or "").strip() or \
            getattr(form.key_file.data, "filename", ""):
        return True
    form.host.errors.append(f"The stored credentials go only to the device's saved address {device.address}. "
                            "To move it, type its password or key again.")
    return False


def _set_file_transfer(form, device):
    """Apply the file transfer checkbox of an admin's form (it carries file_transfer_shown); anyone else's changes
    nothing (new devices start with file transfer allowed)."""
    if current_user.is_admin and request.form.get("file_transfer_shown") == "1":
        device.allow_file_transfer = bool(form.allow_file_transfer.data)


def _save(form, device, creating):
    """Validate the form into device and commit it; return the rendered panel."""
    shown = None if creating else device
    if not form.validate_on_submit() or not _may_move(form, device, creating):
        return _panel(form, shown, status=422)
    before = _snapshot(device)
    for field in _PLAIN_FIELDS:
        setattr(device, field, getattr(form, field).data)
    device.tags = form.tags.data or []
    _set_file_transfer(form, device)
    try:
        public = _CREDENTIAL_CHOICES[form.auth_type.data](form, device)
    except _Refused as refused:
        db.session.rollback()
        refused.field.errors.append(refused.message)
        return _panel(form, shown, status=422)
    if creating:
        device.owner_id = current_user.id
        db.session.add(device)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        form.name.errors.append("You already have a device with this name.")
        return _panel(form, shown, status=422)
    details = _changes(before, _snapshot(device))
    if not creating and {"folder", "tags"} & set(details["fields"]):
        details["sessions_ended"] = len(end_sessions_without_access())  # a team that lost it loses its terminals
    verb = "created" if creating else "updated"
    record(f"device.{verb}", f"{verb} device {device.label}", target=device.label, details=details)
    notice = f"Device {device.name} {'added' if creating else 'saved'}."
    return _panel(notice=notice, public_key=public, device=device)


@bp.get("/")
def panel():
    """Render the device panel."""
    return _panel()


@bp.get("/new")
def new():
    """Open an empty device form."""
    return _panel(DeviceForm())


@bp.post("/")
def create():
    """Add a device."""
    return _save(DeviceForm(), Device(allow_file_transfer=True), creating=True)


@bp.get("/<int:device_id>/edit")
def edit(device_id):
    """Open the form of an existing device (secrets stay blank: they are write-only)."""
    device = get_device_or_404(device_id, edit=True)
    form = DeviceForm(obj=device)
    form.auth_type.data = device.auth_type
    form.tags.data = device.tags
    return _panel(form, device)


@bp.post("/<int:device_id>")
def update(device_id):
    """Save changes to a device; blank secret fields keep the stored ones."""
    device = get_device_or_404(device_id, edit=True)
    return _save(DeviceForm(), device, creating=False)


@bp.post("/<int:device_id>/delete")
def delete(device_id):
    """Delete a device; every open terminal on it ends, whoever's."""
    device = get_device_or_404(device_id, edit=True)
    label = device.label
    db.session.delete(device)
    db.session.commit()
    ended = end_deviceless()  # after the commit: a terminal opened meanwhile has no device either
    record("device.deleted", f"deleted device {label}", target=label, details={"sessions_ended": ended})
    return _panel(notice=f"Device {label} deleted." + (f" {ended} open terminal{'s' if ended != 1 else ''} ended."
                                                        if ended else ""))


@bp.post("/<int:device_id>/favourite")
def favourite(device_id):
    """Pin a device to the top of the current user's list, or unpin it."""
    device = get_device_or_404(device_id)
    gone = db.session.execute(sql_delete(Favourite).where(Favourite.user_id == current_user.id,
                                                          Favourite.device_id == device.id)).rowcount
    if not gone:
        db.session.add(Favourite(user_id=current_user.id, device_id=device.id))
    try:
        db.session.commit()
    except IntegrityError:  # two quick clicks: the first one pinned it
        db.session.rollback()
    return _panel()
