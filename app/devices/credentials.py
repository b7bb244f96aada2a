"""What an SSH connection needs from a device: its credentials, decrypted, or a typed error."""
from dataclasses import dataclass

from app.blocking import run_blocking
from app.crypto import SecretError, decrypt

from . import keys
from .models import AUTH_KEY
from .ssh import ConnectError

# A stored key without its passphrase, or with a wrong one: the user fixes it by editing the device.
_PASSPHRASE_PROBLEMS = ("bad_passphrase", "passphrase_needed")


class CredentialError(ConnectError):
    """Stored credentials cannot be used: reason goes to the audit trail, message to the terminal."""


@dataclass(frozen=True)
class Credentials:
    """A password or a parsed private key (never both)."""

    password: str | None = None
    pkey: object = None

    def __repr__(self):
        return "Credentials(…)"  # never a secret in a log line or a traceback


def open_credentials(device):
    """Return the device's credentials, decrypted (key parsing off the event loop), or raise CredentialError."""
    try:
        if device.auth_type != AUTH_KEY:
            return Credentials(password=decrypt(device.password_enc, "password"))
        text = decrypt(device.private_key_enc, "private_key")
        passphrase = decrypt(device.passphrase_enc, "passphrase")
        return Credentials(pkey=run_blocking(keys.load_private_key, text, passphrase))
    except SecretError as exc:
        raise CredentialError("credentials_unreadable", f"The stored credentials cannot be read: {exc}") from None
    except keys.KeyProblem as exc:
        reason = "bad_passphrase" if exc.reason in _PASSPHRASE_PROBLEMS else "credentials_unreadable"
        raise CredentialError(reason, f"The stored key cannot be used: {exc}") from None
