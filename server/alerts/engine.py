"""The alert evaluator: a pure state machine fed events and "now", returning fire/resolve decisions.

Per (rule, scope key) an incident is ``ok``, ``pending`` (the condition holds, its window
``for_s`` or its cooldown has not passed) or ``firing`` (fired once; dedupe: no second fire
until it resolves). A resolution starts the cooldown. ``signal`` is instant: each matching
event fires unless the (rule, scope key) is cooling down; it never resolves.

What the conditions look at is kept once per bot, symbol and bus source (not per rule), so
50 rules do not multiply the state. The state is plain JSON (:meth:`Engine.state` /
:meth:`Engine.restore`): the I/O layer checkpoints it with its stream cursors.

An alert's id is derived from (rule, scope key, cause): the cause is the reference of the
event that started the incident (for a timer condition, the last event seen before the
silence), never a clock reading. A replay of the same events after a crash therefore makes
the same ids, and the publish step's dedup drops the second fire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from server.alerts.checkpoint import checked_state
from server.alerts.decisions import ALERTS_SYMBOL, Decision, alert_id, decision_of
from server.alerts.plans import KIND_CONDITIONS, TIMERS, Plans
from server.alerts.rules import AlertConfig, Rule

#: Bots and symbols tracked at most (names come from the stream: hostile input is bounded).
MAX_TRACKED: Final = 20_000
STATE_VERSION: Final = 1


class Engine:
    """Evaluates the rules of ``config`` (see the module docstring)."""

    def __init__(self, config: AlertConfig) -> None:
        self.config = config
        self._rules: tuple[Rule, ...] = tuple(r for r in config.rules if r.enabled)
        self._by_name = {r.name: r for r in self._rules}
        #: bot -> {seen, symbol, strategy, ref, status, eq, peak_eq, cum, peak_cum, losses}
        self.bots: dict[str, dict[str, Any]] = {}
        #: symbol -> {seen, ref} of its last candle
        self.candles: dict[str, dict[str, Any]] = {}
        #: bus source -> ms it went down (None: up)
        self.bus: dict[str, int | None] = {}
        #: "rule\x00scope" -> {state, since, cause, id, symbol, value, text, until}
        self.incidents: dict[str, dict[str, Any]] = {}
        #: Every scope key that may have an incident (a superset: rebuilt by tick). A scope not in
        #: it has none, so the common "condition not met" costs one set lookup.
        self._scopes: set[str] = set()
        self.dropped = 0
        self._plans = Plans(self._rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    # -- input ------------------------------------------------------------------------------

    def observe(self, event: Mapping[str, Any], now_ms: int, ref: str | None = None) -> list[Decision]:
        """One event (a checked event dict), seen at ``now_ms``; ``ref`` names it (default symbol:seq)."""
        kind = event.get("kind")
        if not isinstance(kind, str) or kind not in KIND_CONDITIONS:
            return []  # alerts, acks and unknown kinds are not inputs
        symbol = str(event.get("symbol"))
        ref = ref or f"{symbol}:{event.get('seq')}"
        out: list[Decision] = []
        if kind == "candle":
            if symbol not in self.candles and len(self.candles) >= MAX_TRACKED:
                self.dropped += 1
                return out
            self.candles[symbol] = {"seen": now_ms, "ref": ref}
            if symbol in self._scopes:
                for rule in self._plans.get("candle", symbol, None, None).resolving:
                    self._set(rule, symbol, False, now_ms, out)
            return out
        bot, strategy = event.get("bot"), event.get("strategy")
        if not isinstance(bot, str) or not isinstance(strategy, str):
            return out
        data = self._bot(bot)
        if data is None:
            return out
        data.update(seen=now_ms, symbol=symbol, strategy=strategy, ref=ref)
        if kind == "bot":
            data["status"] = event.get("status")
            equity = event.get("equity")
            if isinstance(equity, int | float):
                data["eq"] = float(equity)
                data["peak_eq"] = max(float(data.get("peak_eq", equity)), float(equity))
        elif kind == "trade" and event.get("action") == "exit" and isinstance(event.get("pnl"), int | float):
            pnl = float(event["pnl"])
            data["cum"] = float(data.get("cum", 0.0)) + pnl
            data["peak_cum"] = max(float(data.get("peak_cum", 0.0)), data["cum"])
            data["losses"] = int(data.get("losses", 0)) + 1 if pnl < 0 else 0
        plan = self._plans.get(kind, symbol, bot, strategy)
        if plan.resolving and bot in self._scopes:  # silence ends with any event of the bot
            for rule in plan.resolving:
                self._set(rule, bot, False, now_ms, out)
        for rule in plan.evaluating:
            self._evaluate(rule, kind, event, bot, data, now_ms, out)
        if plan.signals:
            confidence = event.get("confidence")
            if isinstance(confidence, int | float) and confidence >= plan.min_confidence:
                for rule in plan.signals:
                    self._evaluate(rule, kind, event, bot, data, now_ms, out)
        return out

    def signal_floor(self, symbol: str, bot: str, strategy: str) -> float:
        """The lowest confidence at which a signal of (``symbol``, ``bot``, ``strategy``) is an input of
        its own (a signal rule in scope looks at it); ``inf`` when no signal rule is in scope. Under
        it, a signal only refreshes what the bot's next event overwrites (the reader coalesces)."""
        plan = self._plans.get("signal", symbol, bot, strategy)
        return plan.min_confidence if plan.signals else float("inf")

    def observe_bus(self, source: str, up: bool, since_ms: int, now_ms: int) -> list[Decision]:
        """A bus (a gateway's, or the evaluator's own Redis link) seen up, or down since ``since_ms``."""
        if source not in self.bus and len(self.bus) >= 1000:
            self.dropped += 1
            return []
        self.bus[source] = None if up else since_ms
        out: list[Decision] = []
        if up:
            for rule in self._rules:
                if rule.condition.type == "bus_down":
                    self._set(rule, source, False, now_ms, out)
        return out

    def tick(self, now_ms: int) -> list[Decision]:
        """Timer conditions (silence, no candle, bus down) and windows that ended, at ``now_ms``."""
        out: list[Decision] = []
        for rule in self._rules:
            condition = rule.condition
            limit = condition.seconds * 1000
            if condition.type == "silent":
                for bot, data in self.bots.items():
                    if rule.scope.admits(data.get("symbol"), bot, data.get("strategy")):
                        silent = now_ms - int(data["seen"]) >= limit
                        self._set(
                            rule,
                            bot,
                            silent,
                            now_ms,
                            out,
                            cause=data["ref"],
                            symbol=data["symbol"],
                            text=f"bot {bot} silent for {condition.seconds:g} s",
                        )
            elif condition.type == "no_candle":
                for symbol, seen in self.candles.items():
                    if rule.scope.admits(symbol):
                        quiet = now_ms - int(seen["seen"]) >= limit
                        self._set(
                            rule,
                            symbol,
                            quiet,
                            now_ms,
                            out,
                            cause=seen["ref"],
                            symbol=symbol,
                            text=f"no candle for {symbol} in {condition.seconds:g} s",
                        )
            elif condition.type == "bus_down":
                for source, down_since in self.bus.items():
                    down = down_since is not None and now_ms - down_since >= limit
                    self._set(
                        rule,
                        source,
                        down,
                        now_ms,
                        out,
                        cause=f"{source}@{down_since}",
                        symbol=ALERTS_SYMBOL,
                        text=f"bus down on {source} for {condition.seconds:g} s",
                    )
        # Pending incidents of event conditions whose window or cooldown has now passed.
        self._scopes = {key.split("\x00", 1)[1] for key in self.incidents}
        for key, inc in list(self.incidents.items()):
            if inc["state"] == "ok" and int(inc.get("until", 0)) <= now_ms:
                del self.incidents[key]  # a cooldown that ended: nothing left to remember
            elif inc["state"] == "pending":
                pending_rule = self._by_name.get(key.split("\x00", 1)[0])
                if pending_rule is not None and pending_rule.condition.type not in TIMERS:
                    self._maybe_fire(pending_rule, key, inc, now_ms, out)
        return out

    # -- conditions -----------------------------------------------------------------------------

    def _evaluate(
        self,
        rule: Rule,
        kind: str,
        event: Mapping[str, Any],
        bot: str,
        data: dict[str, Any],
        now_ms: int,
        out: list[Decision],
    ) -> None:
        condition = rule.condition
        ctype = condition.type
        symbol = data["symbol"]
        if ctype == "status" and kind == "bot":
            status = data.get("status")
            self._set(
                rule,
                bot,
                status in condition.statuses,
                now_ms,
                out,
                cause=data["ref"],
                symbol=symbol,
                text=f"bot {bot} status {status}",
            )
        elif ctype == "drawdown":
            if condition.of == "equity" and kind == "bot" and "eq" in data:
                peak, level = float(data["peak_eq"]), float(data["eq"])
            elif (
                condition.of == "pnl" and kind == "trade" and event.get("action") == "exit" and "cum" in data
            ):
                peak, level = float(data["peak_cum"]), float(data["cum"])
            else:
                return
            drop = peak - level
            pct = drop / peak * 100 if peak > 0 else 0.0
            over = (condition.abs is not None and drop > condition.abs) or (
                condition.pct is not None and peak > 0 and pct > condition.pct
            )
            what = "equity" if condition.of == "equity" else "realised P&L"
            self._set(
                rule,
                bot,
                over,
                now_ms,
                out,
                cause=data["ref"],
                symbol=symbol,
                value=round(drop, 8),
                text=f"bot {bot} {what} drawdown {drop:g} ({pct:.1f}% of peak {peak:g})",
            )
        elif ctype == "loss_streak" and kind == "trade" and event.get("action") == "exit":
            if not isinstance(event.get("pnl"), int | float):
                return
            losses = int(data.get("losses", 0))
            self._set(
                rule,
                bot,
                losses >= condition.count,
                now_ms,
                out,
                cause=data["ref"],
                symbol=symbol,
                value=float(losses),
                text=f"bot {bot} lost {losses} trades in a row",
            )
        elif ctype == "signal" and kind == "signal":
            confidence = event.get("confidence")
            if not isinstance(confidence, int | float) or confidence < condition.min_confidence:
                return
            if condition.signal_types and event.get("type") not in condition.signal_types:
                return
            scope = f"{symbol}/{bot}"
            self._instant(
                rule,
                scope,
                now_ms,
                out,
                cause=data["ref"],
                symbol=symbol,
                value=float(confidence),
                text=f"{event.get('type')} signal on {symbol} by {bot}, confidence {confidence:g}",
            )

    # -- incidents -----------------------------------------------------------------------------

    def _set(
        self,
        rule: Rule,
        scope: str,
        active: bool,
        now_ms: int,
        out: list[Decision],
        *,
        cause: str = "",
        symbol: str = ALERTS_SYMBOL,
        value: float | None = None,
        text: str = "",
    ) -> None:
        if not active and scope not in self._scopes:
            return
        key = f"{rule.name}\x00{scope}"
        inc = self.incidents.get(key)
        if not active:
            if inc is None:
                return
            if inc["state"] == "firing":
                out.append(decision_of("resolve", rule, scope, inc, now_ms))
                self.incidents[key] = {"state": "ok", "until": now_ms + int(rule.cooldown_s * 1000)}
            elif inc["state"] == "pending":
                inc["state"] = "ok"
            if inc["state"] == "ok" and int(inc.get("until", 0)) <= now_ms:
                self.incidents.pop(key, None)  # nothing left to remember
            return
        if inc is not None and inc["state"] == "firing":
            inc["value"] = value  # dedupe: one fire per incident
            return
        if inc is None or inc["state"] == "ok":
            until = int(inc.get("until", 0)) if inc else 0
            inc = {"state": "pending", "since": now_ms, "cause": cause, "until": until}
            self.incidents[key] = inc
            self._scopes.add(scope)
        inc.update(symbol=symbol, value=value, text=text)
        self._maybe_fire(rule, key, inc, now_ms, out)

    def _maybe_fire(
        self, rule: Rule, key: str, inc: dict[str, Any], now_ms: int, out: list[Decision]
    ) -> None:
        if now_ms - int(inc["since"]) < rule.for_s * 1000 or now_ms < int(inc.get("until", 0)):
            return
        scope = key.split("\x00", 1)[1]
        inc["state"] = "firing"
        inc["id"] = alert_id(rule.name, scope, str(inc["cause"]))
        out.append(decision_of("fire", rule, scope, inc, now_ms))

    def _instant(
        self,
        rule: Rule,
        scope: str,
        now_ms: int,
        out: list[Decision],
        *,
        cause: str,
        symbol: str,
        value: float,
        text: str,
    ) -> None:
        key = f"{rule.name}\x00{scope}"
        inc = self.incidents.get(key)
        if inc is not None and now_ms < int(inc.get("until", 0)):
            return  # cooling down
        inc = {
            "state": "ok",
            "until": now_ms + int(rule.cooldown_s * 1000),
            "cause": cause,
            "id": alert_id(rule.name, scope, cause),
            "symbol": symbol,
            "value": value,
            "text": text,
        }
        self.incidents[key] = inc
        out.append(decision_of("fire", rule, scope, inc, now_ms))

    # -- tracking -----------------------------------------------------------------------------

    def _bot(self, bot: str) -> dict[str, Any] | None:
        data = self.bots.get(bot)
        if data is None:
            if len(self.bots) >= MAX_TRACKED:
                self.dropped += 1
                return None
            data = self.bots[bot] = {}
        return data

    # -- state -------------------------------------------------------------------------------

    def active(self) -> Iterable[tuple[str, str, str]]:
        """(rule, scope, alert id) of every firing incident."""
        for key, inc in self.incidents.items():
            if inc["state"] == "firing":
                rule, scope = key.split("\x00", 1)
                yield rule, scope, str(inc["id"])

    def state(self) -> dict[str, Any]:
        """Everything the engine knows, as JSON (for a checkpoint)."""
        return {
            "v": STATE_VERSION,
            "bots": self.bots,
            "candles": self.candles,
            "bus": self.bus,
            "incidents": self.incidents,
        }

    def restore(self, state: object) -> bool:
        """Take a checkpoint's state back (read from Redis: untrusted). False (and a fresh
        engine) if it is not one this version wrote."""
        parts = checked_state(state, version=STATE_VERSION, max_tracked=MAX_TRACKED)
        if parts is None:
            return False
        self.bots, self.candles, self.bus, self.incidents = parts
        self._scopes = {key.split("\x00", 1)[1] for key in self.incidents}
        self._plans.clear()
        return True
