"""Secrets at rest: Fernet tokens keyed by HKDF from TALLY_ENCRYPTION_KEY (or SECRET_KEY when that
is empty). Each use names its own salt and info, so one app's tokens never decrypt as another's,
and the key of a use can be rotated (a new `info`) without touching the others.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


@dataclass(frozen=True)
class SecretPurpose:
    """Which key: HKDF's salt and info. Changing either makes the stored tokens unreadable."""

    salt: bytes
    info: bytes


def _fernet(purpose: SecretPurpose) -> Fernet:
    secret = settings.TALLY_ENCRYPTION_KEY or settings.SECRET_KEY
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=purpose.salt, info=purpose.info).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def secret_encrypt(plaintext: str, *, purpose: SecretPurpose) -> str:
    return _fernet(purpose).encrypt(plaintext.encode()).decode("ascii")


def secret_decrypt(token: str, *, purpose: SecretPurpose) -> str:
    """Raises cryptography.fernet.InvalidToken when the encryption secret changed since."""
    return _fernet(purpose).decrypt(token.encode("ascii")).decode()
