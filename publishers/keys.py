"""Every Redis key and channel name signalpush uses, in one place.

A symbol's keys carry the symbol as a Redis Cluster hash tag (the literal braces), so
that the publish script, which touches all of them at once, stays valid on a cluster.
"""

from __future__ import annotations

PREFIX = "sp"

#: Set of every symbol ever published (the recorder's work list).
SYMBOLS_KEY = f"{PREFIX}:symbols"
#: Hash bot name -> JSON of its last status (the bot registry).
BOTS_KEY = f"{PREFIX}:bots"
#: Consumer group the recorders share on every symbol's log.
RECORDER_GROUP = "sp-recorder"
#: Hash of recorder/gateway health beats (field = process id, value = ms timestamp).
HEALTH_KEY = f"{PREFIX}:health"

#: Field names inside a symbol's meta hash.
META_EPOCH = "epoch"
META_SEQ = "seq"
#: Field of a log entry holding the event JSON.
LOG_FIELD = "e"


def meta_key(symbol: str) -> str:
    """Hash holding the symbol's epoch, last seq and publisher dedup marks."""
    return f"{PREFIX}:{{{symbol}}}:meta"


def log_key(symbol: str) -> str:
    """Stream holding the symbol's recent events; entry id is ``<seq>-0``."""
    return f"{PREFIX}:{{{symbol}}}:log"


def live_channel(symbol: str) -> str:
    """Pub/sub channel carrying ``<epoch> <seq> <publish ms> <event json>`` per event."""
    return f"{PREFIX}:{{{symbol}}}:live"


def symbol_of(key: str | bytes) -> str:
    """The symbol inside a key or channel name such as ``sp:{BTCUSDT}:live``."""
    text = key.decode() if isinstance(key, bytes) else key
    start = text.index("{") + 1
    return text[start : text.rindex("}")]
