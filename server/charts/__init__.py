"""Charts: the seed document's layer API (:mod:`server.charts.layers`, re-exported here) and the
wall's server-built figures (:mod:`server.charts.wall`)."""

from __future__ import annotations

from server.charts.layers import *  # noqa: F403
from server.charts.layers import __all__ as _layer_names

__all__ = list(_layer_names)
