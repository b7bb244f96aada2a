"""`flask audit ...`: verify, prune."""
import click


@click.group("audit", help="Inspect and maintain the audit trail.")
def audit_cli():
    """Group the audit commands."""
