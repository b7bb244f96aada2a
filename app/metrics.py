"""Prometheus metrics: what an operator graphs and alerts on, counted where the work happens.

The pump counts terminal bytes, the live terminal counts itself open and closed, the trail counts its writes and
their time. They import this module, which imports nothing of the app. Values kept in the database (the
outbox's depth) are read at each scrape by the functions rooms register with `read_at_scrape`.

Under gunicorn with several workers a scrape reaches one of them: gunicorn.conf.py then sets
PROMETHEUS_MULTIPROC_DIR, and prometheus-client's multiprocess mode adds the workers' values up, so one scrape
sees the whole node. app/operations.py serves them at /metrics.
"""
import logging
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("gatehouse.metrics")

TERMINALS_OPEN = Gauge("gatehouse_terminals_open", "Terminal sessions held by this node, attached or detached",
                       multiprocess_mode="livesum")
TERMINAL_BYTES = Counter("gatehouse_terminal_bytes", "Bytes through terminals: in (browser to device) or out",
                         ["direction"])
AUDIT_EVENTS = Counter("gatehouse_audit_events", "Events appended to the audit trail, by action and outcome "
                       "(auth.login_failed counts failed log-ins)", ["action", "outcome"])
AUDIT_WRITE_FAILURES = Counter("gatehouse_audit_write_failures", "Audit events that could not be written")
AUDIT_WRITE_SECONDS = Histogram("gatehouse_audit_write_seconds", "Time to append one event to the audit trail",
                                buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))

_at_scrape = []  # (name, help, read): read() returns a number, or {label value: number} for label `kind`


def read_at_scrape(name, help_text, read, label=None):
    """Report read() as the gauge `name` at every scrape (read runs inside the app context of /metrics)."""
    _at_scrape.append((name, help_text, read, label))


class _ReadAtScrape:
    """A collector that asks the registered functions; one that fails is left out of that scrape and logged."""

    def collect(self):
        for name, help_text, read, label in _at_scrape:
            try:
                value = read()
            except Exception as exc:  # a database that does not answer must not hide the other metrics
                log.warning("metric %s not read: %s", name, exc)
                continue
            family = GaugeMetricFamily(name, help_text, labels=[label] if label else None)
            if label:
                for key, number in sorted(value.items()):
                    family.add_metric([key], number)
            else:
                family.add_metric([], value)
            yield family


def exposition():
    """Return the metrics in Prometheus' text format: this node's counters, then the values read now."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = PROCESS_REGISTRY
    now = CollectorRegistry()
    now.register(_ReadAtScrape())
    return generate_latest(counted) + generate_latest(now)
