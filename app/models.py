"""Every model, imported in one place so the metadata (and Alembic) sees all tables."""
from app.audit.models import AuditChainHead, AuditEvent
from app.auth.models import LoginSession, User
from app.devices.models import Device, DeviceTag, Favourite, HostKey, OfferedHostKey
from app.leases import Lease
from app.teams.models import Grant, GrantOwner, Team, TeamMember
from app.terminals.models import SessionCommand, TerminalSession

__all__ = ["AuditChainHead", "AuditEvent", "Lease", "LoginSession", "User", "Device", "DeviceTag", "Favourite",
           "HostKey", "OfferedHostKey", "Grant", "GrantOwner", "Team", "TeamMember", "SessionCommand", "TerminalSession"]
