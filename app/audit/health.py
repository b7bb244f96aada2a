"""The trail's own health as events: the scheduled verify, disks nearly full, retention settings changed."""
import shutil
import socket
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from app.extensions import db

from .events import record
from .models import AuditEvent, AuditOutbox
from .verification import record_report, run_verify

HYSTERESIS = 2  # percent above the threshold before storage.recovered, so a disk at the edge does not flap


def lease_name():
    """Return the lease of this machine's storage check (leases are 32 characters at most)."""
    return f"storage:{socket.gethostname()}"[:32]


def watched_paths(config):
    """Return {label: folder} of what the trail and its evidence are written to, on this machine."""
    paths = {"instance": config["INSTANCE_DIR"]}  # the signing key, the checkpoint file, a SQLite database
    uri = config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        paths["database"] = str(Path(uri[len("sqlite:///"):].split("?", 1)[0]).parent)
    if config.get("RECORDING") == "on" and not config.get("RECORDINGS_S3_BUCKET"):  # a bucket is on no disk here
        paths["recordings"] = config["RECORDINGS_DIR"]
    if config.get("AUDIT_ARCHIVE_DIR"):
        paths["archive"] = config["AUDIT_ARCHIVE_DIR"]
    return paths


def _usage(folder):
    """Return (free bytes, total bytes) of the disk a folder is on (its nearest existing parent if missing)."""
    path = Path(folder).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    return usage.free, usage.total


def check_storage(usage=_usage):
    """Record storage.low once when a watched disk's free share falls under the threshold, storage.recovered after."""
    config = current_app.config
    threshold = config["STORAGE_WARN_FREE_PERCENT"]
    if not threshold:
        return []
    written, seen = [], set()
    for label, folder in watched_paths(config).items():
        free, total = usage(folder)
        percent = 100.0 * free / total if total else 100.0
        if (free, total) in seen:  # the same disk under another name: one event per disk
            continue
        seen.add((free, total))
        last = db.session.scalar(select(AuditEvent.action).where(
            AuditEvent.action.in_(("storage.low", "storage.recovered")), AuditEvent.target == folder,
        ).order_by(AuditEvent.id.desc()).limit(1))
        db.session.rollback()
        details = {"what": label, "path": folder, "free_percent": round(percent, 1), "free_bytes": free,
                   "total_bytes": total, "threshold_percent": threshold}
        if percent < threshold and last != "storage.low":
            written.append(record("storage.low", f"only {percent:.1f}% free on the disk of the {label} folder "
                                  f"({free // 2**20} MiB of {total // 2**20} MiB)", actor="system", target=folder,
                                  details=details, strict=False))
        elif percent >= threshold + HYSTERESIS and last == "storage.low":
            written.append(record("storage.recovered", f"{percent:.1f}% free again on the disk of the {label} folder",
                                  actor="system", target=folder, details=details, strict=False))
    return written


def check_retention():
    """Record audit.retention_changed when the retention settings differ from the last ones on record."""
    config = current_app.config
    now = {"audit_days": config["AUDIT_RETENTION_DAYS"], "recording_days": config["RECORDING_RETENTION_DAYS"],
           "archive": bool(config.get("AUDIT_ARCHIVE_DIR"))}
    last = db.session.execute(select(AuditEvent.details).where(AuditEvent.action == "audit.retention_changed")
                              .order_by(AuditEvent.id.desc()).limit(1)).scalar()
    db.session.rollback()
    before = {key: (last or {}).get(key) for key in now}
    if before == now:
        return None
    archive = "archived first" if now["archive"] else "not archived"
    if last is None:
        message = (f"retention on record: audit events {now['audit_days']} days ({archive}), "
                   f"recordings {now['recording_days']} days")
    else:
        message = (f"retention changed: audit events {before['audit_days']} → {now['audit_days']} days, "
                   f"recordings {before['recording_days']} → {now['recording_days']} days ({archive})")
    return record("audit.retention_changed", message, actor="system", details={**now, "previous": last and before},
                  strict=False)


def scheduled_verify():
    """Walk the chain and its checkpoints as `flask audit verify` does; record audit.verified (critical if broken)."""
    return record_report(run_verify(scheduled=True))


def outbox_depth():
    """Return {target: events waiting} over the outbox (for /metrics)."""
    rows = db.session.execute(select(AuditOutbox.target, func.count()).group_by(AuditOutbox.target)).all()
    return {target: count for target, count in rows}
