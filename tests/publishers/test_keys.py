"""Key, channel and field names come from publishers/keys.py: the Lua scripts and the ACL rules spell none."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import redis

from publishers import keys
from publishers.script import PUBLISH_SCRIPT
from server.history.logops import RECORDER_SCRIPT
from tests.publishers.test_options import run_python

NAMES = (keys.PREFIX, keys.META_EPOCH, keys.META_SEQ, keys.PUBLISHER_MARK, keys.LOG_FIELD)


def test_the_scripts_are_their_names_from_keys_py_above_a_text_that_spells_none() -> None:
    body = resources.files("publishers").joinpath("publish.lua").read_text()
    assert keys.lua_names() + body == PUBLISH_SCRIPT
    assert RECORDER_SCRIPT.startswith(keys.lua_names())
    recorder_body = RECORDER_SCRIPT.removeprefix(keys.lua_names())
    for text in (body, recorder_body):
        code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())  # comments may name them
        literals = set(re.findall(r"'([^']*)'", code))
        spelled = {
            name
            for name in (*NAMES, keys.SYMBOLS_KEY, keys.META_SUFFIX, keys.LOG_SUFFIX, keys.LIVE_SUFFIX)
            if name in literals or any(lit.startswith(keys.PREFIX + ":") for lit in literals)
        }
        assert not spelled, f"the script spells {spelled}: use the locals of keys.lua_names()"


def test_other_names_in_keys_py_are_what_the_scripts_and_the_acl_rules_use(
    tmp_path: Path, redis_url: str, symbol: str
) -> None:
    # Change every name in keys.py: the scripts (above their names, as shipped), the keys
    # publishing touches, the recorder's read and the ACL rules follow.
    out = run_python(
        f"""
        import redis
        from publishers import keys, script
        from publishers.events import Signal
        from server.history import logops
        publish_body = script.PUBLISH_SCRIPT.removeprefix(keys.lua_names())
        recorder_body = logops.RECORDER_SCRIPT.removeprefix(keys.lua_names())
        keys.PREFIX, keys.SYMBOLS_KEY, keys.BOTS_KEY = "zz", "zz:all-symbols", "zz:bots"
        keys.BOT_IDS_KEY, keys.BOT_SEQ_KEY = "zz:ids", "zz:idseq"
        keys.META_EPOCH, keys.META_SEQ, keys.PUBLISHER_MARK, keys.LOG_FIELD = "ep", "n", "pub/", "json"
        keys.META_SUFFIX, keys.LOG_SUFFIX, keys.LIVE_SUFFIX = "m", "l", "c"
        client = redis.Redis.from_url({redis_url!r}, decode_responses=True)
        for number in (1, 2):
            event = Signal(symbol={symbol!r}, ts=1732560000000, bot="b", strategy="s", type="buy",
                           price=1.0, confidence=0.5)
            call = script.build_call({symbol!r}, [event.body()], publisher_id="t", call_number=number,
                                     log_maxlen=1000)
            client.eval(keys.lua_names() + publish_body, len(call.keys), *call.keys, *call.args)
        print(sorted(client.hgetall("zz:{{{symbol}}}:m")))
        print([sorted(fields) for _, fields in client.xrange("zz:{{{symbol}}}:l")])
        print(client.sismember("zz:all-symbols", {symbol!r}))
        raw = client.eval(keys.lua_names() + recorder_body, *logops.read_args({symbol!r}, "new", 10, "c1"))
        print([entry.seq for entry in logops.parse_read(raw).entries])
        from server.cli import acl
        print(sorted(r for r in acl.rules("publisher", redis_major=6) if r[0] in "~&"))
        client.delete("zz:{{{symbol}}}:m", "zz:{{{symbol}}}:l")
        client.srem("zz:all-symbols", {symbol!r})
        """,
        tmp_path,
    )
    meta, log, registered, recorded, patterns = out.splitlines()[:5]
    assert meta == "['ep', 'n', 'pub/t']" and log == "[['json'], ['json']]"
    assert registered == "1" and recorded == "[1, 2]"
    assert patterns == (
        "['&zz:{*}:c', '~zz:all-symbols', '~zz:bots', '~zz:ids', '~zz:idseq', '~zz:{*}:c', '~zz:{*}:l', "
        "'~zz:{*}:m']"
    )
    client = redis.Redis.from_url(redis_url)
    assert not client.exists(keys.meta_key(symbol))
    client.close()
