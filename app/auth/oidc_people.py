"""Single sign-on's people: the Gatehouse user of a provider's claims, found by issuer + subject, created at the
first sign-in when OIDC_AUTO_CREATE=on, its role taken from the groups claim when OIDC_ADMIN_GROUP is set."""
import hashlib
import re
import unicodedata

from flask import current_app
from sqlalchemy import select

from app.audit.events import record
from app.extensions import db
from app.session_ends import end_sessions_without_access

from .accounts import USERNAME, AccountError, create_user, find_user
from .models import User
from .oidc_rules import Refused, display_name


def match(claims):
    """Return the Gatehouse user of these claims: by issuer + subject, created if allowed; role from the groups."""
    config = current_app.config
    name = str(claims.get(config["OIDC_USERNAME_CLAIM"]) or "")[:64] or None
    facts = {"subject": claims["sub"], "claimed_name": name}
    user = linked_user(claims["sub"])
    if user is None:
        if config["OIDC_AUTO_CREATE"] != "on":
            raise Refused("not_allowed", f"Your {display_name()} account is not allowed into Gatehouse. Ask an "
                          "admin to let you in.", 403, actor=name, details=facts)
        user = _create(claims, name, facts)
    if user.disabled:
        raise Refused("disabled", "Your Gatehouse account is disabled.", 403, actor=user.username, user=user,
                      details=facts)
    _apply_role(user, claims)
    return user


def username_from(claim):
    """Make a claim value a valid username: accents dropped, letters, digits and . _ @ - kept, other runs one -."""
    text = unicodedata.normalize("NFKD", str(claim or ""))
    text = "".join(char for char in text if unicodedata.category(char) != "Mn")  # ü -> u
    text = re.sub(r"[^A-Za-z0-9._@-]+", "-", text).strip("-._")[:60].strip("-._")
    return text if text and USERNAME.match(text) else None


def linked_user(subject):
    """Return the user linked to this subject of the configured issuer, or None."""
    return db.session.scalar(select(User).where(User.oidc_issuer == current_app.config["OIDC_ISSUER"],
                                                User.oidc_subject == subject))


def _create(claims, name, facts):
    """Create the user of a first single sign-on (the account rule's way in "oidc"), linked to issuer + subject,
    with no usable password."""
    base = username_from(name) or "user-" + hashlib.sha256(f"{claims['iss']} {claims['sub']}".encode()).hexdigest()[:8]
    username = base
    for number in range(2, 100):
        taken = find_user(username)
        if taken is None:
            break
        if taken.oidc_subject is None:  # a local account: never linked silently (`flask oidc link` does it)
            raise Refused("username_taken", f"The name {username} belongs to a Gatehouse account that is not "
                          f"linked to your {display_name()} account. Ask an admin to link it.", 409,
                          actor=name, details={**facts, "username": username})
        username = f"{base}-{number}"  # another person of single sign-on had this name first
    admin = _in_admin_group(claims) if current_app.config.get("OIDC_ADMIN_GROUP") else False
    try:
        return create_user(username, admin=admin, via="oidc",
                           identity=(current_app.config["OIDC_ISSUER"], claims["sub"]),
                           details={"method": "oidc", "provider": claims["iss"], "subject": claims["sub"]})
    except AccountError:  # the same person's other tab, or the same name, a moment earlier
        user = linked_user(claims["sub"])
        if user is None:
            raise Refused("username_taken", f"The name {username} was just taken. Try again.", 409, actor=name,
                          details={**facts, "username": username}) from None
        return user


def _in_admin_group(claims):
    """Say whether the groups claim names OIDC_ADMIN_GROUP (a leading / of a group path is ignored)."""
    groups = claims.get(current_app.config["OIDC_GROUPS_CLAIM"]) or []
    groups = [groups] if isinstance(groups, str) else groups if isinstance(groups, list) else []
    wanted = current_app.config["OIDC_ADMIN_GROUP"].strip("/")
    return any(isinstance(group, str) and group.strip("/") == wanted for group in groups)


def _apply_role(user, claims):
    """With OIDC_ADMIN_GROUP set, the groups claim decides the role at every log-in, both ways (audited)."""
    if not current_app.config.get("OIDC_ADMIN_GROUP"):
        return
    admin = _in_admin_group(claims)
    if user.is_admin == admin:
        return
    user.is_admin = admin
    db.session.commit()
    # An admin's devices count under every grant of their folder or tag; a demoted one's only where chosen.
    ended = 0 if admin else len(end_sessions_without_access())
    role = "admin" if admin else "user"
    record("user.role_changed", f"changed role of {user.username} to {role} from the groups of {display_name()}",
           actor=user.username, user_id=user.id,
           details={"username": user.username, "role": role, "by": "oidc",
                    "group": current_app.config["OIDC_ADMIN_GROUP"], "sessions_ended": ended},
           strict=False)
