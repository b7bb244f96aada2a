"""gunicorn settings: the gevent worker (see docs/serving.md for why and for the limits)."""
import os
import shutil
import signal
import sys
import tempfile
import time

from gunicorn.glogging import Logger

bind = os.environ.get("GATEHOUSE_BIND", "127.0.0.1:8000")
worker_class = "gevent"
# One process carries hundreds of terminals; add workers for more cores (sessions stay per process).
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# Open connections per worker: every terminal holds one for its whole life.
worker_connections = int(os.environ.get("GATEHOUSE_WORKER_CONNECTIONS", "2000"))
timeout = 30
graceful_timeout = int(os.environ.get("GATEHOUSE_GRACEFUL_TIMEOUT", "10"))
keepalive = 5
# ProxyFix (TRUSTED_PROXY_HOPS) is the one place that reads X-Forwarded-*; gunicorn reads none.
forwarded_allow_ips = ""
secure_scheme_headers = {}
accesslog = os.environ.get("GATEHOUSE_ACCESS_LOG", "-") or None
errorlog = "-"
# No control socket: one fixed path per user would collide between instances.
control_socket_disable = True
loglevel = "info"


class _UtcLogger(Logger):
    """Stamp gunicorn's own lines in UTC ISO-8601 with milliseconds, like Gatehouse's, whatever TZ says."""

    error_fmt = r"%(asctime)s.%(msecs)03dZ [%(process)d] [%(levelname)s] %(message)s"
    datefmt = r"%Y-%m-%dT%H:%M:%S"

    def setup(self, cfg):
        """Set the handlers up as gunicorn does, then make their clocks UTC."""
        super().setup(cfg)
        for handler in self.error_log.handlers:
            if handler.formatter is not None:
                handler.formatter.converter = time.gmtime


logger_class = _UtcLogger


def on_starting(server):
    """Give the workers one new folder for their metrics, so /metrics adds every worker up (prometheus-client's
    multiprocess mode); a folder set in PROMETHEUS_MULTIPROC_DIR is used as it is and kept."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = server.metrics_folder = tempfile.mkdtemp(prefix="gatehouse-metrics-")


def child_exit(server, worker):
    """Drop a stopped worker's gauges from the metrics (its counters stay in the node's totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics folder this start made."""
    if getattr(server, "metrics_folder", None):
        shutil.rmtree(server.metrics_folder, ignore_errors=True)


def when_ready(server):
    """Tell the person at the console where to point the browser."""
    host, _, port = bind.rpartition(":")
    print(f"\n  Gatehouse is running: open http://{host or '127.0.0.1'}:{port}/\n", file=sys.stderr, flush=True)


def post_worker_init(worker):
    """Start the worker's background jobs (app/jobs/table.py lists them) once the app is loaded."""
    from app.jobs.table import start

    _quit_once(worker)
    start(worker.wsgi, is_alive=lambda: worker.alive)
    _calm_collector()


def _calm_collector():
    """Keep the cyclic garbage collector from pausing every terminal: a full collection over the objects of a few
    hundred terminals took 200-300 ms on the event loop (bench.terminals at 300). The objects of the loaded app are
    frozen out of it, and collections come at 10 000 new objects with the older generations much rarer."""
    import gc

    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


def _quit_once(worker):
    """Let only the first SIGINT/SIGQUIT stop the worker; a second one is a no-op, not a traceback."""
    # Ctrl-C reaches the worker twice: SIGINT from the terminal, then SIGQUIT from the master. gevent runs each
    # handler as a greenlet that calls sys.exit(0); the second one fires during interpreter shutdown and prints
    # "SystemExit: 0 ... failed with SystemExit", which looks like a crash.
    first = worker.handle_quit
    quitting = []

    def handle_quit(sig, frame):
        if not quitting:
            quitting.append(sig)
            first(sig, frame)

    worker.handle_quit = handle_quit
    signal.signal(signal.SIGINT, handle_quit)
    signal.signal(signal.SIGQUIT, handle_quit)


def worker_exit(server, worker):
    """Stop the worker's jobs and close the terminal sessions it still holds (reason server_restart)."""
    from app.jobs.table import stop

    app = getattr(worker, "wsgi", None)  # absent when the worker failed to boot: it holds nothing
    if app is not None:
        stop(app)
