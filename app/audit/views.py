"""The audit viewer: a page and a panel, the polled table partial, exports."""
from datetime import datetime, timezone

from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template, request,
                   stream_with_context, url_for)
from flask_login import current_user, login_required

from app.dbtypes import iso_utc, now_utc

from . import export, review, summary
from .catalogue import CATALOGUE, GROUPS
from .events import AuditWriteError, record
from .forwarding import queue_status
from .query import PAGE_SIZES, parse_filters, search, time_arg


bp = Blueprint("audit", __name__, url_prefix="/audit")
bp.add_app_template_global(time_arg)
TABS = ("events", "summary", "review")  # the summary and the review are for admins only


@bp.before_request
@login_required
def require_login():
    """Every audit route needs a logged-in user (what they see is decided in query.py)."""


@bp.app_template_filter("ago")
def ago(moment):
    """Describe how long ago a UTC moment was, for the hover text."""
    seconds = int((now_utc() - moment).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now" if seconds < 10 else f"{seconds} seconds ago"


def _admin_only():
    """Answer 404 to anyone but an admin: for them the summary and the review do not exist."""
    if not current_user.is_admin:
        abort(404)


def _tab():
    """Return the tab the URL asks for (events by default); an unknown one, or one not theirs, is a 404."""
    tab = request.args.get("tab", "events")
    if tab not in TABS:
        abort(404)
    if tab != "events":
        _admin_only()
    return tab


def _context(standalone, tab="events"):
    """Build everything the page, the panel and the partials of one tab render from."""
    filters = parse_filters(request.args)
    keep = {"standalone": 1} if standalone else {}
    context = {
        "filters": filters, "standalone": standalone, "tab": tab, "keep": keep, "catalogue": CATALOGUE,
        "updated": iso_utc(now_utc()),
    }
    if tab == "summary":
        context["summary"] = summary.build()
    elif tab == "review":
        context.update(_review_context())
    else:
        page = None if filters.errors else search(filters, current_user)

        def rows_url(number):
            return url_for("audit.rows", **filters.with_page(number), **keep)

        context.update(page=page, rows_url=rows_url, groups=GROUPS, page_sizes=PAGE_SIZES, forwarding=_forwarding())
    return context


def _review_context():
    """Return the unreviewed period (up to the head now), what it holds, and the last reviews."""
    period = review.period()
    return {"period": period, "findings": review.findings(period), "reviews": review.history(),
            "overdue": review.overdue(period),
            "comment": "", "review_error": None, "comment_max": review.COMMENT_MAX}


def _status(context):
    """Return 422 when the events tab was asked for with filters that make no sense, else 200."""
    return 422 if context["tab"] == "events" and context["filters"].errors else 200


def _forwarding():
    """Return the syslog queue's depth and oldest age for an admin, or None (no targets, or not an admin)."""
    if not current_app.config.get("SYSLOG_TARGETS") or not current_user.is_admin:
        return None
    depth, age = queue_status()
    return {"depth": depth, "age": age, "stalled": age is not None and age > current_app.config["SYSLOG_STALL_SECONDS"]}


def _viewed(context):
    """Record one audit.viewed per opening of the viewer or of one of its tabs (polls do not count)."""
    details = {"filters": context["filters"].args}
    if context["tab"] != "events":
        details["tab"] = context["tab"]
    record("audit.viewed", "opened the audit viewer" + ("" if context["tab"] == "events" else f" ({context['tab']})"),
           details=details, strict=False)


@bp.get("/")
def index():
    """Show the viewer as its own page; the URL carries the tab and the filters."""
    context = _context(standalone=True, tab=_tab())
    _viewed(context)
    return render_template("audit/index.html", **context), _status(context)


@bp.get("/panel")
def panel():
    """Render the viewer for the panel over the terminals."""
    context = _context(standalone=False, tab=_tab())
    _viewed(context)
    return render_template("audit/_viewer.html", **context), _status(context)


@bp.get("/summary")
def summary_part():
    """Render only the polled security summary (admins)."""
    _admin_only()
    context = _context(standalone=request.args.get("standalone") == "1", tab="summary")
    return render_template("audit/_summary.html", **context)


@bp.post("/review")
def mark_reviewed():
    """Mark the period shown (up to its hidden to_id) reviewed, with the optional comment (admins)."""
    _admin_only()
    standalone = request.args.get("standalone") == "1"
    try:
        row = review.mark(request.form.get("to_id"), request.form.get("comment"))
    except (review.ReviewError, AuditWriteError) as exc:
        failed = isinstance(exc, AuditWriteError)
        context = _context(standalone, tab="review")
        context.update(comment=(request.form.get("comment") or "")[:review.COMMENT_MAX * 2],
                       review_error="The audit trail cannot be written: the review was not recorded." if failed
                       else str(exc))
        return render_template("audit/index.html" if standalone else "audit/_viewer.html", **context), \
            503 if failed else 422
    details = row["details"]
    flash(f"Marked events {details['from_id']} to {details['to_id']} reviewed.", "info")
    return redirect(url_for("audit.index" if standalone else "audit.panel", tab="review"))


@bp.get("/rows")
def rows():
    """Render only the polled table partial."""
    context = _context(standalone=request.args.get("standalone") == "1")
    return render_template("audit/_table.html", **context), _status(context)


def _narrowed(filters):
    """Return the words an export's message adds for the command filter (the details name every filter)."""
    return f" of the sessions where a command containing {filters.command!r} was typed" if filters.command else ""


@bp.get("/export.<fmt>")
def export_events(fmt):
    """Stream the filtered events as CSV or JSON Lines; the export itself is audited."""
    if fmt not in ("csv", "jsonl"):
        return Response("Export format must be csv or jsonl.\n", 404, mimetype="text/plain")
    filters = parse_filters(request.args)
    if filters.errors:
        return Response("\n".join(filters.errors) + "\n", 422, mimetype="text/plain")
    user = current_user._get_current_object()
    counter = [0]

    def generate():
        complete = False
        try:
            records = export.rows(filters, user, counter)
            yield from (export.as_csv(records) if fmt == "csv" else export.as_jsonl(records))
            complete = True
        finally:
            record("audit.exported", f"exported {counter[0]} audit events as {fmt.upper()}{_narrowed(filters)}",
                   details={"format": fmt, "filters": filters.args, "rows": counter[0], "complete": complete},
                   strict=False)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return Response(stream_with_context(generate()), mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="gatehouse-audit-{stamp}.{fmt}"'})

