"""The second factor of a local log-in: TOTP (RFC 6238) codes, and one-time recovery codes.

A right password for a user with TOTP, or one whom REQUIRE_2FA asks it of, does not log in: it leaves a pending
state in the signed session cookie (the user's id, epoch and password time, the typed name for the throttle, a
limit of PENDING_SECONDS) that opens nothing but the code or enrolment step. Each TOTP time step is accepted once
(totp_last_step, raised by one conditional UPDATE); recovery codes are kept hashed and spent by one conditional
UPDATE ... WHERE used_at IS NULL, so two parallel requests never both win. The secret is stored encrypted and
shown only on the enrolment page; no log line or audit event carries it or a code.
"""
import hmac
import logging
import secrets
import time

import pyotp
import segno
from flask import current_app, session
from sqlalchemy import delete, func, or_, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from app.audit.events import record
from app.crypto import SecretError, decrypt, encrypt
from app.dbtypes import now_utc
from app.extensions import db

from . import logins
from .models import RecoveryCode, User

log = logging.getLogger("gatehouse.auth")
ISSUER = "Gatehouse"
PENDING_KEY = "second_factor"
PENDING_SECONDS = 300  # from the right password to the code (or the confirmed enrolment)
RECOVERY_CODES = 10
_PURPOSE = "totp"  # bound to the encrypted secret, so a device secret cannot pass for it
_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # 31 signs without 0/o, 1/i/l: 12 of them carry 59 random bits
# One salted round is enough: a code is 59 random bits, not a password a person chose, so slowing each guess
# adds nothing worth the cost of checking up to ten hashes per attempt on a gevent worker.
_CODE_HASH = "pbkdf2:sha256:1"
OK, WRONG, REPLAYED, USED = "ok", "wrong", "replayed", "used"


def clock():
    """Return the current Unix time (tests set it)."""
    return time.time()


def required_for(user):
    """Say whether REQUIRE_2FA asks a second factor of this user (admins, all, or off)."""
    rule = current_app.config["REQUIRE_2FA"]
    return rule == "all" or (rule == "admins" and user.is_admin)


def enabled(user):
    """Say whether the user has a confirmed TOTP second factor."""
    return user.totp_enabled_at is not None and user.totp_secret_enc is not None


# --- the pending log-in ------------------------------------------------------------------------------------

def begin(user, username, next_path):
    """Hold a log-in whose password was right until its second factor; return the endpoint of that step."""
    enrol = not enabled(user)
    if enrol:
        new_secret(user)  # a fresh one each time: a secret seen by an earlier, unfinished log-in stays useless
    session.clear()
    session[PENDING_KEY] = {"user": user.id, "name": username, "epoch": user.session_epoch,
                            "password_at": user.password_changed_at.timestamp(), "until": clock() + PENDING_SECONDS,
                            "next": next_path, "enrol": enrol}
    return "twofactor.enrol" if enrol else "twofactor.code"


def pending(enrol):
    """Return (user, typed name, next path) of this browser's pending log-in of that kind, or None."""
    state = session.get(PENDING_KEY)
    if not isinstance(state, dict) or state.get("enrol") is not enrol or state.get("until", 0) <= clock():
        return None
    user = db.session.get(User, state.get("user"))
    if (user is None or user.disabled or user.session_epoch != state.get("epoch")
            or user.password_changed_at.timestamp() != state.get("password_at") or enabled(user) is enrol):
        return None  # reset, changed or enrolled meanwhile: start again from the password
    return user, state["name"], state["next"]


def drop_pending():
    """Forget this browser's pending log-in."""
    session.pop(PENDING_KEY, None)


# --- TOTP -----------------------------------------------------------------------------------------------

def new_secret(user):
    """Give the user a fresh, unconfirmed TOTP secret (stored encrypted; TOTP stays off until confirmed)."""
    user.totp_secret_enc = encrypt(pyotp.random_base32(), _PURPOSE)  # 32 base32 signs: 160 bits, as RFC 4226 asks
    user.totp_enabled_at = user.totp_last_step = None
    db.session.commit()


def secret_of(user):
    """Return the user's TOTP secret in clear (for the enrolment page and the check; never log it)."""
    return decrypt(user.totp_secret_enc, _PURPOSE)


def provisioning_uri(user, secret):
    """Return the otpauth:// URI an authenticator app reads: issuer Gatehouse, the username as account."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=ISSUER)


def qr_svg(uri):
    """Draw a URI as a QR code in inline SVG markup (drawn here: no image service ever sees the secret)."""
    return segno.make(uri, error="m").svg_inline(border=4, dark="#111", light="#fff", svgclass="qr", omitsize=True,
                                                 title="QR code for your authenticator app")


def _step(secret, code):
    """Return the time step (now, one before or one after) whose code this is, or None."""
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    now = int(clock() // totp.interval)
    return next((step for step in (now, now - 1, now + 1) if hmac.compare_digest(totp.generate_otp(step), code)),
                None)


def use_totp(user, code):
    """Accept a code of the user's TOTP once: OK, REPLAYED (its step or a later one was used) or WRONG."""
    try:
        step = _step(secret_of(user), code) if enabled(user) else None
    except SecretError as exc:
        log.error("TOTP secret of user %s cannot be decrypted: %s", user.id, exc)
        return WRONG
    if step is None:
        return WRONG
    won = db.session.execute(
        update(User).where(User.id == user.id, User.totp_enabled_at.is_not(None),
                           or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step).execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    db.session.refresh(user)
    return OK if won else REPLAYED


def confirm(user, code):
    """Turn TOTP on if code fits the unconfirmed secret (its step counts as used); return the recovery codes or None."""
    if enabled(user) or user.totp_secret_enc is None:
        return None
    step = _step(secret_of(user), code)
    if step is None:
        return None
    won = db.session.execute(  # the secret on the page is the one confirmed, once
        update(User).where(User.id == user.id, User.totp_enabled_at.is_(None),
                           User.totp_secret_enc == user.totp_secret_enc)
        .values(totp_enabled_at=now_utc(), totp_last_step=step).execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    db.session.refresh(user)
    return new_recovery_codes(user) if won else None


def turn_off(user):
    """Remove the user's second factor and recovery codes; pending log-ins of theirs end (the epoch moves)."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    user.totp_secret_enc = user.totp_enabled_at = user.totp_last_step = None
    user.session_epoch += 1
    db.session.commit()


def reset(user, by, actor=None):
    """Reset a user's second factor for an admin or the console: audited, then every log-in of theirs ends."""
    had = enabled(user)
    turn_off(user)
    record("auth.2fa_reset", f"second factor of {user.username} reset by {by}", actor=actor,
           details={"username": user.username, "by": by, "had_factor": had})
    logins.revoke_user(user.id, "ended_by_admin", by=by)


# --- recovery codes ------------------------------------------------------------------------------------------

def _new_code():
    """Return one random recovery code, xxxx-xxxx-xxxx."""
    return "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(3))


def new_recovery_codes(user):
    """Replace the user's recovery codes with RECOVERY_CODES new ones; return them (shown once, kept hashed)."""
    codes = [_new_code() for _ in range(RECOVERY_CODES)]
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=generate_password_hash(code, _CODE_HASH))
                       for code in codes)
    db.session.commit()
    return codes


def recovery_shape(text):
    """Return text as a recovery code (xxxx-xxxx-xxxx, any case, dashes and spaces optional), or None."""
    bare = "".join(text.lower().split()).replace("-", "")
    if len(bare) != 12 or any(char not in _ALPHABET for char in bare):
        return None
    return f"{bare[:4]}-{bare[4:8]}-{bare[8:]}"


def _matching_code(user_id, code):
    """Return the recovery code row whose hash fits code, used or not, or None."""
    rows = db.session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user_id)).all()
    return next((row for row in rows if check_password_hash(row.code_hash, code)), None)


def use_recovery_code(user, text):
    """Spend one recovery code: return (OK, codes left), (USED, None) for a spent one, or (WRONG, None)."""
    code = recovery_shape(text)
    row = _matching_code(user.id, code) if code and enabled(user) else None
    if row is None:
        return WRONG, None
    won = db.session.execute(
        update(RecoveryCode).where(RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None))
        .values(used_at=now_utc()).execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return (OK, codes_left(user)) if won else (USED, None)


def codes_left(user):
    """Return how many unused recovery codes the user has."""
    return db.session.scalar(select(func.count()).select_from(RecoveryCode)
                             .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))
