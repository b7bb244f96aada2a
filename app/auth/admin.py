"""The first administrator."""
import logging
import secrets
import sys

from sqlalchemy import func, select

from app.extensions import db
from config import ConfigError

from .accounts import AccountError, create_user
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
        password = secrets.token_urlsafe(max(18, app.config["PASSWORD_MIN_LENGTH"]))
    try:
        # A generated password went to a console (and maybe a journal): its admin replaces it at the first log-in.
        # ADMIN_PASSWORD is the operator's own choice for themselves, so it is not asked again.
        user = create_user(username, password, admin=True, via="first_start", details={"generated": generated},
                           must_change=generated)
    except AccountError as refused:
        if db.session.scalar(select(func.count()).select_from(User)):
            return None  # another worker created it first
        variable = "ADMIN_USER" if refused.field == "username" else "ADMIN_PASSWORD"
        raise ConfigError(f"{variable}: {refused.message}") from None
    if generated:
        # Straight to the console, never to the log: this is the only place it ever appears.
        print(
            f"\n  Gatehouse first start: admin user '{username}' created with password: {password}\n"
            "  (shown once; you choose your own at the first log-in)\n",
            file=sys.stderr, flush=True,
        )
    log.warning("first admin %s created", username)
    return user
