"""The first administrator."""
import logging
import secrets
import sys

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.audit.events import record
from app.extensions import db

from .models import User

log = logging.getLogger("gatehouse.auth")


def ensure_first_admin(app):
    """Create the admin from ADMIN_USER/ADMIN_PASSWORD when no user exists; print a generated password once."""
    if db.session.scalar(select(func.count()).select_from(User)):
        return None
    username = app.config["ADMIN_USER"]
    password = app.config["ADMIN_PASSWORD"]
    generated = password is None
    if generated:
        password = secrets.token_urlsafe(18)
    user = User(username=username, is_admin=True)
    user.set_password(password)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:  # another worker created it first
        db.session.rollback()
        return None
    record("user.created", f"created first admin {username}", actor="system", user_id=user.id,
           details={"username": username, "admin": True, "generated": generated}, strict=False)
    if generated:
        # Straight to the console, never to the log: this is the only place it ever appears.
        print(
            f"\n  Gatehouse first start: admin user '{username}' created with password: {password}\n"
            "  (shown once; change it after logging in)\n",
            file=sys.stderr, flush=True,
        )
    log.warning("first admin %s created", username)
    return user
