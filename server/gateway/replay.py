"""The flight recorder on the gateway: ``subscribe`` with ``replay`` and ``replay_control``.

Each replay is a task of its connection (server/gateway/replay_play.py) with its own id
(``r1``, ``r2``, ...: never a live group id), reading SQL and the Redis log through a
:class:`~server.history.replay_store.ReplayStore`. With ``to: "live"`` it hands over at the
live edge to an ordinary subscription resumed from the position it reached (the resume
machinery: no hole, no duplicate).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Final

from websockets.exceptions import ConnectionClosed

from server.core.protocol import (
    HistoryRequest,
    ResumeRequest,
    Subscribe,
    error_frame,
    shown,
    unsubscribed_frame,
)
from server.core.replay import ReplayControl, replay_subscribed_frame
from server.errors import ProtocolError
from server.gateway.builds import HistoryBudget
from server.gateway.catchup import CATCHUP_ERRORS
from server.gateway.outbox import Outbox
from server.gateway.replay_play import ReplayPlayer
from server.gateway.session import Session
from server.history.replay_store import ReplayStore
from server.settings import HistorySettings

log = logging.getLogger(__name__)

#: Replays one connection may run at once (besides its live subscriptions).
MAX_REPLAYS: Final = 32

#: Subscribe ``message`` live on ``session`` (in order with its other subscribes).
LiveSubscribe = Callable[[Session, Subscribe], None]


class Replays:
    """Every connection's replays: started, controlled, stopped, handed over to live."""

    def __init__(
        self,
        *,
        store: ReplayStore | None,
        outbox: Outbox,
        budget: HistoryBudget,
        defaults: HistorySettings,
        subscribe_live: LiveSubscribe,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.budget = budget
        self.defaults = defaults
        self.subscribe_live = subscribe_live
        self.players: dict[Session, dict[str, tuple[ReplayPlayer, asyncio.Task[None]]]] = {}
        self._ids = itertools.count(1)
        #: Replays started, and handed over to live.
        self.started = 0
        self.handed_over = 0

    def __repr__(self) -> str:
        return f"Replays(running={self.running}, started={self.started}, live={self.handed_over})"

    @property
    def running(self) -> int:
        """Replays running on every connection."""
        return sum(len(mine) for mine in self.players.values())

    async def start(self, session: Session, request: Subscribe) -> None:
        """Start a replay (after the symbol was authorized); raises ProtocolError to refuse it."""
        replay = request.replay
        assert replay is not None
        if self.store is None:
            raise ProtocolError("bad_request", "replay: this gateway has no history database (database.url)")
        mine = self.players.setdefault(session, {})
        if len(mine) >= MAX_REPLAYS:
            raise ProtocolError("too_many", f"at most {MAX_REPLAYS} replays per connection")
        self.budget.admit()  # a replay counts against the history budget: busy before anything starts
        history = request.history or HistoryRequest(self.defaults.default_minutes, self.defaults.max_points)
        sub = f"r{next(self._ids)}"
        ws = session.ws

        async def hand_over(epoch: str | None, seq: int) -> None:
            self.handed_over += 1
            self._forget(session, sub)
            live = Subscribe(request.ref, request.symbol, request.filter, None, ResumeRequest(epoch, seq))
            self.subscribe_live(session, live)

        player = ReplayPlayer(
            ws=ws,
            sub=sub,
            symbol=request.symbol,
            flt=request.filter,
            request=replay,
            history=history,
            max_events=self.defaults.max_events,
            store=self.store,
            outbox=self.outbox,
            budget=self.budget,
            hand_over=hand_over,
        )
        await ws.send(
            replay_subscribed_frame(request.ref, sub, request.symbol, request.filter.to_json(), replay)
        )
        task = asyncio.create_task(self._run(session, player, request), name=f"signalpush-replay-{sub}")
        mine[sub] = (player, task)
        self.started += 1

    async def _run(self, session: Session, player: ReplayPlayer, request: Subscribe) -> None:
        try:
            await player.run()
        except (ConnectionClosed, asyncio.CancelledError):
            pass
        except CATCHUP_ERRORS as exc:
            log.warning(
                "replay failed", extra={"sub": player.sub, "symbol": player.symbol, "error": str(exc)}
            )
            self._fail(session, player, request, f"replay: history unavailable ({str(exc)[:200]})")
        except Exception:
            log.exception("replay crashed", extra={"sub": player.sub, "symbol": player.symbol})
            self._fail(session, player, request, "replay: internal error")
        finally:
            self._forget(session, player.sub)

    def _fail(self, session: Session, player: ReplayPlayer, request: Subscribe, message: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            self.outbox.send_now(session.ws, error_frame(request.ref, "internal", message))
            self.outbox.send_now(session.ws, unsubscribed_frame(None, player.sub))

    def _forget(self, session: Session, sub: str) -> None:
        mine = self.players.get(session)
        if mine is not None:
            mine.pop(sub, None)
            if not mine:
                self.players.pop(session, None)

    def control(self, session: Session, message: ReplayControl) -> None:
        """Apply a ``replay_control`` to one of the connection's replays."""
        found = self.players.get(session, {}).get(message.sub)
        if found is None:
            raise ProtocolError("bad_request", f"sub: no replay {shown(message.sub)} on this connection")
        found[0].control(message)

    def stop(self, session: Session, sub: str) -> bool:
        """End a replay (an ``unsubscribe`` of its id); False if there is no such replay."""
        found = self.players.get(session, {}).get(sub)
        if found is None:
            return False
        self._forget(session, sub)
        found[1].cancel()
        return True

    def drop(self, session: Session) -> None:
        """The connection is gone: its replays stop."""
        for _player, task in self.players.pop(session, {}).values():
            task.cancel()
