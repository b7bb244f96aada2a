"""Single sign-on's flow state: sealed in the session cookie while the flow runs, answered once at its callback.

Authlib keeps the flow's state, nonce and PKCE verifier in a cache; SealedState is that cache, in the session
cookie but sealed with AES-GCM, so they stay unreadable there and no server-side store is needed (any worker or
node finishes the flow). A copy of that cookie taken before the callback carries the state again, so each
callback claims its state here with one INSERT before the code is exchanged: a second use of the same state meets
the row (the primary key) and is refused by Gatehouse itself, before the provider's token endpoint is asked. Only
the SHA-256 of a state is stored, until its flow would have expired; expired ones are pruned as they go.
"""
import hashlib
import time
from datetime import timedelta

from flask import session
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from app.crypto import SecretError, decrypt, encrypt
from app.dbtypes import now_utc
from app.extensions import db

from .models import OidcUsedState

FLOW_SECONDS = 600  # a sign-in not finished within this long starts again (state_mismatch)


class SealedState:
    """Authlib's state cache, kept in the session cookie but sealed (AES-GCM): the PKCE verifier and nonce stay
    unreadable there, and no server-side store is needed (any worker or node finishes the flow)."""

    @staticmethod
    def get(key):
        """Return the sealed value of key, opened, or None (also once it is older than FLOW_SECONDS)."""
        entry = session.get(key + "_sealed")
        try:
            return decrypt(entry["blob"], key) if entry and entry["exp"] > time.time() else None
        except (SecretError, KeyError, TypeError):
            return None

    @staticmethod
    def set(key, value, expires=None):
        """Seal value under key (the key, naming the state, is bound in); Authlib's sweep drops it with its state."""
        session[key + "_sealed"] = {"blob": encrypt(value, key), "exp": time.time() + FLOW_SECONDS}

    @staticmethod
    def delete(key):
        """Forget the value of key."""
        session.pop(key + "_sealed", None)


def _hash(state):
    """Return the stored form of a state."""
    return hashlib.sha256(state.encode()).hexdigest()


def claim(state, lifetime_seconds):
    """Mark state used (kept lifetime_seconds); return False when it was used already."""
    now = now_utc()
    db.session.execute(delete(OidcUsedState).where(OidcUsedState.expires_at <= now))  # prune the expired
    db.session.add(OidcUsedState(state_hash=_hash(state), used_at=now,
                                 expires_at=now + timedelta(seconds=lifetime_seconds)))
    try:
        db.session.commit()
    except IntegrityError:  # the primary key: this state was answered before (or is being, in a parallel request)
        db.session.rollback()
        return False
    return True
