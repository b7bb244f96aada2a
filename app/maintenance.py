"""Background work of one serving process: heartbeats, orphan sweep, audit pruning."""
import logging

log = logging.getLogger("gatehouse.maintenance")


def start(app):
    """Start the periodic work for this process."""


def stop(app):
    """Close what this process still holds, on a clean shutdown."""
