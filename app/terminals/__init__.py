"""The terminal page, the websocket route and the SSH bridge."""
from .views import bp

__all__ = ["bp"]
