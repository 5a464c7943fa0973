"""One visual language for every chart: colours, marker shapes, confidence scaling, themes.

The seed-API layers, the wall's server-built figures and (through the ``live`` block of
:func:`server.charts.wall.build_symbol_figure`) the JS client all take their styling from
here, so a live-appended marker looks exactly like a backfilled one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

SIGNAL_COLORS: Final = {"buy": "#22c55e", "sell": "#ef4444", "hold": "#9ca3af"}
SIGNAL_SYMBOLS: Final = {"buy": "triangle-up", "sell": "triangle-down", "hold": "circle"}
SIDE_COLORS: Final = {"buy": "#22c55e", "sell": "#ef4444"}
PNL_COLORS: Final = {"win": "#22c55e", "loss": "#ef4444", "flat": "#9ca3af"}
ENTRY_SYMBOL: Final = "diamond"
EXIT_SYMBOL: Final = "x"
#: Line colours of equity curves, one per bot in order of appearance (cycled).
EQUITY_PALETTE: Final = (
    "#60a5fa",
    "#f59e0b",
    "#a78bfa",
    "#34d399",
    "#f472b6",
    "#facc15",
    "#38bdf8",
    "#fb7185",
)
CANDLE_UP: Final = "#22c55e"
CANDLE_DOWN: Final = "#ef4444"


@dataclass(frozen=True)
class ConfidenceScale:
    """Marker size and opacity grow linearly with confidence (clipped to 0..1).

    ``size = size_min + (size_max - size_min) * c`` and
    ``opacity = opacity_min + (opacity_max - opacity_min) * c``.
    """

    size_min: float = 10.0
    size_max: float = 26.0
    opacity_min: float = 0.35
    opacity_max: float = 1.0

    def size(self, confidence: float) -> float:
        c = min(1.0, max(0.0, confidence))
        return round(self.size_min + (self.size_max - self.size_min) * c, 3)

    def opacity(self, confidence: float) -> float:
        c = min(1.0, max(0.0, confidence))
        return round(self.opacity_min + (self.opacity_max - self.opacity_min) * c, 3)

    def sizes(self, confidence: np.ndarray) -> list[float]:
        """:meth:`size` of every confidence, vectorised."""
        c = np.clip(np.nan_to_num(np.asarray(confidence, dtype="float64"), nan=1.0), 0.0, 1.0)
        out: list[float] = np.round(self.size_min + (self.size_max - self.size_min) * c, 3).tolist()
        return out

    def opacities(self, confidence: np.ndarray) -> list[float]:
        """:meth:`opacity` of every confidence, vectorised."""
        c = np.clip(np.nan_to_num(np.asarray(confidence, dtype="float64"), nan=1.0), 0.0, 1.0)
        out: list[float] = np.round(self.opacity_min + (self.opacity_max - self.opacity_min) * c, 3).tolist()
        return out

    def to_json(self) -> dict[str, list[float]]:
        return {"size": [self.size_min, self.size_max], "opacity": [self.opacity_min, self.opacity_max]}


@dataclass(frozen=True)
class Theme:
    """Colours and font sizes of a figure; ``dark`` is made to be read from across a room."""

    name: str
    background: str
    text: str
    grid: str
    font_size: int
    marker_line: str
    confidence: ConfidenceScale = field(default_factory=ConfidenceScale)
    trade_marker_size: float = 16.0
    trade_line_width: float = 2.5
    equity_line_width: float = 2.5

    def layout(self) -> dict[str, Any]:
        """Layout keys shared by every figure of this theme."""
        return {
            "template": {"data": {}, "layout": {}},
            "paper_bgcolor": self.background,
            "plot_bgcolor": self.background,
            "font": {"color": self.text, "size": self.font_size, "family": "Inter, system-ui, sans-serif"},
            "hoverlabel": {"font": {"size": self.font_size}},
            "hovermode": "closest",
            "legend": {
                "orientation": "h",
                "x": 0,
                "y": 1.0,
                "yanchor": "bottom",
                "font": {"size": self.font_size - 2},
                "groupclick": "togglegroup",
                # Legend symbols at one readable size (markers sized by confidence would draw tiny ones).
                "itemsizing": "constant",
            },
        }

    def axis(self) -> dict[str, Any]:
        return {
            "gridcolor": self.grid,
            "zerolinecolor": self.grid,
            "linecolor": self.grid,
            "tickfont": {"size": self.font_size - 2},
        }


THEMES: Final = {
    # A wall shows hours of a busy symbol on a quarter of a screen: markers small enough that the
    # candles under them stay visible, text large enough to read from across a room.
    "dark": Theme(
        "dark",
        background="#0b0f14",
        text="#e5e7eb",
        grid="#1f2937",
        font_size=18,
        marker_line="#0b0f14",
        confidence=ConfidenceScale(6.0, 16.0, 0.35, 1.0),
        trade_marker_size=11.0,
    ),
    "light": Theme(
        "light",
        background="#ffffff",
        text="#111827",
        grid="#e5e7eb",
        font_size=14,
        marker_line="#ffffff",
        confidence=ConfidenceScale(8.0, 20.0, 0.35, 1.0),
        trade_marker_size=12.0,
        trade_line_width=2.0,
        equity_line_width=2.0,
    ),
}


def theme(name: str) -> Theme:
    """The theme called ``name`` ("dark" or "light"); ValueError otherwise."""
    try:
        return THEMES[name]
    except KeyError:
        raise ValueError(f"theme: must be one of {', '.join(THEMES)}, got {name!r}") from None


def equity_color(index: int) -> str:
    return EQUITY_PALETTE[index % len(EQUITY_PALETTE)]
