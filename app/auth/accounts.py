"""The account rule: what a username and a password must be, and the one way a user is created.

Usernames are unique without regard to case, so `Admin` cannot sit beside `admin` and be mistaken
for it in the audit trail. A name is looked up the same way (find_user: `ADMIN` finds `admin`),
preferring an exact match for any older pair that differs only in case; the users CLI does so, and
log-in is meant to (its lookup is one line in auth/views.py:login).
"""
import re
import unicodedata

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.audit.events import record
from app.extensions import db

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


def create_user(username, password, *, admin=False, via="web", details=None):
    """Check the account rule, create the user, record user.created; raise AccountError when refused."""
    for field, problem in (("username", username_problem(username)), ("password", password_problem(password))):
        if problem:
            raise AccountError(field, problem)
    user = User(username=username, is_admin=admin)
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
           details={"username": username, "admin": admin, **(details or {})}, strict=via != "first_start")
    return user
