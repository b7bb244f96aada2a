"""Export the filtered trail as CSV or JSON Lines, streamed in batches.

Neither lets a hidden character fool its reader (app/text.py): CSV, read in a spreadsheet, shows each as a \\uXXXX
escape (the backslash doubled); JSON Lines writes each as a JSON escape, so it parses to the exact hashed value.
"""
import csv
import io
import json

from app.extensions import db
from app.text import json_reveal, reveal_text

from .chain import HASHED_FIELDS
from .events import plain
from .models import AuditEvent
from .query import apply_filters, visible_events

COLUMNS = HASHED_FIELDS + ("hash",)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
BATCH = 1000


def neutralise(value, reveal=True):
    """Keep a spreadsheet from reading a cell as a formula (prefix a quote) or hiding a character (escape it)."""
    text = "" if value is None else str(value)
    text = "'" + text if text.startswith(_FORMULA_START) else text
    return reveal_text(text) if reveal else text


def rows(filters, user, counter):
    """Yield the matching events newest first, a batch at a time (keyset, never all in memory)."""
    base = apply_filters(visible_events(user), filters, user)
    last_id = None
    while True:
        query = base.order_by(AuditEvent.id.desc()).limit(BATCH)
        if last_id is not None:
            query = query.where(AuditEvent.id < last_id)
        batch = db.session.scalars(query).all()
        if not batch:
            return
        for event in batch:
            counter[0] += 1
            yield plain(event, COLUMNS)
        last_id = batch[-1].id
        db.session.expunge_all()


def as_csv(records):
    """Yield CSV text: a header, then one neutralised line per record."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for record in records:
        # ASCII JSON: its escapes already show every hidden character, and doubling its backslashes would break it.
        record["details"] = json.dumps(record["details"], sort_keys=True)
        writer.writerow([neutralise(record[column], reveal=column != "details") for column in COLUMNS])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def as_jsonl(records):
    """Yield one JSON object per line."""
    for record in records:
        yield json_reveal(json.dumps(record, ensure_ascii=False, sort_keys=True)) + "\n"
