"""The optional bearer token clients must present on API routes.

The operator renders it from a Secret into the environment variable `contract.API_KEY_ENV`; it may
also come from a file (`--api-key-file`, e.g. a mounted Secret). Probes and /metrics stay open.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from tokenscale_contract.interface import API_KEY_ENV

MAX_KEY_BYTES = 4096


def _check(key: str, source: str) -> str:
    key = key.strip()  # Secrets written with `echo` end in a newline
    if not key:
        raise ValueError(f"the API key in {source} is empty; put the token there or unset it")
    if len(key) > MAX_KEY_BYTES or not all(33 <= ord(c) <= 126 for c in key):
        raise ValueError(
            f"the API key in {source} must be 1-{MAX_KEY_BYTES} printable ASCII characters "
            "without spaces (it travels in an HTTP header)"
        )
    return key


def load_api_key(path: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The token from `path` if given, else from the environment, else None (no auth)."""
    env = os.environ if environ is None else environ
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
            raise ValueError(f"--api-key-file {path}: cannot read it ({reason})") from None
        return _check(text, f"--api-key-file {path}")
    if API_KEY_ENV in env:
        return _check(env[API_KEY_ENV], f"${API_KEY_ENV}")
    return None


def authorized(header: str | None, key: str) -> bool:
    """Whether an Authorization header carries `Bearer <key>` (compared in constant time)."""
    if header is None:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode("utf-8", "replace"), key.encode())
