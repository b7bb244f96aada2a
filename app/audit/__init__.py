"""The audit trail: the write path, retention, integrity, the viewer and its CLI."""
