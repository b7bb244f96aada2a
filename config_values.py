"""How each kind of setting is read from the environment and checked: whole numbers, words, addresses, hours,
time zones. A value that makes no sense fails at start-up, naming its variable (ConfigError)."""
import os
import re
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting has a value that makes no sense."""


def int_value(name, default, minimum=None, maximum=None):
    """Read an integer setting and fail fast, naming the variable, on nonsense."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name}={raw!r} must be between {minimum} and {maximum}")
    return value


def str_value(name, default=None):
    """Read a text setting; an empty value counts as unset."""
    raw = os.environ.get(name)
    return raw if raw not in (None, "") else default


def choice_value(name, default, choices):
    """Read a setting that takes one of a few words."""
    value = (str_value(name, default)).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={os.environ.get(name)!r} must be one of {', '.join(choices)}")
    return value


def syslog_targets(name):
    """Read comma-separated tcp://, tls:// or udp://host:port syslog targets; fail naming the variable."""
    targets = []
    for raw in (str_value(name, "") or "").split(","):
        if not raw.strip():
            continue
        try:
            parts = urlsplit(raw.strip())
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme.lower() not in ("tcp", "tls", "udp") or not parts.hostname or not port \
                or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username is not None:
            raise ConfigError(f"{name}={os.environ.get(name)!r}: {raw.strip()!r} is not tcp://, tls:// or "
                              "udp://host:port")
        targets.append(f"{parts.scheme.lower()}://{parts.hostname}:{port}")
    return tuple(dict.fromkeys(targets))


def words_value(name, default):
    """Read a comma-separated list of words (lower case, no blanks, order kept, duplicates dropped)."""
    raw = str_value(name)
    if raw is None:
        return tuple(default)
    words = [word.strip().lower() for word in raw.split(",") if word.strip()]
    for word in words:
        if not re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", word):
            raise ConfigError(f"{name}={raw!r}: {word!r} is not an action code such as auth.locked")
    return tuple(dict.fromkeys(words))


def _http_parts(raw):
    """Return the parts of an http(s) address with a host and a valid port, or None."""
    try:
        parts = urlsplit(raw.strip())
        parts.port
    except ValueError:
        return None
    return parts if parts.scheme.lower() in ("http", "https") and parts.hostname else None


def webhook_url(name):
    """Read an http(s) address with a host (path and query allowed), or None."""
    raw = str_value(name)
    if raw is None:
        return None
    parts = _http_parts(raw)
    if parts is None or parts.fragment:
        raise ConfigError(f"{name}: the value is not an http:// or https:// address with a host")
    return raw.strip()  # never echoed back: a webhook address often carries a token


def hours_value(name, default):
    """Read usual working hours as "HH-HH" (local to AUDIT_TIMEZONE); return (first hour, end hour)."""
    raw = str_value(name, default).strip()
    match = re.fullmatch(r"(\d{1,2})(?::00)?-(\d{1,2})(?::00)?", raw)
    if not match or not 0 <= int(match[1]) < int(match[2]) <= 24:
        raise ConfigError(f"{name}={raw!r} must be hours such as 07-19 (start before end, 0 to 24)")
    return int(match[1]), int(match[2])


def timezone_value(name, default):
    """Read an IANA time zone name such as Europe/Berlin."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    raw = str_value(name, default).strip()
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name}={raw!r} is not a time zone name such as Europe/Berlin or UTC") from None
    return raw


def public_url(name):
    """Read a public address (scheme, host, optional port, nothing else) and return its origin, or None."""
    raw = str_value(name)
    return None if raw is None else public_url_origin(name, raw)


def public_url_origin(name, raw):
    """Return the origin of a public address such as https://host:8443, or fail naming the variable."""
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a URL such as https://gatehouse.example.org:8443") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.username is not None \
            or parts.password is not None or parts.path not in ("", "/") or parts.query or parts.fragment \
            or raw.strip().endswith(("?", "#")) or not re.fullmatch(r"[a-z0-9.-]+|[0-9a-f:.]+", parts.hostname.lower()):
        raise ConfigError(f"{name}={raw!r} must be http(s)://host[:port] with no path, such as "
                          "https://gatehouse.example.org:8443")
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    # Browsers leave a default port out of Origin, so the setting does too.
    return f"{scheme}://{host}" + ("" if port in (None, {"http": 80, "https": 443}[scheme]) else f":{port}")


def bucket_value(name):
    """Read an S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens), or None."""
    raw = str_value(name)
    if raw is None:
        return None
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", raw.strip()) or ".." in raw:
        raise ConfigError(f"{name}={raw!r} is not a bucket name (3 to 63 of a-z, 0-9, '.', '-')")
    return raw.strip()


def key_prefix(name, default):
    """Read a prefix for object keys ("recordings/"): no leading slash, one slash at its end, no '..' part."""
    raw = (str_value(name, default) or "").strip().lstrip("/")
    if raw and not raw.endswith("/"):
        raw += "/"
    if ".." in raw.split("/") or "//" in raw or len(raw) > 512 or not raw.isprintable():
        raise ConfigError(f"{name}={raw!r} is not a key prefix such as gatehouse/recordings/")
    return raw


def endpoint_value(name):
    """Read an http(s)://host[:port] address of a server (no path), or None."""
    raw = str_value(name)
    if raw is None:
        return None
    parts = _http_parts(raw)
    if parts is None or parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{name}={raw!r} must be http(s)://host[:port] with no path, such as https://s3.example.org")
    return raw.strip().rstrip("/")
