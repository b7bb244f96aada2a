"""Single sign-on states answered once: kept server-side until their flow would have expired, pruned as they go.

The flow's state travels in the browser's cookie (oidc.py), so a copy of that cookie taken before the callback
carries it again. Each callback claims its state here with one INSERT before the code is exchanged: a second use
of the same state meets the row (the primary key) and is refused by Gatehouse itself, before the provider's
token endpoint is asked. Only the SHA-256 of a state is stored.
"""
import hashlib
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from app.dbtypes import now_utc
from app.extensions import db

from .models import OidcUsedState


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
