"""Alert routes delivered off the hot path: a bounded queue, a few workers, retries with backoff.

A delivery is one alert event on one route (webhook or Telegram; the wall needs none: the
alert is an event in the stream). It is POSTed as JSON by a worker (``urllib`` in a
thread: no HTTP client library at run time); a 2xx is done; a 5xx, a 429 or a network
error is retried after ``backoff_s`` doubling (full jitter) up to ``attempts``; then, or at
once on another 4xx, it is a dead letter (counted in ``signalpush_alert_dead_letters_total``).
A full queue makes a dead letter too: nothing here grows without bound.

:meth:`Deliveries.pending` lists what is not done (queued or being tried) so the evaluator's
checkpoint carries it: after a crash it is delivered again (at least once; the body carries
the alert id for a receiver that must not see it twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Final

from server.alerts.routes import request_for, wants
from server.alerts.rules import AlertConfig, Route
from server.settings import AlertSettings

log = logging.getLogger(__name__)

WORKERS: Final = 4
#: A delivery as the checkpoint keeps it: route name, the alert event, attempts made.
Pending = dict[str, Any]


class Deliveries:
    """The queue and its workers (run by :meth:`run` until cancelled)."""

    def __init__(self, config: AlertConfig, settings: AlertSettings) -> None:
        self._config = config
        self._settings = settings
        self._queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=settings.delivery_queue)
        self._pending: dict[str, Pending] = {}
        self.counters = {"delivered": 0, "retries": 0, "dead_letters": 0}

    def offer(self, alert: Mapping[str, Any], *, quiet: bool = False) -> None:
        """Queue ``alert`` (an alert event) on each of its routes that wants it (none in quiet hours)."""
        if quiet:
            return
        meta = alert.get("meta")
        names = meta.get("routes") if isinstance(meta, dict) else None
        if not isinstance(names, list):
            return
        for name in names:
            route = self._config.route(name) if isinstance(name, str) else None
            if route is not None and wants(route, alert):
                self._put({"route": name, "alert": dict(alert), "attempts": 0})

    def restore(self, pending: object) -> None:
        """Deliveries a checkpoint held (untrusted: malformed ones are skipped)."""
        if not isinstance(pending, list):
            return
        for item in pending[: self._settings.delivery_queue]:
            ok = (
                isinstance(item, dict)
                and isinstance(item.get("alert"), dict)
                and isinstance(item.get("route"), str)
            )
            if ok and self._config.route(item["route"]) is not None:
                self._put({"route": item["route"], "alert": item["alert"], "attempts": 0})

    def pending(self) -> list[Pending]:
        return list(self._pending.values())

    def _put(self, item: Pending) -> None:
        key = f"{item['route']}\x00{item['alert'].get('alert_id')}\x00{item['alert'].get('state')}"
        if key in self._pending:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.counters["dead_letters"] += 1
            return
        self._pending[key] = item
        item["key"] = key

    async def run(self) -> None:
        """The workers, until cancelled."""
        workers = [
            asyncio.create_task(self._work(), name=f"signalpush-alert-delivery-{i}") for i in range(WORKERS)
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            for worker in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._deliver(item)
            except Exception:  # a bug must not end the worker
                log.exception("alert delivery failed")
                self.counters["dead_letters"] += 1
            finally:
                self._pending.pop(item.get("key", ""), None)

    async def _deliver(self, item: Pending) -> None:
        route = self._config.route(item["route"])
        if route is None:
            return
        settings = self._settings
        for attempt in range(settings.delivery_attempts):
            if attempt:
                self.counters["retries"] += 1
                await asyncio.sleep(random.uniform(0, settings.delivery_backoff_s * 2 ** (attempt - 1)))
            status = await asyncio.to_thread(_post, route, item["alert"], settings.delivery_timeout_s)
            if 200 <= status < 300:
                self.counters["delivered"] += 1
                return
            if 400 <= status < 500 and status != 429:
                break  # the receiver refuses it: trying again will not help
        self.counters["dead_letters"] += 1
        log.warning(
            "alert delivery gave up",
            extra={"route": route.name, "alert_id": item["alert"].get("alert_id"), "attempts": attempt + 1},
        )


def _post(route: Route, alert: Mapping[str, Any], timeout_s: float) -> int:
    """POST the route's body; the HTTP status, or 0 for a network error."""
    url, body = request_for(route, alert)
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "signalpush-alerts"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return 0
