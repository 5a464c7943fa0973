"""The publish script and the arguments of one call to it (pure: no I/O).

Both publishers and the bench's load generators build their calls here, so the
wire format of the log and the live channel is defined once.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Final

from publishers import keys

#: publish.lua below the names it uses (keys.py's).
PUBLISH_SCRIPT: Final = keys.lua_names() + resources.files("publishers").joinpath("publish.lua").read_text()
PUBLISH_SHA: Final = hashlib.sha1(PUBLISH_SCRIPT.encode()).hexdigest()
#: Events per script call when publishing many (publish_frame): bounds the time Redis is busy.
MAX_EVENTS_PER_CALL: Final = 500


def new_epoch() -> str:
    """A random epoch candidate (the script keeps it only if the symbol has none)."""
    return secrets.token_hex(6)


def new_publisher_id() -> str:
    return secrets.token_hex(6)


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """The KEYS and ARGV of one EVALSHA of the publish script."""

    symbol: str
    keys: tuple[str, ...]
    args: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.args) - 6


@dataclass(frozen=True, slots=True)
class ScriptResult:
    """What the script returned: the symbol's epoch and the seqs given to the events."""

    epoch: str
    first_seq: int
    last_seq: int
    replayed: bool

    @property
    def seqs(self) -> list[int]:
        return list(range(self.first_seq, self.last_seq + 1))


def build_call(
    symbol: str,
    bodies: Sequence[str],
    *,
    publisher_id: str,
    call_number: int,
    log_maxlen: int,
    register_symbol: bool = True,
    sharded: bool = False,
) -> ScriptCall:
    """Arguments for publishing ``bodies`` (event JSON without '{') on ``symbol``, in order."""
    key_list = [keys.meta_key(symbol), keys.log_key(symbol), keys.live_channel(symbol)]
    if register_symbol:
        key_list.append(keys.SYMBOLS_KEY)
    args = (
        new_epoch(),
        publisher_id,
        str(call_number),
        str(log_maxlen),
        symbol,
        "SPUBLISH" if sharded else "PUBLISH",
        *bodies,
    )
    return ScriptCall(symbol, tuple(key_list), args)


def parse_result(raw: object) -> ScriptResult:
    if not isinstance(raw, list | tuple) or len(raw) != 4:
        raise ValueError(f"unexpected publish script reply {raw!r}")
    epoch = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
    return ScriptResult(epoch, int(raw[1]), int(raw[2]), bool(int(raw[3])))


def parse_live_message(data: bytes | str) -> tuple[str, int, int, str]:
    """Split a live-channel message into (epoch, seq, publish time in ms (Redis clock), event json)."""
    text = data.decode() if isinstance(data, bytes) else data
    epoch, seq, published, event = text.split(" ", 3)
    return epoch, int(seq), int(published), event
