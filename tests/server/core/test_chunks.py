"""Chunk frames (server/core/chunks.py): every piece fits the bound, the pieces give the frame back."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from server.core.chunks import Reassembler, chunk_frames


@settings(max_examples=200, deadline=None)
@given(
    value=st.recursive(
        st.text() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.none(),
        lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=8), inner, max_size=8),
        max_leaves=60,
    ),
    limit=st.integers(min_value=160, max_value=2000),
)
def test_any_frame_comes_back_whole_and_no_chunk_passes_the_bound(value: object, limit: int) -> None:
    text = json.dumps({"op": "history", "data": value}, ensure_ascii=False, separators=(",", ":"))
    frames = chunk_frames(text.encode(), limit, chunk_id=3)
    if len(text.encode()) <= limit:
        assert frames == [text.encode()]
        return
    assert all(len(frame) <= limit for frame in frames)
    joiner = Reassembler()
    decoded = [json.loads(frame) for frame in frames]
    assert {(c["op"], c["id"], c["count"]) for c in decoded} == {("chunk", 3, len(frames))}
    results = [joiner.feed(chunk) for chunk in reversed(decoded)]  # any order
    assert results[:-1] == [None] * (len(frames) - 1) and results[-1] == text


def test_quotes_and_multibyte_characters_at_every_cut() -> None:
    text = json.dumps({"op": "history", "data": ['"\\' * 300, "é€😀" * 300]}, ensure_ascii=False)
    frames = chunk_frames(text.encode(), 400, chunk_id=1)
    assert len(frames) > 5 and all(len(frame) <= 400 for frame in frames)
    joiner = Reassembler()
    assert [joiner.feed(json.loads(f)) for f in frames][-1] == text
