"""gunicorn settings: the gevent worker (see docs/serving.md for why and for the limits)."""
import os
import sys

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


def when_ready(server):
    """Tell the person at the console where to point the browser."""
    host, _, port = bind.rpartition(":")
    print(f"\n  Gatehouse is running: open http://{host or '127.0.0.1'}:{port}/\n", file=sys.stderr, flush=True)


def post_worker_init(worker):
    """Start the worker's background work: heartbeats, orphan sweep, audit pruning."""
    from app.maintenance import start

    start(worker.wsgi, is_alive=lambda: worker.alive)


def worker_exit(server, worker):
    """Close the terminal sessions this worker still holds (reason server_restart)."""
    from app.maintenance import stop

    stop(worker.wsgi)
