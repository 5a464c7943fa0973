"""Who may read which symbols: static tokens and HS256 JWTs, checked at the handshake and per subscribe.

A token grants a name, symbol patterns (shell-style, ``BTC*``) and an optional expiry.
Static tokens come from ``auth.tokens``; JWTs are signed with ``auth.jwt_secret`` and carry
``sub`` (the name), ``symbols`` (a list or comma-separated string of patterns) and ``exp``.
Secrets are compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from publishers.config import AuthSettings, TokenSpec
from publishers.errors import ConfigError, ProtocolError

_JWT_HEADER: Final = {"alg": "HS256", "typ": "JWT"}
_LEEWAY_S: Final = 5


@dataclass(frozen=True, slots=True)
class Principal:
    """What a token grants."""

    name: str
    patterns: tuple[str, ...]
    expires_at: float | None = None

    def can_read(self, symbol: str) -> bool:
        return any(fnmatch.fnmatchcase(symbol, pattern) for pattern in self.patterns)

    def seconds_left(self, now: float | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def __repr__(self) -> str:
        return f"Principal(name={self.name!r}, patterns={self.patterns!r}, expires_at={self.expires_at!r})"


#: The principal of every connection when auth is off.
ANYONE: Final = Principal("anonymous", ("*",))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _parse_expiry(value: str | None, key: str) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(key, f"{value!r} is not an ISO 8601 time such as 2027-01-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise ConfigError(key, f"{value!r} needs a timezone (add Z for UTC)")
    return moment.timestamp()


def create_jwt(
    secret: str, *, name: str, symbols: Sequence[str], ttl_s: float | None, now: float | None = None
) -> str:
    """An HS256 JWT granting ``symbols`` (patterns) to ``name`` for ``ttl_s`` seconds (None: no expiry)."""
    if not secret:
        raise ConfigError("auth.jwt_secret", "is empty: set it (SIGNALPUSH_AUTH_JWT_SECRET) to sign tokens")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": name, "symbols": list(symbols), "iat": issued}
    if ttl_s is not None:
        claims["exp"] = issued + int(ttl_s)
    signing_input = f"{_b64(json.dumps(_JWT_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


class Authenticator:
    """Turns a presented token into a :class:`Principal`, or raises ProtocolError(unauthorized)."""

    def __init__(self, settings: AuthSettings) -> None:
        self.enabled = settings.enabled
        self._secret = settings.jwt_secret.encode()
        self._static: list[tuple[bytes, Principal]] = [
            (spec.token.encode(), self._principal_of(spec, index))
            for index, spec in enumerate(settings.tokens)
        ]
        if self.enabled and not self._secret and not self._static:
            raise ConfigError(
                "auth", "auth.enabled is true but neither auth.jwt_secret nor auth.tokens is set"
            )

    @staticmethod
    def _principal_of(spec: TokenSpec, index: int) -> Principal:
        expires = _parse_expiry(spec.expires, f"auth.tokens[{index}].expires")
        return Principal(spec.name, tuple(spec.symbols), expires)

    def __repr__(self) -> str:
        jwt = bool(self._secret)
        return f"Authenticator(enabled={self.enabled}, static_tokens={len(self._static)}, jwt={jwt})"

    def authenticate(self, token: str | None, now: float | None = None) -> Principal:
        if not self.enabled:
            return ANYONE
        if not token:
            raise ProtocolError(
                "unauthorized", "a token is required (Authorization: Bearer <token> or ?token=)"
            )
        moment = time.time() if now is None else now
        principal = (
            self._static_principal(token) if token.count(".") != 2 else self._jwt_principal(token, moment)
        )
        if principal is None:
            raise ProtocolError("unauthorized", "the token is not valid")
        left = principal.seconds_left(moment)
        if left is not None and left <= -_LEEWAY_S:
            raise ProtocolError("unauthorized", "the token has expired")
        return principal

    def _static_principal(self, token: str) -> Principal | None:
        presented = token.encode()
        found = None
        for secret, principal in self._static:  # every entry compared, in constant time
            if hmac.compare_digest(presented, secret):
                found = principal
        return found

    def _jwt_principal(self, token: str, now: float) -> Principal | None:
        if not self._secret:
            return None
        header_b64, claims_b64, signature_b64 = token.split(".")
        try:
            header = json.loads(_unb64(header_b64))
            claims = json.loads(_unb64(claims_b64))
            signature = _unb64(signature_b64)
        except (ValueError, binascii.Error):
            return None
        if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
            return None
        expected = hmac.new(self._secret, f"{header_b64}.{claims_b64}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(signature, expected):
            return None
        return _claims_principal(claims, now)


def _claims_principal(claims: Mapping[str, Any], now: float) -> Principal | None:
    name = claims.get("sub")
    symbols = claims.get("symbols", "*")
    if isinstance(symbols, str):
        symbols = [s.strip() for s in symbols.split(",") if s.strip()]
    if (
        not isinstance(name, str)
        or not isinstance(symbols, list)
        or not all(isinstance(s, str) for s in symbols)
    ):
        return None
    expires = claims.get("exp")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int | float)):
        return None
    not_before = claims.get("nbf")
    if isinstance(not_before, int | float) and now + _LEEWAY_S < not_before:
        return None
    return Principal(name, tuple(symbols), None if expires is None else float(expires))


def token_from(headers: Mapping[str, str], params: Mapping[str, str]) -> str | None:
    """The token of a request: ``Authorization: Bearer T``, else ``?token=T``."""
    header = headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return params.get("token") or None
