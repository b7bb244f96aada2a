"""Log in, log out, change password, users."""
from .views import bp

__all__ = ["bp"]
