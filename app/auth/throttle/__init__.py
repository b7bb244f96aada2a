"""Failed log-ins throttled by source address and by account name, in the database (every worker and node).

An address (addresses.py) with too many failures is refused before any password is looked at. An account name
(names.py) earns a growing wait in LOCKOUT_MODE=delay, or locks its account in LOCKOUT_MODE=lock. The shared
statements on the table are in rows.py; the admin page's list of blocks, their lifting and their end by time are
in blocks.py. The log-in and second-factor pages ask refusal() before checking anything and count_failure() after
a failure. docs/logins.md has the trade-off between delay and lock.
"""
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError

from app.blocking import release_idle_connection
from app.dbtypes import now_utc
from app.extensions import db

from ..models import LoginThrottle
from .addresses import address_key, address_on, count_address
from .blocks import current_blocks, lift, sweep
from .names import (MAX_DELAY, claim, count_lock, count_name, delay_for, delay_on, forget_account, locked, lock_on,
                    name_key, release)
from .rows import ACCOUNT, ADDRESS, count_refused, row_of

__all__ = ["ACCOUNT", "ADDRESS", "MAX_DELAY", "Refusal", "address_key", "count_failure", "current_blocks",
           "delay_for", "forget_account", "lift", "locked", "name_key", "refusal", "release", "sweep"]
log = logging.getLogger("gatehouse.auth")


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is turned away unchecked: the address is blocked, or the name must wait, until when."""

    kind: str
    key: str
    until: datetime

    @property
    def seconds(self):
        """Return the whole seconds left (at least one)."""
        return max(1, math.ceil((self.until - now_utc()).total_seconds()))

    @property
    def message(self):
        """Return the sentence the log-in page shows: the same whether the account exists or not."""
        if self.kind == ADDRESS:
            minutes = math.ceil(self.seconds / 60)
            return f"Too many failed log-ins from your address. Try again in {minutes} minute{'s' * (minutes != 1)}."
        return f"Too many failed log-ins for this name. Try again in {self.seconds} second{'s' * (self.seconds != 1)}."


def refusal(address, username):
    """Return a Refusal when this attempt must be turned away before its password is looked at, else None.

    A blocked address costs one read and one counter update: no hash, no audit event (the count goes into the
    block's end). A waiting name is counted the same way; the caller records that refusal as a failed log-in.
    In delay mode the attempts at one name are checked one at a time (an atomic claim), so a burst of parallel
    guesses, or the moment a wait ends, buys one check between them, not one each.
    """
    now = now_utc()
    keys = [(ADDRESS, address_key(address))] if address_on() else []
    keys += [(ACCOUNT, name_key(username))] if delay_on() else []
    if not keys:
        return None
    refused = _running_block(keys, now)
    release_idle_connection()
    if refused is None and delay_on():
        key = name_key(username)
        if claim(key, now):
            return None
        refused = Refusal(ACCOUNT, key, now + timedelta(seconds=1))  # a check takes well under a second
    if refused is None:
        return None
    count_refused(refused.kind, refused.key)
    return refused


def _running_block(keys, now):
    """Return the Refusal of a block running now on one of these (kind, key) rows, an address's first."""
    rows = {row.kind: row for row in db.session.scalars(
        select(LoginThrottle).where(or_(*(row_of(kind, key) for kind, key in keys))))}
    return next((Refusal(kind, rows[kind].key, rows[kind].blocked_until) for kind in (ADDRESS, ACCOUNT)
                 if kind in rows and rows[kind].blocked_until and rows[kind].blocked_until > now), None)


def count_failure(address, username, user, reason):
    """Count a failed or refused log-in (or second-factor code) against its address and its name.

    In delay mode the typed name counts unless its own wait refused the attempt (reason "throttled"); in lock mode
    the user's account counts unless it was locked already. A count that cannot be written (a full disk) is logged
    at ERROR: the attempt is refused either way.
    """
    release_idle_connection()  # a fresh transaction: the write must not upgrade an old read snapshot (SQLite)
    try:
        if address_on():
            count_address(address_key(address))
        if reason != "throttled" and delay_on():
            count_name(name_key(username), username)
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.error("failed log-in not counted for throttling: %s", str(exc).split("\n", 1)[0][:200])
    if user is not None and reason != "locked" and lock_on():
        count_lock(user, username)
