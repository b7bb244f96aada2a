"""Reading the audit trail: filter parsing, the visibility rule, pages."""
import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, false, func, or_, select

from app.extensions import db

from .catalogue import CATALOGUE, GROUPS, SEVERITY_ORDER
from .models import AuditEvent
from .search_index import contains, count_alone, narrow, newest_first

PAGE_SIZES = (25, 50, 100, 200)
SEVERITIES = SEVERITY_ORDER
# One level, or "LEVEL-up": that level and the ones above it (a + would read as a space in a URL).
SEVERITY_CHOICES = SEVERITIES + tuple(f"{level}-up" for level in SEVERITIES[1:3])
MAX_TEXT = 200
# Matches counted before the page says "more than N": an exact count reads every match (the whole trail unfiltered).
COUNT_BOUND = 10_000
# The same for a free text, sooner: each match counted is a row read and checked (a trigram index only names
# candidates; one or two characters have no trigram, and the scan reads bound / share-of-events-matching rows).
TEXT_COUNT_BOUND = 1_000


# Functions user -> a condition on AuditEvent (or None): more events that user may read. The package that knows
# why registers its rule (shared access: sessions on devices an admin shared with a team), so the trail imports
# nothing it records.
_visibility_rules = []


def extend_visibility(rule):
    """Register rule(user) -> condition or None, widening what a non-admin user may read (once, however often asked)."""
    if rule not in _visibility_rules:
        _visibility_rules.append(rule)
    return rule


def visible_events(user):
    """The one visibility rule: an admin sees every event, anyone else their own and what a registered rule adds."""
    query = select(AuditEvent)
    if user.is_admin:
        return query
    # The id and the account's birth: an id handed out again (it is not, but ids live on in
    # archives and other databases) never opens an earlier holder's history.
    own = and_(AuditEvent.user_id == user.id, AuditEvent.occurred_at >= user.created_at)
    extra = [condition for condition in (rule(user) for rule in _visibility_rules) if condition is not None]
    return query.where(or_(own, *extra)) if extra else query.where(own)


# The command filter narrows the trail to the events of the sessions where a matching command was typed. Commands
# belong to the terminals package, which registers the one function that answers: (user, filters) -> a select of
# session ids that user may see (app/terminals/command_filter.py). Without it the filter matches no event.
_command_sessions = []


def answer_commands(rule):
    """Register rule(user, filters) -> a select of the ids of the sessions with a matching command that user may see."""
    _command_sessions[:] = [rule]
    return rule


def command_condition(user, f):
    """Return the condition the command filter puts on AuditEvent: an event of a session where it was typed."""
    if not _command_sessions:
        return false()
    return AuditEvent.session_id.in_(_command_sessions[0](user, f))


@dataclass
class Filters:
    """Validated viewer filters; `args` are the cleaned query parameters that reproduce them."""

    user: str = ""
    action: str = ""
    outcome: str = ""
    severity: str = ""
    ip: str = ""
    since: datetime | None = None
    until: datetime | None = None
    q: str = ""
    command: str = ""  # answered by the terminals package: its list of matching commands, and the events' sessions
    page: int = 1
    size: int = 50
    errors: list = field(default_factory=list)

    @property
    def args(self):
        """Return the non-default filters as query parameters (for URLs, polling, export)."""
        values = {"user": self.user, "action": self.action, "outcome": self.outcome, "severity": self.severity,
                  "ip": self.ip, "q": self.q,
                  "command": self.command, "since": time_arg(self.since), "until": time_arg(self.until)}
        args = {key: value for key, value in values.items() if value}
        if self.size != 50:
            args["size"] = self.size
        return args

    @property
    def text_alone(self):
        """Say whether the free text is the only filter."""
        return bool(self.q) and set(self.args) - {"size"} == {"q"}

    @property
    def command_args(self):
        """Return the filters that also apply to the command search (command, user, time range)."""
        return {key: value for key, value in self.args.items() if key in ("command", "user", "since", "until")}

    @property
    def command_key(self):
        """Return a short name for the command search: its embedded list is kept across polls while it is the same."""
        return hashlib.sha256(json.dumps(self.command_args, sort_keys=True).encode()).hexdigest()[:16]

    def with_page(self, page):
        """Return the query parameters for another page of the same filters."""
        return {**self.args, "page": page} if page > 1 else self.args


def time_arg(value, round_up=False):
    """Return a UTC time as the viewer's URLs say it, to the second (round_up: the next whole second)."""
    if value and round_up and value.microsecond:
        value = value.replace(microsecond=0) + timedelta(seconds=1)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def _parse_time(raw, name, errors):
    """Parse an ISO-8601 time; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace(" ", "T"))
        # Converting to UTC can step outside the years 1..9999 (0001-01-01T00:00+01:00).
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        errors.append(f"{name}: {raw[:40]!r} is not a time (use UTC ISO-8601, e.g. 2026-11-24T08:00:00Z)")
        return None


def parse_filters(args):
    """Validate query parameters into Filters; nonsense becomes an error message, never an exception."""
    f = Filters()
    errors = f.errors
    f.user = args.get("user", "").strip()[:64]
    action = args.get("action", "").strip()
    if action and action not in CATALOGUE and action not in GROUPS:
        errors.append(f"action: {action[:40]!r} is neither an action code nor a group")
    else:
        f.action = action
    outcome = args.get("outcome", "").strip()
    if outcome and outcome not in ("success", "failure"):
        errors.append(f"outcome: {outcome[:40]!r} must be success or failure")
    else:
        f.outcome = outcome
    severity = args.get("severity", "").strip()
    if severity and severity not in SEVERITY_CHOICES:
        errors.append(f"severity: {severity[:40]!r} must be one of {', '.join(SEVERITY_CHOICES)}")
    else:
        f.severity = severity
    ip = args.get("ip", "").strip()
    if ip:
        try:
            f.ip = str(ipaddress.ip_address(ip))  # normalised, as stored
        except ValueError:
            errors.append(f"ip: {ip[:45]!r} is not an IP address")
    for name in ("since", "until"):
        if args.get(name, "").strip():
            setattr(f, name, _parse_time(args[name], name, errors))
    if f.since and f.until and f.since > f.until:
        errors.append("since must be before until")
    _parse_text(f, args, errors)
    _parse_numbers(f, args, errors)
    return f


def _parse_text(f, args, errors):
    """Take the free text and the command; refuse control characters in them and in the user name."""
    for name, what in (("q", "search text"), ("command", "command")):
        setattr(f, name, args.get(name, "").strip())
        if len(getattr(f, name)) > MAX_TEXT:
            errors.append(f"{name}: the {what} is longer than {MAX_TEXT} characters")
            setattr(f, name, "")
    for name in ("user", "q", "command"):
        # PostgreSQL refuses a NUL in a query outright; no one types the other control characters into a search.
        if any(ord(char) < 32 or ord(char) == 127 for char in getattr(f, name)):
            errors.append(f"{name}: control characters may not be used")
            setattr(f, name, "")


def _parse_numbers(f, args, errors):
    """Take page and page size: ASCII digits within range only."""
    for name, allowed in (("page", None), ("size", PAGE_SIZES)):
        raw = args.get(name, "").strip()
        if not raw:
            continue
        # isdigit() alone accepts "²" and other digits that int() refuses.
        number = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 7 else 0
        if number < 1 or (allowed and number not in allowed) or number > 10**6:
            errors.append(f"{name}: {raw[:20]!r} must be " + (f"one of {', '.join(map(str, allowed))}"
                                                           if allowed else "a whole number from 1"))
        else:
            setattr(f, name, number)


def apply_filters(query, f, user):
    """Add the filters' conditions to a select of AuditEvent (user: whose commands the command filter may match)."""
    if f.user:
        query = query.where(AuditEvent.actor == f.user)
    if f.action in GROUPS:
        query = query.where(AuditEvent.action.in_([code for code, spec in CATALOGUE.items() if spec[1] == f.action]))
    elif f.action:
        query = query.where(AuditEvent.action == f.action)
    if f.outcome:
        query = query.where(AuditEvent.outcome == f.outcome)
    if f.severity.endswith("-up"):
        query = query.where(AuditEvent.severity.in_(SEVERITIES[SEVERITIES.index(f.severity[:-3]):]))
    elif f.severity:
        query = query.where(AuditEvent.severity == f.severity)
    if f.ip:
        query = query.where(AuditEvent.source_ip == f.ip)
    if f.since:
        query = query.where(AuditEvent.occurred_at >= f.since)
    if f.until:
        query = query.where(AuditEvent.occurred_at <= f.until)
    if f.q:
        query = _free_text(query, f)
    if f.command:
        query = query.where(command_condition(user, f))
    return query


def _free_text(query, f):
    """Add the free text: alone, the page reads its index newest first (see search); beside a filter with a selective
    index of its own (a user, an address, one action) SQLite starts from that index and probes the matches."""
    if f.text_alone:
        return narrow(query, f.q, AuditEvent.message, AuditEvent.target)
    selective = bool(f.user or f.ip or (f.action and f.action not in GROUPS))
    return query.where(contains(f.q, AuditEvent.message, AuditEvent.target, probe=selective))


@dataclass
class Page:
    """One page of events with the total that matches (an AtLeast when the count stopped at its bound)."""

    rows: list
    total: int
    page: int
    size: int

    @property
    def exact(self):
        """Say whether the total is the exact count (else only a lower bound)."""
        return not isinstance(self.total, AtLeast)

    @property
    def pages(self):
        """Return the number of pages; past a bounded count, those known to exist and the next after a full page."""
        if self.exact:
            return max(1, -(-self.total // self.size))
        return max(-(-(self.total + 1) // self.size), self.page + (len(self.rows) == self.size))


class AtLeast(int):
    """A count that stopped at its bound, shown as "more than N"."""

    def __str__(self):
        return f"more than {int(self)}"


def count_matches(base, f, user):
    """Count the events a select of AuditEvent finds, up to a bound (COUNT_BOUND, TEXT_COUNT_BOUND)."""
    if f.text_alone and user.is_admin:
        # The free text alone, over the whole trail: the index may count it without reading a row.
        alone = count_alone(f.q, AuditEvent.__table__)
        if alone is not None:
            return alone
    bound = TEXT_COUNT_BOUND if f.q else COUNT_BOUND
    bounded = base.order_by(None).with_only_columns(AuditEvent.id).limit(bound + 1)
    total = db.session.scalar(select(func.count()).select_from(bounded.subquery()))
    return AtLeast(bound) if total > bound else total


def search(f, user):
    """Return the page of events the filters select, newest first, that user may see."""
    base = apply_filters(visible_events(user), f, user)
    newest = newest_first(f.q, AuditEvent.__table__) if f.text_alone else AuditEvent.id.desc()
    offset = (f.page - 1) * f.size
    rows = db.session.scalars(base.order_by(newest).limit(f.size).offset(offset)).all()
    # A page that is not full is the last one: what it holds gives the total, no count needed.
    last = len(rows) < f.size and (rows or f.page == 1)
    return Page(rows, offset + len(rows) if last else count_matches(base, f, user), f.page, f.size)
