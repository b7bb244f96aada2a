"""Device CRUD, SSH key upload and generation, secrets at rest."""
from .views import bp

__all__ = ["bp"]
