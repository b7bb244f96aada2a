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

from . import sessions
from .models import User

USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
# Who creates the account, as the trail tells it: (actor, message).
_VIA = {
    "web": (None, "created user {}"),
    "console": ("console", "created user {} from the console"),
    "first_start": ("system", "created first admin {}"),
}


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


def create_user(username, password, *, admin=False, via="web", details=None, must_change=False):
    """Check the account rule, create the user, record user.created; raise AccountError when refused.

    must_change: someone else chose the password, so the user must replace it at their first log-in.
    """
    for field, problem in (("username", username_problem(username)), ("password", password_problem(password))):
        if problem:
            raise AccountError(field, problem)
    user = User(username=username, is_admin=admin, must_change_password=must_change)
    user.set_password(password)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:  # created by someone else since the check
        db.session.rollback()
        raise AccountError("username", "This username is taken.") from None
    actor, message = _VIA[via]
    record("user.created", message.format(username), actor=actor,
           user_id=user.id if via == "first_start" else None,
           details={"username": username, "admin": admin, **({"must_change": True} if must_change else {}),
                    **(details or {})}, strict=via != "first_start")
    return user


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
    sessions.revoke_user(user.id, "password_changed", by=by)
