"""Every model, imported in one place so the metadata (and Alembic) sees all tables."""
from app.audit.models import AuditChainHead, AuditEvent, AuditMaintenance
from app.auth.models import User
from app.devices.models import Device
from app.terminals.models import HostKey, TerminalSession

__all__ = ["AuditChainHead", "AuditEvent", "AuditMaintenance", "User", "Device", "HostKey", "TerminalSession"]
