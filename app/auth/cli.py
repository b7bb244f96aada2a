"""`flask users ...` and `flask oidc link`: manage accounts from the console."""
import click
from flask import current_app
from flask.cli import AppGroup

from app.audit.events import record
from app.extensions import db

from . import totp
from .accounts import AccountError, create_user, find_user, password_problem, reset_password as give_password
from .oidc_people import linked_user
from .oidc_rules import enabled

# Someone at the console chose the password: by default its user must replace it at their first log-in.
_MUST_CHANGE = click.option("--must-change/--no-must-change", default=True, show_default=True,
                            help="Make the user choose their own password at their next log-in (--no-must-change: "
                                 "the password's own user typed it here).")


@click.group("users", cls=AppGroup, help="Manage Gatehouse users.")
def users_cli():
    """Group the user commands."""


@users_cli.command("create")
@click.argument("username")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
@_MUST_CHANGE
@click.password_option()
def create(username, admin, must_change, password):
    """Create a user (the same rule as the users page: name pattern, case-insensitive, password length)."""
    try:
        create_user(username, password, admin=admin, via="console", must_change=must_change)
    except AccountError as refused:
        raise click.ClickException(f"{refused.field}: {refused.message}") from None
    click.echo(f"created {username}")


@users_cli.command("reset-password")
@click.argument("username")
@_MUST_CHANGE
@click.password_option()
def reset_password(username, must_change, password):
    """Set a new password for a user and end their log-ins."""
    user = find_user(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    problem = password_problem(password)
    if problem:
        raise click.ClickException(f"password: {problem}")
    give_password(user, password, by="console", actor="console", must_change=must_change)
    click.echo(f"password of {user.username} reset")


@users_cli.command("reset-2fa")
@click.argument("username")
def reset_2fa(username):
    """Remove a user's second factor and recovery codes and end their log-ins (they enrol again)."""
    user = find_user(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    totp.reset(user, by="console", actor="console")
    click.echo(f"second factor of {user.username} reset")


@click.group("oidc", cls=AppGroup, help="Single sign-on from the console.")
def oidc_cli():
    """Group the single sign-on commands."""


@oidc_cli.command("link")
@click.argument("username")
@click.argument("subject")
def link(username, subject):
    """Link an existing user to the provider's subject (sub), so that person's single sign-on logs in as them."""
    if not enabled():
        raise click.ClickException("OIDC_ISSUER is not set")
    user = find_user(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    issuer = current_app.config["OIDC_ISSUER"]
    other = linked_user(subject)
    if other is not None and other.id != user.id:
        raise click.ClickException(f"subject {subject!r} is linked to {other.username} already")
    user.oidc_issuer, user.oidc_subject = issuer, subject
    db.session.commit()
    record("user.updated", f"linked user {user.username} to single sign-on from the console", actor="console",
           details={"username": user.username, "fields": ["oidc_subject"], "provider": issuer, "subject": subject})
    click.echo(f"linked {user.username} to {subject} at {issuer}")
