"""The public origin of Gatehouse (scheme://host[:port]) and the websocket Origin check that uses it."""
import logging
from urllib.parse import urlsplit

from flask import abort, current_app, request

log = logging.getLogger("gatehouse.origins")

DEFAULT_PORTS = {"http": 80, "https": 443}
# Headers a trusted hop may set about the browser's address; X-Forwarded-For is ProxyFix's alone.
SHORT_FILLED = ("HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT")


def normalize_origin(value):
    """Return scheme://host[:port] in lower case without a default port, or None for anything else."""
    try:
        parts = urlsplit((value or "").strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS or not host or parts.username is not None or parts.path not in ("", "/"):
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + ("" if port in (None, DEFAULT_PORTS[scheme]) else f":{port}")


def public_origin():
    """Return the origin browsers use for Gatehouse: PUBLIC_URL's, else the request's as the proxies describe it."""
    configured = current_app.config.get("PUBLIC_URL")
    if configured:
        return normalize_origin(configured)
    # After ProxyFix, scheme and Host are the browser's when the trusted hops pass them on (README).
    return normalize_origin(f"{request.scheme}://{request.host}")


def check_websocket_origin():
    """Refuse (403) a websocket upgrade whose Origin is not the public origin: cross-site websocket hijacking."""
    sent = request.headers.get("Origin", "")
    expected = public_origin()
    if expected is None or normalize_origin(sent) != expected:
        log.warning("terminal refused: Origin %r is not the public origin %r (set PUBLIC_URL to the address "
                    "people open Gatehouse at, or see the README on reverse proxies)", sent, expected)
        abort(403, "Cross-origin terminal connections are refused.")


def fill_short_forwarded(wsgi_app, hops):
    """Let a forwarded scheme, host or port written by fewer hops than trusted count (the nearest value wins)."""

    def middleware(environ, start_response):
        """Repeat the nearest value of a short forwarded header as often as hops are trusted."""
        # ProxyFix ignores a header with fewer than `hops` values, so one TLS proxy in front of a plain one
        # that passes X-Forwarded-Proto on would be lost. The rightmost value is the one the nearest writing hop
        # set: a client can only add values to its left. A page in a browser cannot set these headers at all
        # (the WebSocket API sends none), so a value no hop wrote can mislead only the client that sent it.
        for key in SHORT_FILLED:
            values = [v.strip() for v in environ.get(key, "").split(",") if v.strip()]
            if 0 < len(values) < hops:
                environ[key] = ", ".join([values[-1]] * hops)
        return wsgi_app(environ, start_response)

    return middleware
