"""Devices: SSH targets with their credentials, host keys, reaching them over SSH and testing a connection."""


def init_app(app):
    """Wire devices into app: the device pages with their connection test."""
    # Imported here, not at the top: the terminal bridge imports devices.ssh, which must not pull in Flask views.
    # A blueprint's routes are set once, before its first registration: connection_test adds its own on import.
    from . import bulk, connection_test  # noqa: F401  (add import/export and Test connection to the blueprint)
    from .views import bp

    app.register_blueprint(bp)
