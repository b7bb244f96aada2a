"""The device form's Test connection: each step of reaching a target, with typed credentials or the stored ones.

Stored credentials are the owner's secret, write-only for everyone: they go only to the device's own stored
address. A test of another address needs them typed again, or a changed form field would send the owner's
password to whatever host an editor names.
"""
import threading

from flask import current_app, render_template
from flask_login import current_user
from sqlalchemy import select

from app.access import get_device_or_404
from app.audit.events import FAILURE, SUCCESS, record
from app.blocking import run_blocking
from app.extensions import db

from . import keys, probe
from .credentials import CredentialError, Credentials, open_credentials
from .forms import DeviceForm
from .models import AUTH_KEY, AUTH_PASSWORD, Device, HostKey
from .views import _Refused, bp


class _Elsewhere(_Refused):
    """Stored credentials asked for at another address than the device's own."""


_testing = set()  # ids of users with a connection test under way in this process: one at a time each
_testing_lock = threading.Lock()


def _typed_key(form):
    """Return the private key pasted or uploaded in the form, or an empty string."""
    upload = form.key_file.data
    if upload and getattr(upload, "filename", ""):
        return upload.read(65536).decode("utf-8", "replace")
    return form.private_key.data or ""


def _typed_credentials(form):
    """Return the credentials typed in the form, or None where the secret fields are blank."""
    kind = form.auth_type.data
    if kind == AUTH_PASSWORD:
        return Credentials(password=form.password.data) if form.password.data else None
    if kind != AUTH_KEY:
        raise _Refused(form.auth_type, "A generated key exists once saved: save, add its public key on the device, "
                                       "then test.")
    text = _typed_key(form)
    if not text.strip():
        return None
    try:
        return Credentials(pkey=run_blocking(keys.load_private_key, text, form.passphrase.data or None))
    except keys.KeyProblem as exc:
        raise _Refused(form.private_key, str(exc)) from None


def _stored_credentials(form, device):
    """Return the device's stored credentials for a test of its own stored address; refuse any other address."""
    kind = form.auth_type.data
    field = form.password if kind == AUTH_PASSWORD else form.private_key
    secret = device and (device.password_enc if kind == AUTH_PASSWORD else device.private_key_enc)
    if device is None or device.auth_type != kind or secret is None:
        none = device is not None and device.password_enc is None and device.private_key_enc is None
        raise _Refused(field, (f"No credentials stored for {device.name} yet. " if none else "")
                       + ("Enter the SSH password to test it." if kind == AUTH_PASSWORD
                          else "Paste or upload a private key to test it."))
    if (form.host.data, form.port.data) != (device.host, device.port):
        typed = Device(host=form.host.data, port=form.port.data).address
        what = "password" if kind == AUTH_PASSWORD else "private key"
        raise _Elsewhere(field, f"The stored credentials go only to the device's saved address {device.address}. "
                              f"To test {typed}, type the {what} again.")
    return open_credentials(device)


def _known_key(host, port):
    """Return the host key stored for host:port, or None."""
    row = db.session.scalar(select(HostKey).filter_by(host=host, port=port))
    return row and probe.KnownKey(row.key_type, row.key_base64, row.fingerprint)


def _test_result(steps=None, problem=None, status=200):
    """Render the connection-test partial: each step, or the one problem that stopped the test."""
    failed = next((step for step in steps or () if step.passed is False), None)
    return render_template("devices/_test_result.html", steps=steps, problem=problem, failed=failed), status


def _facts(form, device, stored):
    """Return (audit target, details) of a test: the device tested, the address tried, whether stored credentials
    went there (the device's owner reads the event in their trail)."""
    tried = Device(name=form.name.data or "new device", host=form.host.data, port=form.port.data)
    details = {"address": tried.address, "stored_credentials": stored}
    if device is None:
        return tried.label, {"device": None, **details}
    return device.label, {"device": device.label, "device_id": device.id, "owner_id": device.owner_id, **details}


def _record(target, details, steps=None, refused=None):
    """Record device.tested: the steps passed and the one that failed, or why the test was refused."""
    failed = refused and "refused" or next((step.name for step in steps if step.passed is False), None)
    where = f"{target} at {details['address']}" if details["device"] else target
    record("device.tested", f"tested connection to {where}: " + (f"{failed} failed" if failed else "all passed"),
           outcome=FAILURE if failed else SUCCESS, target=target,
           details={**details, "failed_step": failed, **({"refused": refused} if refused else {}),
                    "passed": [step.name for step in steps or () if step.passed]})


@bp.post("/test")
@bp.post("/<int:device_id>/test")
def test_connection(device_id=None):
    """Try the form's host, port, host key and credentials (the stored ones when left blank, at the stored address
    only) and say what failed."""
    device = get_device_or_404(device_id, edit=True) if device_id else None  # stored credentials: editors only
    form = DeviceForm()
    form.validate()  # normalises the host; only the address fields matter to a test
    problems = [field.errors[0] for field in (form.host, form.port, form.username) if field.errors]
    if problems:
        return _test_result(problem=" ".join(problems), status=422)
    try:
        credentials = _typed_credentials(form)
        stored = credentials is None
        credentials = credentials or _stored_credentials(form, device)
    except _Elsewhere as refused:  # the owner reads in their trail that it was tried
        _record(*_facts(form, device, stored=False), refused="address_changed")
        return _test_result(problem=refused.message, status=422)
    except _Refused as refused:
        return _test_result(problem=refused.message, status=422)
    except CredentialError as exc:
        return _test_result(problem=exc.message, status=422)
    return _run(form, device, credentials, stored)


def _run(form, device, credentials, stored):
    """Run one test (one at a time per user) and record it."""
    with _testing_lock:
        if current_user.id in _testing:
            return _test_result(problem="A connection test is already running; wait for its answer.", status=429)
        _testing.add(current_user.id)
    try:
        target, details = _facts(form, device, stored)
        known = _known_key(form.host.data, form.port.data)
        db.session.remove()  # hold no database connection across network waits
        steps = probe.probe(form.host.data, form.port.data, form.username.data, password=credentials.password,
                            pkey=credentials.pkey, known=known, timeout=current_app.config["SSH_CONNECT_TIMEOUT"])
    finally:
        with _testing_lock:
            _testing.discard(current_user.id)
    _record(target, details, steps)
    return _test_result(steps)
