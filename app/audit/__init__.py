"""The audit trail: the write path, retention, integrity, the viewer and its CLI."""
from app.metrics import read_at_scrape


def init_app(app):
    """Wire the trail into app: the viewer and the `flask audit` commands."""
    # Imported here, not at the top: the write path (events.py) is imported everywhere and needs neither.
    from .cli import audit_cli
    from .health import outbox_depth
    from .views import bp

    app.register_blueprint(bp)
    app.cli.add_command(audit_cli)
    read_at_scrape("gatehouse_audit_outbox_depth", "Events waiting to reach each syslog target or the alert "
                   "webhook (the whole cluster)", outbox_depth, label="target")
