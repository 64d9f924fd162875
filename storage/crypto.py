"""Encryption at rest: MultiFernet over ENCRYPTION_KEYS (the first key encrypts, all decrypt)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from connector.domain.settings import Settings

log = logging.getLogger(__name__)

DEV_KEY_FILE = "encryption.key"


class DecryptionError(Exception):
    """A stored value could not be decrypted with any configured key."""


class Cipher:
    """Encrypts and decrypts column values; one instance per process, built from the settings."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._primary = Fernet(keys[0])
        self._all = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: str | bytes) -> str:
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        return self._all.encrypt(data).decode("ascii")

    def decrypt_bytes(self, token: str) -> bytes:
        try:
            return self._all.decrypt(token.encode("ascii"))
        except InvalidToken:
            raise DecryptionError("value was encrypted with a key that is not configured") from None

    def decrypt(self, token: str) -> str:
        return self.decrypt_bytes(token).decode("utf-8")

    def encrypt_json(self, value: Any) -> str:
        return self.encrypt(json.dumps(value, separators=(",", ":"), sort_keys=True, default=_exact))

    def decrypt_json(self, token: str) -> Any:
        return json.loads(self.decrypt_bytes(token))

    def is_current(self, token: str) -> bool:
        """True when `token` is already encrypted under the first (current) key."""
        try:
            self._primary.decrypt(token.encode("ascii"))
        except InvalidToken:
            return False
        return True

    def rotate(self, token: str) -> str:
        """Re-encrypt under the current key (keeps the original timestamp, as MultiFernet does)."""
        try:
            return self._all.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise DecryptionError("value was encrypted with a key that is not configured") from None


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def development_key(data_dir: Path) -> str:
    """Read, or create once, the development key file in the data folder (never used in production)."""
    path = data_dir / DEV_KEY_FILE
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    # Write a private temp file, then hard-link it into place: link() fails if the name exists, so
    # two processes starting together agree on one key and nobody ever reads a half-written file.
    tmp = data_dir / f".{DEV_KEY_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    finally:
        tmp.unlink(missing_ok=True)
    log.warning(
        "ENCRYPTION_KEYS is not set: generated a development key in %s. Anyone with this file can "
        "read the stored tokens and payloads. Set ENCRYPTION_KEYS (and APP_ENV=production) for "
        "real use.",
        path,
    )
    return key


def _exact(value: object) -> str:
    """JSON for what json cannot write: a Decimal (a FreshBooks amount sent as a number, read
    exactly) is kept as its plain decimal string, which is how FreshBooks documents amounts."""
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def build_cipher(settings: Settings) -> Cipher:
    """The cipher ENCRYPTION_KEYS name, or the development key kept in the data directory."""
    keys = [k.get_secret_value() for k in settings.encryption_keys]
    return Cipher(keys or [development_key(settings.data_dir)])
