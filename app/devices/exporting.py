"""The device list as CSV: the columns an import reads back, plus the kind of credential and the owner; no secret.

Cells a spreadsheet would run as a formula (= + - @, a tab or a carriage return first) start with a quote, and
hidden characters show as escapes: the trail's export rule (app.audit.export.neutralise).
"""
import csv
import io

from app.audit.export import neutralise

COLUMNS = ("name", "host", "port", "user", "folder", "tags", "auth", "owner")


def credential_kind(device):
    """Return what the device logs in with: "password", "key", or "none" (imported, not set yet)."""
    if device.password_enc is None and device.private_key_enc is None:
        return "none"
    return device.auth_type


def as_csv(devices, owners):
    """Return the CSV text of devices; owners maps owner ids to user names."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for device in devices:
        writer.writerow([neutralise(value) for value in (
            device.name, device.host, device.port, device.username, device.folder or "", " ".join(device.tags),
            credential_kind(device), owners.get(device.owner_id, ""))])
    return buffer.getvalue()
