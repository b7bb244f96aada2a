"""The audit viewer: a page and a panel, the polled table partial, exports."""
from datetime import datetime, timezone

from flask import Blueprint, Response, current_app, render_template, request, stream_with_context, url_for
from flask_login import current_user, login_required

from app.dbtypes import iso_utc, now_utc

from . import export
from .events import CATALOGUE, GROUPS, record
from .forwarding import queue_status
from .query import PAGE_SIZES, parse_filters, search

bp = Blueprint("audit", __name__, url_prefix="/audit")


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


def _context(standalone):
    """Build everything the page, the panel and the partial render from."""
    filters = parse_filters(request.args)
    page = None if filters.errors else search(filters, current_user)
    keep = {"standalone": 1} if standalone else {}

    def rows_url(number):
        return url_for("audit.rows", **filters.with_page(number), **keep)

    return {
        "filters": filters, "page": page, "standalone": standalone,
        "rows_url": rows_url, "catalogue": CATALOGUE, "groups": GROUPS, "page_sizes": PAGE_SIZES,
        "updated": iso_utc(now_utc()), "forwarding": _forwarding(),
    }


def _forwarding():
    """Return the syslog queue's depth and oldest age for an admin, or None (no targets, or not an admin)."""
    if not current_app.config.get("SYSLOG_TARGETS") or not current_user.is_admin:
        return None
    depth, age = queue_status()
    return {"depth": depth, "age": age, "stalled": age is not None and age > current_app.config["SYSLOG_STALL_SECONDS"]}


def _viewed(filters):
    """Record one audit.viewed per opening of the viewer (polls do not count)."""
    record("audit.viewed", "opened the audit viewer", details={"filters": filters.args}, strict=False)


@bp.get("/")
def index():
    """Show the viewer as its own page; the URL carries the filters."""
    context = _context(standalone=True)
    _viewed(context["filters"])
    return render_template("audit/index.html", **context), 422 if context["filters"].errors else 200


@bp.get("/panel")
def panel():
    """Render the viewer for the panel over the terminals."""
    context = _context(standalone=False)
    _viewed(context["filters"])
    return render_template("audit/_viewer.html", **context), 422 if context["filters"].errors else 200


@bp.get("/rows")
def rows():
    """Render only the polled table partial."""
    context = _context(standalone=request.args.get("standalone") == "1")
    return render_template("audit/_table.html", **context), 422 if context["filters"].errors else 200


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
            record("audit.exported", f"exported {counter[0]} audit events as {fmt.upper()}",
                   details={"format": fmt, "filters": filters.args, "rows": counter[0], "complete": complete},
                   strict=False)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return Response(stream_with_context(generate()), mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="gatehouse-audit-{stamp}.{fmt}"'})

