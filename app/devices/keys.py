"""SSH private keys: parse what a user pastes or uploads, generate new pairs."""
import io

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

class KeyProblem(ValueError):
    """A private key that cannot be used, with a message fit for the user and a stable reason code."""

    def __init__(self, message, reason="key_unreadable"):
        super().__init__(message)
        self.reason = reason  # "key_unreadable", "passphrase_needed" or "bad_passphrase"


def load_private_key(text, passphrase=None):
    """Parse an OpenSSH or PEM private key; return the paramiko key or raise KeyProblem."""
    text = (text or "").strip()
    if not text:
        raise KeyProblem("Paste or upload a private key.")
    if "PRIVATE KEY" not in text:
        raise KeyProblem("That is not a private key (expected a PEM or OpenSSH private key block).")
    last = None
    for cls in (paramiko.Ed25519Key, paramiko.RSAKey, paramiko.ECDSAKey):
        try:
            return cls.from_private_key(io.StringIO(text + "\n"), password=passphrase or None)
        except paramiko.PasswordRequiredException:
            raise KeyProblem("This key is encrypted: enter its passphrase.", "passphrase_needed") from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError) as exc:
            last = exc
            if "passphrase" in str(exc).lower() or "bad decrypt" in str(exc).lower() or "checkints" in str(exc).lower():
                raise KeyProblem("Wrong passphrase for this key.", "bad_passphrase") from None
    if passphrase and last is not None and "encrypt" in text.lower():
        raise KeyProblem("Wrong passphrase for this key.", "bad_passphrase")
    raise KeyProblem("The private key could not be read (unsupported or damaged key).")


def public_line(key, comment="gatehouse"):
    """Return the authorized_keys line for a paramiko key."""
    return f"{key.get_name()} {key.get_base64()} {comment}"


def generate(kind):
    """Generate a key pair; return (private OpenSSH text, public authorized_keys line)."""
    if kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    elif kind == "rsa4096":
        private = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    else:
        raise KeyProblem(f"Unknown key type {kind!r}.")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return pem, public.decode() + " gatehouse"
