"""The S3 clients of a process (app.recording.s3store): made once per event loop, from one boto3 session.

Credentials come from boto3's usual chain (environment, profile, instance role); nothing here reads or keeps them.
"""
import logging
import sys
import threading
import weakref

_clients = weakref.WeakKeyDictionary()  # {an event loop, or the process: {(endpoint, region): client}}
_clients_lock = threading.Lock()
_boto = {}  # the one boto3 session the clients are made from (they share its loaded API models)
for _noisy in ("botocore", "boto3"):  # their debug lines carry signed request headers
    logging.getLogger(_noisy).setLevel(logging.WARNING)


class _Process:
    """The owner of the clients of a process without gevent: one client serves every thread."""


_PROCESS = _Process()


def _owner():
    """Return what a client's pooled connections may be shared within. Under gevent a socket belongs to the
    event loop of the thread that made it, and the thread pool (where recordings are flushed) runs one loop per
    thread: a kept-alive connection used from another thread fails ("Cannot switch to a different thread"), so
    each loop gets its own client. Without gevent one client is shared by all threads (boto3 clients are
    thread-safe)."""
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            import gevent

            return gevent.get_hub()
    return _PROCESS


def shared_client(endpoint=None, region=None):
    """Return the S3 client of this event loop (or process) for an endpoint and region, made once."""
    owner = _owner()
    with _clients_lock:
        clients = _clients.setdefault(owner, {})
        if (endpoint, region) not in clients:
            import boto3
            from botocore.config import Config

            config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30,
                            max_pool_connections=32)
            if "session" not in _boto:
                _boto["session"] = boto3.session.Session()
            clients[endpoint, region] = _boto["session"].client(
                "s3", endpoint_url=endpoint or None, region_name=region or None, config=config)
        return clients[endpoint, region]
