"""Demo data: a fleet of realistic devices for one user, written straight into the database (no form, no audit
events), as app/devices/views.py stores them: names such as core-sw-01 or db-replica-eu-west-3, several folders,
zero to four tags, password and key devices, long names and tags, port states and last uses.

Every address is on the loopback network 127.0.0.0/8: nothing outside this machine is ever dialled, even where
the port check runs."""
import random
from datetime import timedelta

from sqlalchemy import select

from app import crypto
from app.auth.models import User
from app.dbtypes import now_utc
from app.devices import keys
from app.devices.models import AUTH_KEY, AUTH_PASSWORD, Device
from app.extensions import db

# (name pattern, folder, SSH user, tags to draw from): {n} is the device's number within its kind.
KINDS = (
    ("core-sw-{n:02d}", "network/core", "netops", ("cisco", "ios-xe", "prod", "dc1", "layer3")),
    ("access-sw-{n:02d}", "network/access", "netops", ("aruba", "prod", "poe", "floor-{f}")),
    ("lab-switch-unreachable-{n:02d}", "lab", "admin", ("lab", "decommission-pending-q1-2027", "juniper")),
    ("db-replica-eu-west-{n}", "databases", "postgres", ("postgres", "replica", "eu-west", "prod", "pii")),
    ("db-primary-{n:02d}", "databases", "postgres", ("postgres", "primary", "prod", "backup:nightly")),
    ("web-frontend-{n:02d}", "web", "deploy", ("nginx", "linux", "prod", "public")),
    ("k8s-worker-{n:03d}", "kubernetes", "ubuntu", ("k8s", "linux", "gpu", "spot")),
    ("backup-storage-array-frankfurt-dc2-{n:02d}", "storage", "root", ("zfs", "backup", "dc2")),
    ("build-runner-{n:02d}", "ci", "runner", ("ci", "linux", "arm64", "x86_64")),
    ("fw-edge-{n:02d}", "", "admin", ("opnsense", "edge", "prod")),
)


def _device(rng, owner_id, kind, number, password):
    """Return one unsaved device of a kind."""
    pattern, folder, user, tag_pool = KINDS[kind]
    name = pattern.format(n=number, f=rng.randint(1, 6))
    tags = sorted({tag.format(f=rng.randint(1, 6)) for tag in rng.sample(tag_pool, rng.randint(0, min(4, len(tag_pool))))})
    device = Device(owner_id=owner_id, name=name, host=f"127.{kind + 10}.{number // 200}.{number % 200 + 1}",
                    port=rng.choice((22, 22, 22, 2222)), username=user, folder=folder or None,
                    auth_type=AUTH_PASSWORD, password_enc=password, allow_file_transfer=True)
    device.tags = tags
    checked = now_utc() - timedelta(minutes=rng.randint(1, 9))
    device.port_open, device.port_checked_at = (False, checked) if "unreachable" in name else \
        (rng.random() > .08, checked) if rng.random() > .2 else (None, None)
    if rng.random() < .3:
        device.last_used_at = now_utc() - timedelta(minutes=rng.randint(2, 60 * 24 * 20))
    return device


def _give_key(device, key_pair):
    """Make a device a key device, as the form's "generate" does (one shared deploy key for the fleet)."""
    private, public = key_pair
    device.auth_type = AUTH_KEY
    device.private_key_enc = crypto.encrypt(private, "private_key")
    device.passphrase_enc = crypto.encrypt(None, "passphrase")
    device.password_enc = None
    device.public_key, device.key_type = public, public.split()[0]


def add_fleet(app, owner_username, count=200, seed=23):
    """Give owner_username count devices (the same ones for the same seed); return their names in order."""
    rng = random.Random(seed)
    names = []
    with app.app_context():
        owner = db.session.scalar(select(User).filter_by(username=owner_username))
        password = crypto.encrypt("fleet-device-password", "password")
        key_pair = keys.generate("ed25519")
        numbers = [0] * len(KINDS)
        for i in range(count):
            kind = i % len(KINDS)
            numbers[kind] += 1
            device = _device(rng, owner.id, kind, numbers[kind], password)
            if rng.random() < .25:
                _give_key(device, key_pair)
            db.session.add(device)
            names.append(device.name)
        db.session.commit()
        db.engine.dispose()
    return names
