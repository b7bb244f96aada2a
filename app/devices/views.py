"""List, add, edit and delete SSH targets; htmx swaps the device panel in place."""
from flask import Blueprint, render_template
from flask_login import current_user, login_required
from sqlalchemy.exc import IntegrityError

from app.access import get_device_or_404, user_devices
from app.audit.events import record
from app.blocking import run_blocking
from app.extensions import db

from . import keys, secrets
from .forms import DeviceForm
from .models import AUTH_KEY, AUTH_PASSWORD, Device

bp = Blueprint("devices", __name__, url_prefix="/devices")

_PLAIN_FIELDS = ("name", "host", "port", "username")


@bp.before_request
@login_required
def require_login():
    """Every device route needs a logged-in user."""


def _panel(form=None, device=None, notice=None, public_key=None, status=200):
    """Render the device panel: the list, and the editor when a form is open."""
    if form is not None:
        form.private_key.data = ""  # write-only: a pasted key never comes back, not even after an error
    return render_template(
        "devices/_panel.html", devices=user_devices(), form=form, device=device, notice=notice, public_key=public_key
    ), status


def _apply_credentials(form, device):
    """Validate and store the chosen credential; return the new public key line, if any."""
    choice = form.auth_type.data
    if choice == "password":
        if form.password.data:
            device.password_enc = secrets.encrypt(form.password.data, "password")
        elif device.auth_type != AUTH_PASSWORD or device.password_enc is None:
            form.password.errors.append("Enter the SSH password.")
            return None
        device.auth_type = AUTH_PASSWORD
        device.private_key_enc = device.passphrase_enc = device.public_key = device.key_type = None
        return None
    if choice == "generate":
        private, public = run_blocking(keys.generate, form.key_type.data)
        passphrase = None
    else:
        upload = form.key_file.data
        text = form.private_key.data or ""
        if upload and getattr(upload, "filename", ""):
            text = upload.read(65536).decode("utf-8", "replace")
        if not text.strip():
            if device.auth_type == AUTH_KEY and device.private_key_enc is not None:
                return None  # keep the stored key
            form.private_key.errors.append("Paste or upload a private key.")
            return None
        passphrase = form.passphrase.data or None
        try:
            parsed = run_blocking(keys.load_private_key, text, passphrase)
        except keys.KeyProblem as exc:
            form.private_key.errors.append(str(exc))
            return None
        private, public = text.strip() + "\n", keys.public_line(parsed)
    device.auth_type = AUTH_KEY
    device.private_key_enc = secrets.encrypt(private, "private_key")
    device.passphrase_enc = secrets.encrypt(passphrase, "passphrase")
    device.password_enc = None
    device.public_key = public
    device.key_type = public.split()[0]
    return public


def _save(form, device, creating):
    """Validate the form into device and commit it; return the rendered panel."""
    if not form.validate_on_submit():
        return _panel(form, None if creating else device, status=422)
    before = {field: getattr(device, field) for field in _PLAIN_FIELDS}
    old_auth, old_public = device.auth_type, device.public_key
    old_secrets = (device.password_enc, device.private_key_enc, device.passphrase_enc)
    for field in _PLAIN_FIELDS:
        setattr(device, field, getattr(form, field).data)
    public = _apply_credentials(form, device)
    if form.errors:
        db.session.rollback()
        return _panel(form, None if creating else device, status=422)
    if creating:
        device.owner_id = current_user.id
        db.session.add(device)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        form.name.errors.append("You already have a device with this name.")
        return _panel(form, None if creating else device, status=422)
    changed = [field for field in _PLAIN_FIELDS if before[field] != getattr(device, field)]
    if device.auth_type != old_auth:
        changed.append("auth_type")
    if (device.password_enc, device.private_key_enc, device.passphrase_enc) != old_secrets:
        changed.append("credential")  # which secret changed, never its value
    details = {"auth_type": device.auth_type, "fields": changed}
    if device.public_key and device.public_key != old_public:
        details["key"] = device.key_type
    if creating:
        record("device.created", f"created device {device.label}", target=device.label, details=details)
    else:
        record("device.updated", f"updated device {device.label}", target=device.label, details=details)
    notice = f"Device {device.name} {'added' if creating else 'saved'}."
    return _panel(notice=notice, public_key=public if form.auth_type.data == "generate" else None, device=device)


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
    return _save(DeviceForm(), Device(), creating=True)


@bp.get("/<int:device_id>/edit")
def edit(device_id):
    """Open the form of an existing device (secrets stay blank: they are write-only)."""
    device = get_device_or_404(device_id)
    form = DeviceForm(obj=device)
    form.auth_type.data = device.auth_type
    return _panel(form, device)


@bp.post("/<int:device_id>")
def update(device_id):
    """Save changes to a device; blank secret fields keep the stored ones."""
    device = get_device_or_404(device_id)
    return _save(DeviceForm(), device, creating=False)


@bp.post("/<int:device_id>/delete")
def delete(device_id):
    """Delete a device."""
    device = get_device_or_404(device_id)
    label = device.label
    db.session.delete(device)
    db.session.commit()
    record("device.deleted", f"deleted device {label}", target=label)
    return _panel(notice=f"Device {label} deleted.")
