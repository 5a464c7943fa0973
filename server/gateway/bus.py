"""The gateway's live feed: one pub/sub connection to Redis for every symbol it serves.

A small RESP client on asyncio streams with the hiredis parser: each read hands every
message already buffered to the gateway at once (natural batching), and the connection
is watched with PINGs. On a lost connection it reports ``down``, reconnects with
exponential backoff and full jitter, re-subscribes, and reports ``up``; the gateway then
fills what was missed from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

import hiredis

from publishers import keys
from publishers.backoff import Backoff, Retries
from publishers.options import redact_url
from server.errors import BusError

log = logging.getLogger(__name__)

#: (channel, payload) pairs in arrival order.
Batch = list[tuple[bytes, bytes]]


def _command(*parts: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def tls_context(url: str) -> ssl.SSLContext:
    """A TLS context from the same URL options redis-py reads (``ssl_ca_certs``, ``ssl_certfile``,
    ``ssl_keyfile``, ``ssl_cert_reqs`` = none|optional|required, ``ssl_check_hostname``)."""
    options = dict(parse_qsl(urlsplit(url).query))
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    requirement = options.get("ssl_cert_reqs", "required").lower()
    if requirement == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.check_hostname = options.get("ssl_check_hostname", "true").lower() not in ("false", "0", "no")
        context.verify_mode = ssl.CERT_OPTIONAL if requirement == "optional" else ssl.CERT_REQUIRED
    return context


class RedisBus:
    """Subscribe to symbols' live channels and deliver their messages in batches."""

    def __init__(
        self,
        url: str,
        *,
        on_batch: Callable[[Batch], Awaitable[None]],
        on_state: Callable[[bool], Awaitable[None]],
        ping_interval_s: float = 2.0,
        connect_timeout_s: float = 5.0,
        max_backoff_s: float = 5.0,
        batch_window_s: float = 0.0,
        sharded: bool = False,
        on_moved: Callable[[], None] | None = None,
    ) -> None:
        self._url = url
        self._on_batch = on_batch
        self._on_state = on_state
        self._ping_interval_s = ping_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._max_backoff_s = max_backoff_s
        self._batch_window_s = batch_window_s
        # Sharded pub/sub (Redis 7 clusters): SSUBSCRIBE on the node owning the channel's slot.
        self._subscribe_command = "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        self._unsubscribe_command = "SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE"
        self._on_moved = on_moved
        self._channels: set[str] = set()
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()
        self.up = False
        self.last_activity = 0.0
        self.reconnects = 0
        self.messages_in = 0

    def __repr__(self) -> str:
        return f"RedisBus({redact_url(self._url)!r}, up={self.up}, channels={len(self._channels)})"

    async def subscribe(self, symbol: str, timeout_s: float = 10.0) -> None:
        """Join the symbol's live channel; returns once Redis confirmed it (messages flow from then on)."""
        channel = keys.live_channel(symbol)
        self._channels.add(channel)
        waiter = self._confirmed.get(channel)
        if waiter is None:
            waiter = self._confirmed[channel] = asyncio.get_running_loop().create_future()
        if waiter.done():
            return
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
            self._send(_command(self._subscribe_command, channel))
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except TimeoutError:
            raise BusError(
                f"Redis did not confirm the subscription to {channel} within {timeout_s:g}s"
            ) from None

    def unsubscribe(self, symbol: str) -> None:
        channel = keys.live_channel(symbol)
        self._channels.discard(channel)
        self._confirmed.pop(channel, None)
        if self._writer is not None and self.up:
            self._send(_command(self._unsubscribe_command, channel))

    async def run(self) -> None:
        """Keep the connection up until cancelled."""
        retries = Retries(Backoff(first_s=0.1, max_s=self._max_backoff_s))
        while True:
            was_up = False
            try:
                await self._session()
            except (OSError, ConnectionError, TimeoutError, BusError, hiredis.ProtocolError) as exc:
                was_up = self.up
                if was_up:
                    log.warning("redis bus lost", extra={"error": str(exc) or type(exc).__name__})
            finally:
                await self._mark_down()
            if was_up:
                retries.succeeded()  # a connection that worked: the next one starts from the first delay
            await retries.wait()
            self.reconnects += 1

    async def _session(self) -> None:
        reader, writer = await asyncio.wait_for(self._open(), self._connect_timeout_s)
        parser = hiredis.Reader()
        self._writer = writer
        try:
            await self._handshake(reader, writer, parser)
            self._connected.set()
            self.last_activity = time.monotonic()
            if self._channels:
                for channel in sorted(self._channels):  # one each: sharded channels may sit in several slots
                    self._send(_command(self._subscribe_command, channel))
            else:
                await self._set_up()
            pinger = asyncio.create_task(self._ping_loop(), name="signalpush-bus-ping")
            try:
                await self._read_loop(reader, parser)
            finally:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger
        finally:
            self._writer = None
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        parts = urlsplit(self._url)
        if parts.scheme == "unix":
            return await asyncio.open_unix_connection(parts.path)
        context = tls_context(self._url) if parts.scheme == "rediss" else None
        return await asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 6379, ssl=context)

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: hiredis.Reader
    ) -> None:
        parts = urlsplit(self._url)
        commands = []
        if parts.password is not None:
            user = unquote(parts.username) if parts.username else "default"
            commands.append(_command("AUTH", user, unquote(parts.password)))
        commands.append(_command("CLIENT", "SETNAME", "signalpush-gateway-bus"))
        writer.write(b"".join(commands))
        for _ in commands:
            reply = await self._read_reply(reader, parser)
            if isinstance(reply, hiredis.ReplyError):
                raise BusError(f"Redis refused the bus connection: {reply}")

    async def _read_reply(self, reader: asyncio.StreamReader, parser: hiredis.Reader) -> object:
        while True:
            reply = parser.gets()
            if reply is not False:
                return reply
            data = await asyncio.wait_for(reader.read(65536), self._connect_timeout_s)
            if not data:
                raise ConnectionError("Redis closed the connection")
            parser.feed(data)

    async def _read_loop(self, reader: asyncio.StreamReader, parser: hiredis.Reader) -> None:
        while True:
            data = await reader.read(1 << 18)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self.last_activity = time.monotonic()
            parser.feed(data)
            if self._batch_window_s:
                await self._gather_window(reader, parser)
            batch: Batch = []
            while (reply := parser.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    if str(reply).startswith("MOVED") and self._on_moved is not None:
                        self._on_moved()  # the slot lives elsewhere now: the cluster bus re-homes it
                        continue
                    raise BusError(f"Redis error on the bus: {reply}")
                if not isinstance(reply, list):
                    continue
                kind = reply[0]
                if kind == b"message" or kind == b"smessage":
                    batch.append((reply[1], reply[2]))
                elif kind == b"subscribe" or kind == b"ssubscribe":
                    await self._confirm(reply[1].decode())
                elif kind == b"sunsubscribe" and reply[1].decode() in self._channels and self._on_moved:
                    # Redis dropped a channel we still want: its slot migrated. Re-home it.
                    self._confirmed[reply[1].decode()] = asyncio.get_running_loop().create_future()
                    self._on_moved()
            if batch:
                self.messages_in += len(batch)
                await self._on_batch(batch)

    async def _gather_window(self, reader: asyncio.StreamReader, parser: hiredis.Reader) -> None:
        """With ``batch_ms`` set: keep reading for that long so very high rates make bigger batches."""
        deadline = time.monotonic() + self._batch_window_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                data = await asyncio.wait_for(reader.read(1 << 18), remaining)
            except TimeoutError:
                return
            if not data:
                raise ConnectionError("Redis closed the connection")
            parser.feed(data)

    async def _confirm(self, channel: str) -> None:
        waiter = self._confirmed.get(channel)
        if waiter is None:
            waiter = self._confirmed[channel] = asyncio.get_running_loop().create_future()
        if not waiter.done():
            waiter.set_result(None)
        if not self.up and all(
            (w := self._confirmed.get(c)) is not None and w.done() for c in self._channels
        ):
            await self._set_up()

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ping_interval_s)
            if time.monotonic() - self.last_activity > 3 * self._ping_interval_s:
                log.warning("redis bus silent: reconnecting")
                if self._writer is not None:
                    self._writer.close()
                return
            self._send(_command("PING"))

    def _send(self, data: bytes) -> None:
        if self._writer is None:
            raise ConnectionError("the bus is not connected")
        self._writer.write(data)

    async def _set_up(self) -> None:
        if not self.up:
            self.up = True
            await self._on_state(True)

    async def _mark_down(self) -> None:
        self._connected.clear()
        for channel, waiter in list(self._confirmed.items()):
            if waiter.done():
                self._confirmed[channel] = asyncio.get_running_loop().create_future()
        if self.up:
            self.up = False
            await self._on_state(False)

    @property
    def channels(self) -> set[str]:
        return set(self._channels)

    def is_subscribed(self, channel: str) -> bool:
        """Redis confirmed this channel on the current connection."""
        waiter = self._confirmed.get(channel)
        return self.up and waiter is not None and waiter.done()

    def is_healthy(self, max_silence_s: float) -> bool:
        """Connected, and heard from Redis (a message or a PING reply) recently."""
        return self.up and time.monotonic() - self.last_activity <= max_silence_s
