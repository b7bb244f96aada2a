"""The audit trail: the write path, retention, integrity, the viewer and its CLI."""
from .views import bp

__all__ = ["bp"]
