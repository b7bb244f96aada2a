"""`flask users ...`: manage accounts from the console."""
import click
from flask.cli import AppGroup

from app.audit.events import record
from app.extensions import db

from . import sessions, totp
from .accounts import AccountError, create_user, find_user, password_problem


@click.group("users", cls=AppGroup, help="Manage Gatehouse users.")
def users_cli():
    """Group the user commands."""


@users_cli.command("create")
@click.argument("username")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
@click.password_option()
def create(username, admin, password):
    """Create a user (the same rule as the users page: name pattern, case-insensitive, password length)."""
    try:
        create_user(username, password, admin=admin, via="console")
    except AccountError as refused:
        raise click.ClickException(f"{refused.field}: {refused.message}") from None
    click.echo(f"created {username}")


@users_cli.command("reset-password")
@click.argument("username")
@click.password_option()
def reset_password(username, password):
    """Set a new password for a user and end their log-in sessions."""
    user = find_user(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    problem = password_problem(password)
    if problem:
        raise click.ClickException(f"password: {problem}")
    user.set_password(password)
    user.failed_logins = 0
    user.locked_until = None
    db.session.commit()
    record("auth.password_changed", f"password of {user.username} reset from the console", actor="console",
           user_id=user.id, details={"by": "console"})
    sessions.revoke_user(user.id, "password_changed", by="console")
    click.echo(f"password of {user.username} reset")


@users_cli.command("reset-2fa")
@click.argument("username")
def reset_2fa(username):
    """Remove a user's second factor and recovery codes and end their log-in sessions (they enrol again)."""
    user = find_user(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    totp.reset(user, by="console", actor="console")
    click.echo(f"second factor of {user.username} reset")
