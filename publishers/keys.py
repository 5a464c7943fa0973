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
#: Hash bot name -> its stable integer id (given once, when the bot first publishes; see
#: publishers/registry.py). Every recorder copies these ids into SQL, so ids agree everywhere.
BOT_IDS_KEY = f"{PREFIX}:bot_ids"
#: Counter the ids are drawn from (INCR).
BOT_SEQ_KEY = f"{PREFIX}:bot_seq"
#: Consumer group the recorders share on every symbol's log.
RECORDER_GROUP = "sp-recorder"
#: Hash of recorder/gateway health beats (field = process id, value = ms timestamp).
HEALTH_KEY = f"{PREFIX}:health"
#: The wall fleet (docs/walls.md): each display's last heartbeat record, a string with an expiry
#: (``sp:display:<id>``), and the sorted set listing them by last heartbeat (ms) so every gateway
#: lists the whole fleet without SCAN.
DISPLAY_PREFIX = f"{PREFIX}:display:"
DISPLAYS_KEY = f"{PREFIX}:displays"
#: Pub/sub channel carrying ``<display id> <command frame>`` to whichever gateway holds that display.
DISPLAY_COMMANDS_CHANNEL = f"{PREFIX}:display-commands"
#: Hash view name -> JSON of its wall URL parameters (saved views, ``?view=NAME``).
VIEWS_KEY = f"{PREFIX}:views"


def display_key(display: str) -> str:
    """String holding the last heartbeat record of ``display`` (it expires with the display)."""
    return DISPLAY_PREFIX + display


#: Field names inside a symbol's meta hash.
META_EPOCH = "epoch"
META_SEQ = "seq"
#: Prefix of a publisher's dedup mark in the meta hash: ``p:<publisher id>``.
PUBLISHER_MARK = "p:"
#: Field of a log entry holding the event JSON.
LOG_FIELD = "e"
#: The last part of a symbol's keys: ``sp:{<symbol>}:<suffix>``.
META_SUFFIX, LOG_SUFFIX, LIVE_SUFFIX = "meta", "log", "live"


def symbol_tag(symbol: str) -> str:
    """What every key of ``symbol`` starts with (the hash tag keeps them in one cluster slot)."""
    return f"{PREFIX}:{{{symbol}}}:"


def meta_key(symbol: str) -> str:
    """Hash holding the symbol's epoch, last seq and publisher dedup marks."""
    return symbol_tag(symbol) + META_SUFFIX


def log_key(symbol: str) -> str:
    """Stream holding the symbol's recent events; entry id is ``<seq>-0``."""
    return symbol_tag(symbol) + LOG_SUFFIX


def live_channel(symbol: str) -> str:
    """Pub/sub channel carrying ``<epoch> <seq> <publish ms> <event json>`` per event."""
    return symbol_tag(symbol) + LIVE_SUFFIX


def symbol_of(key: str | bytes) -> str:
    """The symbol inside a key or channel name such as ``sp:{BTCUSDT}:live``."""
    text = key.decode() if isinstance(key, bytes) else key
    start = text.index("{") + 1
    return text[start : text.rindex("}")]


def lua_names() -> str:
    """Lua locals holding these names, put at the top of every script (the scripts use no others)."""
    names = {
        "PREFIX": PREFIX,
        "SYMBOLS_KEY": SYMBOLS_KEY,
        "META_SUFFIX": META_SUFFIX,
        "LOG_SUFFIX": LOG_SUFFIX,
        "LIVE_SUFFIX": LIVE_SUFFIX,
        "META_EPOCH": META_EPOCH,
        "META_SEQ": META_SEQ,
        "PUBLISHER_MARK": PUBLISHER_MARK,
        "LOG_FIELD": LOG_FIELD,
    }
    for value in names.values():
        assert value.isprintable() and "'" not in value and "\\" not in value, value
    header = "-- signalpush: the names of publishers/keys.py\n"
    return header + "".join(f"local {name} = '{value}'\n" for name, value in names.items())
