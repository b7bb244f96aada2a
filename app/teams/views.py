"""Teams and their access grants (admins only); htmx swaps the teams panel in place."""
from flask import Blueprint, abort, render_template, request
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.access import admin_required
from app.audit.events import record
from app.auth.models import User
from app.devices.models import Device, DeviceTag
from app.extensions import db
from app.session_ends import end_sessions_without_access

from .forms import GrantForm, MemberForm, OwnersForm, TeamForm
from .models import GRANT_FOLDER, Grant, Team, TeamMember
from .owners import device_count, owner_counts, owner_ids, owner_rows, owners_of, set_owners

bp = Blueprint("teams", __name__, url_prefix="/teams")


def describe(kind, value):
    """Return what a grant covers, in words: the devices in folder core / the devices tagged db."""
    return f"the devices {_where(kind, value)}"


def _where(kind, value):
    """Return where a grant's devices are, in words: in folder core / tagged db."""
    return f"in folder {value}" if kind == GRANT_FOLDER else f"tagged {value}"


def _member_form(team, members, users, posted=False):
    """Return the add-member form of a team (posted: as submitted), offering the users not in it yet."""
    form = MemberForm(prefix=f"team{team.id}-") if posted else MemberForm(formdata=None, prefix=f"team{team.id}-")
    inside = {user.id for user in members}
    form.user_id.choices = [(user.id, user.username) for user in users if user.id not in inside]
    return form


def _users():
    """Return every user, by name (the member and owner choices)."""
    return db.session.scalars(select(User).order_by(User.username)).all()


def _with_owners(form, users, ticked=None):
    """Give form (a grant or owners form) every user as owner choices; return the rows to show, with each user's
    device count in the form's folder or tag (ticked: the owners to tick; None: those the form holds)."""
    form.owners.choices = [(user.id, user.username) for user in users]
    ticked = set(form.owners.data or ()) if ticked is None else ticked
    return owner_rows(users, owner_counts(getattr(form, "kind", None) and form.kind.data,
                                          getattr(form, "value", None) and form.value.data), ticked)


def _grant_parts(grants, users):
    """Return, per grant, its owners' names, how many devices it covers and its owners form with rows."""
    names = owners_of([grant.id for grant in grants])
    parts = {}
    for grant in grants:
        form = OwnersForm(formdata=None, prefix=f"grant{grant.id}-")
        rows = owner_rows(users, owner_counts(grant.kind, grant.value), owner_ids(grant.id))
        form.owners.choices = [(user.id, user.username) for user in users]
        parts[grant.id] = {"owners": names[grant.id], "devices": device_count(grant.id), "form": form, "rows": rows}
    return parts


def _context(notice=None, failed=None, new_team=None, focus=None):
    """Return what the teams panel shows; failed = (team id, form) puts a refused form back with its errors."""
    teams = db.session.scalars(select(Team).order_by(func.lower(Team.name), Team.id)).all()
    users = _users()
    members = {team.id: [] for team in teams}
    for team_id, user in db.session.execute(select(TeamMember.team_id, User).join(User, User.id == TeamMember.user_id)
                                            .order_by(User.username)):
        members[team_id].append(user)
    grants = {team.id: [] for team in teams}
    for grant in db.session.scalars(select(Grant).order_by(Grant.kind, Grant.value)):
        grants[grant.team_id].append(grant)
    folders = db.session.scalars(select(Device.folder).where(Device.folder.is_not(None), Device.folder != "")
                                 .distinct()).all()
    tags = db.session.scalars(select(DeviceTag.tag).distinct()).all()
    forms = {team.id: {"member": _member_form(team, members[team.id], users),
                       "grant": GrantForm(formdata=None, prefix=f"team{team.id}-grant-")} for team in teams}
    if failed:
        team_id, form = failed
        forms[team_id]["grant" if isinstance(form, GrantForm) else "member"] = form
    for team in teams:
        forms[team.id]["owners"] = _with_owners(forms[team.id]["grant"], users)
    return dict(teams=teams, members=members, grants=grants, forms=forms,
                parts=_grant_parts([g for rows in grants.values() for g in rows], users),
                folders=sorted(folders), tags=sorted(tags),
                new_team=new_team or TeamForm(formdata=None), notice=notice, focus=focus, describe=describe)


def _panel(status=200, **context):
    """Render the teams panel alone (what every change answers with)."""
    return render_template("teams/_panel.html", **_context(**context)), status


def _team_or_404(team_id):
    """Return the team, or 404."""
    team = db.get_or_404(Team, team_id)
    return team


def _end_sessions():
    """End the open terminals whose user lost access with the change just committed; return how many."""
    return len(end_sessions_without_access())


def _commit_and_end(action, words, details, notice, focus):
    """Commit a change that takes access away, end the terminals it took, record it (sessions_ended) and answer."""
    db.session.commit()
    ended = _end_sessions()
    record(action, words, details={**details, "sessions_ended": ended})
    return _panel(notice=notice + _ended_note(ended), focus=focus)


@bp.get("/")
@admin_required
def index():
    """List the teams, their members and grants."""
    return render_template("teams/index.html", **_context())


@bp.post("/")
@admin_required
def create():
    """Create a team."""
    form = TeamForm()
    if not form.validate_on_submit():
        return _panel(new_team=form, focus="name", status=422)
    team = Team(name=form.name.data)
    db.session.add(team)
    try:
        db.session.commit()
    except IntegrityError:  # created by someone else between the check and the insert
        db.session.rollback()
        form.name.errors.append(f"There is already a team named {form.name.data}.")
        return _panel(new_team=form, focus="name", status=422)
    record("team.created", f"created team {team.name}", details={"team": team.name})
    return _panel(notice=f"Team {team.name} created.", focus=f"team{team.id}-user_id")


@bp.post("/<int:team_id>/delete")
@admin_required
def delete(team_id):
    """Delete a team with its members and grants; its members' terminals to devices they lose end."""
    team = _team_or_404(team_id)
    name = team.name
    members = db.session.scalar(select(func.count()).where(TeamMember.team_id == team.id))
    grants = [f"{grant.kind} {grant.value}" for grant in db.session.scalars(select(Grant).filter_by(team_id=team.id))]
    db.session.delete(team)
    return _commit_and_end("team.deleted", f"deleted team {name}",
                           {"team": name, "members": members, "grants": grants}, f"Team {name} deleted.", "name")


@bp.post("/<int:team_id>/members")
@admin_required
def add_member(team_id):
    """Add a user to a team."""
    team = _team_or_404(team_id)
    users = db.session.scalars(select(User).order_by(User.username)).all()
    members = db.session.scalars(select(User).join(TeamMember, TeamMember.user_id == User.id)
                                 .where(TeamMember.team_id == team.id)).all()
    form = _member_form(team, members, users, posted=True)
    if not form.validate_on_submit():
        return _panel(failed=(team.id, form), focus=form.user_id.id, status=422)
    user = db.session.get(User, form.user_id.data)
    db.session.add(TeamMember(team_id=team.id, user_id=user.id))
    try:
        db.session.commit()
    except IntegrityError:  # added by someone else meanwhile: nothing to do
        db.session.rollback()
        return _panel(notice=f"{user.username} is already in team {team.name}.", focus=form.user_id.id)
    record("team.member_added", f"added {user.username} to team {team.name}",
           details={"team": team.name, "user": user.username})
    return _panel(notice=f"{user.username} added to team {team.name}.", focus=form.user_id.id)


@bp.post("/<int:team_id>/members/<int:user_id>/delete")
@admin_required
def remove_member(team_id, user_id):
    """Take a user out of a team; their terminals to devices they no longer may use end."""
    team = _team_or_404(team_id)
    member = db.session.get(TeamMember, (team.id, user_id))
    user = db.session.get(User, user_id)
    if member is None or user is None:
        abort(404)
    db.session.delete(member)
    return _commit_and_end("team.member_removed", f"removed {user.username} from team {team.name}",
                           {"team": team.name, "user": user.username},
                           f"{user.username} removed from team {team.name}.", f"team{team.id}-user_id")


@bp.post("/<int:team_id>/grants")
@admin_required
def grant(team_id):
    """Let a team use the devices of a folder or a tag."""
    team = _team_or_404(team_id)
    form = GrantForm(prefix=f"team{team.id}-grant-")
    form.owners.choices = [(user.id, user.username) for user in _users()]
    if not form.validate_on_submit():
        return _panel(failed=(team.id, form), focus=_first_error(form), status=422)
    row = Grant(team_id=team.id, kind=form.kind.data, value=form.value.data, shares_trail=form.shares_trail.data,
                created_by=current_user.username)
    db.session.add(row)
    try:
        db.session.flush()
        owners, _ = set_owners(row.id, form.owners.data)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        form.value.errors.append(f"Team {team.name} already has {describe(form.kind.data, form.value.data)}.")
        return _panel(failed=(team.id, form), focus=form.value.id, status=422)
    devices = device_count(row.id)
    record("access.granted", f"granted team {team.name} {describe(row.kind, row.value)}",
           details={"team": team.name, "kind": row.kind, "value": row.value, "shares_trail": row.shares_trail,
                    "owners": owners, "devices": devices})
    return _panel(notice=f"Team {team.name} may now use {describe(row.kind, row.value)}.", focus=form.value.id)


@bp.post("/grants/<int:grant_id>/delete")
@admin_required
def revoke(grant_id):
    """Take a grant back; the open terminals it alone allowed end."""
    row = db.get_or_404(Grant, grant_id)
    team = db.session.get(Team, row.team_id)
    kind, value, shares_trail = row.kind, row.value, row.shares_trail
    devices = device_count(row.id)
    db.session.delete(row)
    return _commit_and_end("access.revoked", f"revoked team {team.name}'s access to {describe(kind, value)}",
                           {"team": team.name, "kind": kind, "value": value, "shares_trail": shares_trail,
                            "devices": devices},
                           f"Team {team.name} no longer has {describe(kind, value)}.", f"team{team.id}-grant-value")


@bp.get("/<int:team_id>/grant-owners")
@admin_required
def suggest_owners(team_id):
    """Render a grant form's owner choices for the folder or tag typed so far, ticking the owners of its devices."""
    team = _team_or_404(team_id)
    form = GrantForm(formdata=request.args, prefix=f"team{team.id}-grant-", meta={"csrf": False})
    form.value.data = (form.value.data or "").strip()
    rows = _with_owners(form, _users(), ticked=set(owner_counts(form.kind.data, form.value.data)))
    return render_template("teams/_owners.html", owners_field=form.owners, rows=rows)


@bp.post("/grants/<int:grant_id>/owners")
@admin_required
def change_owners(grant_id):
    """Choose again whose devices a grant covers; members' open terminals to devices it no longer covers end."""
    row = db.get_or_404(Grant, grant_id)
    team = db.session.get(Team, row.team_id)
    form = OwnersForm(prefix=f"grant{row.id}-")
    form.owners.choices = [(user.id, user.username) for user in _users()]
    if not form.validate_on_submit():
        return _panel(notice=" ".join(form.owners.errors) or "The form expired; try again.", status=422)
    added, removed = set_owners(row.id, form.owners.data)
    db.session.commit()
    if not added and not removed:
        return _panel(notice=f"Nothing changed: {describe(row.kind, row.value)} of team {team.name}.")
    ended = _end_sessions()
    changes = "; ".join(part for part in (added and "added " + ", ".join(added),
                                          removed and "removed " + ", ".join(removed)) if part)
    record("access.owners_changed", f"changed whose devices team {team.name} may use {_where(row.kind, row.value)}: "
           f"{changes}", details={"team": team.name, "kind": row.kind, "value": row.value, "added": added,
                                  "removed": removed, "owners": owners_of([row.id])[row.id],
                                  "devices": device_count(row.id), "sessions_ended": ended})
    return _panel(notice=f"Team {team.name} now uses {describe(row.kind, row.value)} of "
                         f"{_names(owners_of([row.id])[row.id])}." + _ended_note(ended), focus=f"grant{row.id}-save")


def _names(owners):
    """Return the owners a grant covers, in words (admins always count)."""
    return ", ".join(owners) + " and admins" if owners else "admins only"


def _first_error(form):
    """Return the id of the first field of form with an error."""
    return next((field.id for field in form if field.errors), None)


def _ended_note(count):
    """Return the notice's words on the terminals a change ended (nothing when none)."""
    if not count:
        return ""
    return f" {count} open terminal{'s' if count != 1 else ''} ended."
