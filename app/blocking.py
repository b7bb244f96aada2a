"""Run CPU-heavy calls off the event loop that every terminal on a gevent worker shares."""
import sys


def run_blocking(func, *args, **kwargs):
    """Call func in gevent's thread pool when the process is monkey-patched, else directly."""
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            import gevent

            return gevent.get_hub().threadpool.apply(func, args, kwargs)
    return func(*args, **kwargs)
