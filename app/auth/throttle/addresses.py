"""Failed log-ins counted by source address: an address (an IPv6 /64) with LOGIN_MAX_FAILURES_PER_IP failures
within LOGIN_IP_WINDOW_MINUTES is refused for LOGIN_IP_BLOCK_MINUTES before any password is looked at."""
import ipaddress
from datetime import timedelta

from flask import current_app

from app.audit.events import record
from app.dbtypes import now_utc
from app.extensions import db

from .rows import ADDRESS, block, count


def address_key(address):
    """Return the key an address is counted under: IPv4 as is, IPv6 by its /64 (one customer's network)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


def address_on():
    """Say whether addresses are throttled at all (LOGIN_MAX_FAILURES_PER_IP=0 turns it off)."""
    return current_app.config["LOGIN_MAX_FAILURES_PER_IP"] > 0


def count_address(key):
    """Count a failure from an address; block it at the limit and audit that once."""
    now = now_utc()
    config = current_app.config
    failures, _ = count(ADDRESS, key, now)
    blocked = failures >= config["LOGIN_MAX_FAILURES_PER_IP"] and block(
        ADDRESS, key, now, now + timedelta(minutes=config["LOGIN_IP_BLOCK_MINUTES"]))
    db.session.commit()
    if blocked:
        minutes = config["LOGIN_IP_BLOCK_MINUTES"]
        record("auth.address_blocked", f"address {key} blocked for {minutes} minutes after {failures} failed log-ins",
               outcome="failure", actor="system",
               details={"address": key, "failures": failures, "minutes": minutes,
                        "window_minutes": config["LOGIN_IP_WINDOW_MINUTES"]}, strict=False)
