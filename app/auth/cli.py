"""`flask users ...`: manage accounts from the console."""
import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.audit.events import record
from app.extensions import db

from . import sessions
from .models import User


@click.group("users", cls=AppGroup, help="Manage Gatehouse users.")
def users_cli():
    """Group the user commands."""


def _check_length(password):
    """Refuse a password shorter than PASSWORD_MIN_LENGTH."""
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password) < minimum:
        raise click.ClickException(f"password must have at least {minimum} characters")


@users_cli.command("create")
@click.argument("username")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
@click.password_option()
def create_user(username, admin, password):
    """Create a user."""
    _check_length(password)
    if db.session.scalar(select(User).filter_by(username=username)):
        raise click.ClickException(f"user {username!r} exists already")
    user = User(username=username, is_admin=admin)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    record("user.created", f"created user {username} from the console", actor="console", details={"admin": admin})
    click.echo(f"created {username}")


@users_cli.command("reset-password")
@click.argument("username")
@click.password_option()
def reset_password(username, password):
    """Set a new password for a user and end their log-in sessions."""
    user = db.session.scalar(select(User).filter_by(username=username))
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    _check_length(password)
    user.set_password(password)
    user.failed_logins = 0
    user.locked_until = None
    db.session.commit()
    record("auth.password_changed", f"password of {username} reset from the console", actor="console",
           user_id=user.id, details={"by": "console"})
    sessions.revoke_user(user.id, "password_changed", by="console")
    click.echo(f"password of {username} reset")
