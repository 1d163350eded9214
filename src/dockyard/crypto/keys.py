"""The master key that encrypts secrets at rest, and API token hashing."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

MASTER_KEY_ENV = "DOCKYARD_MASTER_KEY"
TOKEN_PREFIX = "dky_"


class MasterKeyError(Exception):
    pass


class FernetCipher:
    """AES-128-CBC + HMAC-SHA256 (Fernet), keyed by the master key."""

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise MasterKeyError(
                "the master key is not a valid Fernet key (32 url-safe base64 bytes)"
            ) from exc

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except InvalidToken as exc:
            raise MasterKeyError(
                "a stored secret cannot be decrypted with this master key"
            ) from exc


def load_or_create_master_key(data_dir: Path) -> bytes:
    """The key from ``DOCKYARD_MASTER_KEY``, else ``DIR/master.key`` (made 0600)."""
    from_env = os.environ.get(MASTER_KEY_ENV)
    if from_env:
        return from_env.strip().encode("ascii")
    path = data_dir / "master.key"
    if path.exists():
        return path.read_bytes().strip()
    key = Fernet.generate_key()
    write_private_file(path, key.decode("ascii") + "\n")
    return key


def write_private_file(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only, from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens are 256 random bits: a fast hash is enough, no salt or KDF needed.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
