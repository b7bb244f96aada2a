"""Log in, log out, change password, users."""
from .users import bp as users_bp
from .views import bp

__all__ = ["bp", "users_bp"]
