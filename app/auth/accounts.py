"""The account rule: what a username and a password must be, and the one way a user is created.

Usernames are unique without regard to case, so `Admin` cannot sit beside `admin` and be mistaken
for it in the audit trail. A name is looked up the same way (find_user: `ADMIN` finds `admin`),
preferring an exact match for any older pair that differs only in case; the users CLI does so, and
log-in is meant to (its lookup is one line in auth/views.py:login).
"""
import re
import secrets
import unicodedata

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.audit.events import record
from app.extensions import db

from . import logins
from .models import User

USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
# The ways in: who creates the account, as the trail tells it: (actor, message). An actor of None is the admin
# of the request; "{name}" is the new user, who signs in for the first time with single sign-on (oidc).
_VIA = {
    "web": (None, "created user {name}"),
    "console": ("console", "created user {name} from the console"),
    "first_start": ("system", "created first admin {name}"),
    "oidc": ("{name}", "created user {name} ({role}) at their first sign-in with {provider}"),
}
# Nobody is logged in when these create a user, so the event carries the new user's id.
_OWN_ID = {"first_start", "oidc"}


class AccountError(ValueError):
    """A username or password the account rule refuses; field names the form field it belongs to."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field, self.message = field, message


def username_problem(username):
    """Return why username cannot name a new account, or None."""
    if any(unicodedata.category(char) == "Cc" for char in username):
        return "A username may not contain control characters."
    if username != username.strip():
        return "A username may not begin or end with a space."
    if not USERNAME.match(username):
        return "Use letters, digits and . _ @ - only (at most 64 characters)."
    if find_user(username) is not None:
        return "This username is taken."
    return None


def password_problem(password):
    """Return why password is too weak for an account, or None."""
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    return f"Use at least {minimum} characters." if len(password) < minimum else None


def find_user(username):
    """Return the user of this name regardless of case (an exact match first), or None."""
    found = db.session.scalars(select(User).where(func.lower(User.username) == username.lower())).all()
    return next((user for user in found if user.username == username), found[0] if found else None)


def create_user(username, password=None, *, admin=False, via="web", details=None, must_change=False, identity=None):
    """Check the account rule, create the user, record user.created; raise AccountError when refused.

    via is the way in (_VIA). password None: the user has no usable one (single sign-on: nobody knows it, so a local
    log-in fails like a wrong password). identity: the (issuer, subject) of single sign-on the user is linked to.
    must_change: someone else chose the password, so the user must replace it at their first log-in.
    """
    problems = (("username", username_problem(username)),
                ("password", password_problem(password) if password is not None else None))
    for field, problem in problems:
        if problem:
            raise AccountError(field, problem)
    user = User(username=username, is_admin=admin, must_change_password=must_change)
    user.oidc_issuer, user.oidc_subject = identity or (None, None)
    user.set_password(secrets.token_urlsafe(32) if password is None else password)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:  # created by someone else since the check
        db.session.rollback()
        raise AccountError("username", "This username is taken.") from None
    _record_created(user, via, {**({"must_change": True} if must_change else {}), **(details or {})})
    return user


def _record_created(user, via, details):
    """Record user.created as the way in tells it (a first start's failed write does not stop the start)."""
    actor, message = _VIA[via]
    words = {"name": user.username, "role": "admin" if user.is_admin else "user",
             "provider": current_app.config.get("OIDC_DISPLAY_NAME")}
    record("user.created", message.format(**words), actor=actor and actor.format(**words),
           user_id=user.id if via in _OWN_ID else None,
           details={"username": user.username, "admin": user.is_admin, **details}, strict=via != "first_start")


def generated_password():
    """Return a new random password for an admin's reset: groups of four easy signs, at least PASSWORD_MIN_LENGTH."""
    signs = "23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/l/I: read out or copied by hand
    groups = max(5, -(-(current_app.config["PASSWORD_MIN_LENGTH"] + 1) // 5))  # 5 groups: 24 characters, 115 bits
    return "-".join("".join(secrets.choice(signs) for _ in range(4)) for _ in range(groups))


def reset_password(user, password, *, by, actor=None, must_change=True):
    """Give a user a password someone else chose: audited, every log-in of theirs ends (terminals too).

    by names who reset it (an admin, or "console"); must_change makes the user choose their own at next log-in.
    """
    user.set_password(password)
    user.must_change_password = must_change
    user.failed_logins = 0
    user.locked_until = None
    db.session.commit()
    via = "from the console" if by == "console" else f"by {by}"
    record("auth.password_changed", f"password of {user.username} reset {via}", actor=actor,
           user_id=user.id if by == "console" else None,
           details={"username": user.username, "by": by, "reset": True, "must_change": must_change})
    logins.revoke_user(user.id, "password_changed", by=by)
