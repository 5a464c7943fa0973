"""Who may read which symbols: static tokens and HS256 JWTs, checked at the handshake and per subscribe.

A token grants a name, symbol patterns (shell-style, ``BTC*``) and an optional expiry.
Static tokens come from ``auth.tokens``; JWTs are signed with ``auth.jwt_secret`` and carry
``sub`` (the name), ``symbols`` (a list or comma-separated string of patterns; required) and
``exp``. A JWT's signature is checked before its header or claims are decoded.
Secrets are compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from websockets.datastructures import Headers

from publishers.errors import ConfigError
from server.errors import ProtocolError
from server.settings import AuthSettings, TokenSpec

_JWT_HEADER: Final = {"alg": "HS256", "typ": "JWT"}
_LEEWAY_S: Final = 5
#: Longest token accepted (a JWT with a few dozen patterns is well under 1,000 characters).
MAX_TOKEN_CHARS: Final = 4096
#: Most symbol patterns one token may carry, and the longest pattern.
MAX_PATTERNS: Final = 256
MAX_PATTERN_CHARS: Final = 64


@dataclass(frozen=True, slots=True)
class Principal:
    """What a token grants."""

    name: str
    patterns: tuple[str, ...]
    expires_at: float | None = None
    #: May steer walls (commands, saved views): docs/security.md, "Admin tokens".
    admin: bool = False

    def can_read(self, symbol: str) -> bool:
        return any(fnmatch.fnmatchcase(symbol, pattern) for pattern in self.patterns)

    def seconds_left(self, now: float | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def __repr__(self) -> str:
        return (
            f"Principal(name={self.name!r}, patterns={self.patterns!r}, expires_at={self.expires_at!r}, "
            f"admin={self.admin!r})"
        )


#: The principal of every connection when auth is off (no access control: it may steer walls too).
ANYONE: Final = Principal("anonymous", ("*",), admin=True)


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
    secret: str,
    *,
    name: str,
    symbols: Sequence[str],
    ttl_s: float | None,
    now: float | None = None,
    admin: bool = False,
) -> str:
    """An HS256 JWT granting ``symbols`` (patterns) to ``name`` for ``ttl_s`` seconds (None: no expiry);
    ``admin`` adds the right to steer walls (the ``admin: true`` claim)."""
    if not secret:
        raise ConfigError("auth.jwt_secret", "is empty: set it (SIGNALPUSH_AUTH_JWT_SECRET) to sign tokens")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": name, "symbols": list(symbols), "iat": issued}
    if ttl_s is not None:
        claims["exp"] = issued + int(ttl_s)
    if admin:
        claims["admin"] = True
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
        return Principal(spec.name, tuple(spec.symbols), expires, spec.admin)

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
        if len(token) > MAX_TOKEN_CHARS:
            raise ProtocolError("unauthorized", f"the token is longer than {MAX_TOKEN_CHARS} characters")
        moment = time.time() if now is None else now
        principal = None
        if token.isascii():  # static tokens and JWTs are ASCII; anything else cannot match
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
        """The principal of a JWT, or None. The signature is checked before anything is decoded:
        nothing an unauthenticated sender wrote reaches the JSON parser."""
        if not self._secret:
            return None
        header_b64, claims_b64, signature_b64 = token.split(".")
        try:
            signature = _unb64(signature_b64)
        except (ValueError, binascii.Error):
            return None
        expected = hmac.new(self._secret, f"{header_b64}.{claims_b64}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(signature, expected):
            return None
        try:
            header = json.loads(_unb64(header_b64))
            claims = json.loads(_unb64(claims_b64))
        except (ValueError, binascii.Error, RecursionError):  # UnicodeDecodeError is a ValueError
            return None
        if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
            return None
        return _claims_principal(claims, now)


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _claims_principal(claims: Mapping[str, Any], now: float) -> Principal:
    """The principal a signed token's claims grant; ProtocolError(unauthorized) naming a bad claim.

    ``symbols`` is required: a signed token without it grants nothing (it never means "all";
    a token for every symbol says ``"symbols": ["*"]``).
    """
    name = claims.get("sub")
    if not isinstance(name, str) or not name:
        raise ProtocolError("unauthorized", "the token's sub claim must be a non-empty string")
    if "symbols" not in claims:
        raise ProtocolError(
            "unauthorized", 'the token has no symbols claim (a token for every symbol says "symbols": ["*"])'
        )
    symbols = claims["symbols"]
    if isinstance(symbols, str):
        symbols = [s.strip() for s in symbols.split(",") if s.strip()]
    if (
        not isinstance(symbols, list)
        or len(symbols) > MAX_PATTERNS
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_PATTERN_CHARS for s in symbols)
    ):
        raise ProtocolError(
            "unauthorized",
            f"the token's symbols claim must be a list of at most {MAX_PATTERNS} patterns "
            f"of 1-{MAX_PATTERN_CHARS} characters",
        )
    expires = claims.get("exp")
    if expires is not None and not _finite_number(expires):
        raise ProtocolError(
            "unauthorized", "the token's exp claim must be a number (seconds since the epoch)"
        )
    not_before = claims.get("nbf")
    if not_before is not None and not _finite_number(not_before):
        raise ProtocolError(
            "unauthorized", "the token's nbf claim must be a number (seconds since the epoch)"
        )
    if not_before is not None and now + _LEEWAY_S < not_before:
        raise ProtocolError("unauthorized", "the token is not valid yet (nbf)")
    admin = claims.get("admin", False)
    if not isinstance(admin, bool):
        raise ProtocolError("unauthorized", "the token's admin claim must be true or false")
    return Principal(name, tuple(symbols), None if expires is None else float(expires), admin)


def one_header(headers: Headers, name: str) -> str | None:
    """The value of a header sent at most once; ProtocolError(bad_request) naming it when repeated.

    Two ``Authorization`` or ``Origin`` headers are ambiguous (which one did a proxy check?):
    refused, never guessed.
    """
    values = headers.get_all(name)
    if len(values) > 1:
        raise ProtocolError("bad_request", f"{name}: the header is sent {len(values)} times; send it once")
    return values[0] if values else None


def token_from(headers: Headers, params: Mapping[str, str]) -> str | None:
    """The token of a request: ``Authorization: Bearer T``, else ``?token=T``."""
    header = one_header(headers, "Authorization") or ""
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return params.get("token") or None
