"""signalpush server: the gateway, the recorder, the history store, analytics and charts."""

from __future__ import annotations

__version__ = "0.1.0"
