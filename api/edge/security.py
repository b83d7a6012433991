"""Secrets of people: bearer tokens and the signing credential re-entered at electronic signature."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "rxl_"
# scrypt cost for credentials: ~50 ms per check, which also slows guessing at the signing prompt.
_N, _R, _P = 2**14, 8, 1


def new_token() -> tuple[str, str, str]:
    """A fresh token: (token, its SHA-256 hex, a display prefix). 256 bits of entropy."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token), token[:10]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_credential(credential: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(credential.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_credential(credential: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(
        credential.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(digest.hex(), expected)
