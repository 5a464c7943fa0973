"""Bounded server frames: a frame over ``server.max_send_frame_bytes`` goes out as ``chunk`` frames.

Any websocket client library has a receive limit (Python ``websockets``: 1 MiB by default);
a history frame of a long window is several MiB. So no server frame is larger than the
limit (default 1,000,000 bytes): a bigger one is cut into pieces of its text, each sent as ::

    {"op":"chunk","id":7,"index":0,"count":3,"data":"<a piece of the frame's JSON text>"}

The client concatenates the ``data`` of ``index`` 0..count-1 of one ``id`` and parses the
result as the frame it stands for (docs/protocol.md, "Frame size"). Pieces end on character
boundaries; JSON-escaping a piece of JSON text at most doubles it (quotes and backslashes),
so every chunk frame fits. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

#: Default bound of a server frame (bytes of the websocket payload).
MAX_SEND_FRAME_BYTES: Final = 1_000_000
#: Room for a chunk frame's own members around its data.
_OVERHEAD: Final = 128


def _cut(data: bytes, start: int, size: int) -> int:
    """The end of a piece starting at ``start`` of at most ``size`` bytes, on a UTF-8 boundary."""
    end = min(len(data), start + size)
    while end < len(data) and end > start and (data[end] & 0xC0) == 0x80:
        end -= 1
    return end


def chunk_frames(data: bytes, limit: int, chunk_id: int) -> list[bytes]:
    """``data`` (a frame's UTF-8 JSON text) as it goes on the wire: itself when it fits in
    ``limit`` bytes, else ``chunk`` frames of at most ``limit`` bytes each."""
    if len(data) <= limit:
        return [data]
    size = max(16, (limit - _OVERHEAD) // 2)
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < len(data):
        end = _cut(data, start, size)
        bounds.append((start, end))
        start = end
    count = len(bounds)
    frames = []
    for index, (begin, end) in enumerate(bounds):
        piece = json.dumps(data[begin:end].decode("utf-8"), ensure_ascii=False)
        head = f'{{"op":"chunk","id":{chunk_id},"index":{index},"count":{count},"data":'
        frames.append(head.encode() + piece.encode() + b"}")
    return frames


class Reassembler:
    """A client's side: feed it ``chunk`` frames (decoded), get the frame text back once the
    last piece of an id arrived (tests, benches and Python clients use it)."""

    def __init__(self) -> None:
        self._pieces: dict[int, dict[int, str]] = {}

    def feed(self, chunk: Mapping[str, Any]) -> str | None:
        chunk_id, index, count = chunk["id"], chunk["index"], chunk["count"]
        pieces = self._pieces.setdefault(chunk_id, {})
        pieces[index] = chunk["data"]
        if len(pieces) < count:
            return None
        del self._pieces[chunk_id]
        return "".join(pieces[i] for i in range(count))
