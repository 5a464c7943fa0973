"""The house rules of imports (docs/design.md, "Layers"): a layer imports only layers below it.

Read from the source with ``ast`` (function-level imports count too: a lazy import is still a
dependency), so an upward import fails here before anyone has to find the cycle it makes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Bottom to top. A module may import its own layer and the ones before it.
LAYERS = (
    "publishers",
    "server",  # server/errors.py, settings.py, logs.py: shared by every server layer
    "server.core",
    "server.alerts",  # the alert rules and evaluator: pure like the core (docs/alerts.md)
    "server.history",
    "server.analytics",
    "server.charts",
    "server.gateway",
    "server.cli",
    "server.bench",
)
#: The pure core does no I/O and reads no clock or environment: none of these, not even lazily.
CORE_FORBIDDEN = (
    *("redis", "hiredis", "websockets", "sqlalchemy", "aiosqlite", "asyncpg"),
    *("socket", "asyncio", "os", "time"),
)


def layer_of(module: str) -> int:
    return max(i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + "."))


def imports(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return found


SOURCES = sorted(p for top in ("publishers", "server") for p in (ROOT / top).rglob("*.py"))


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_imports_only_its_own_layer_and_the_ones_below(path: Path) -> None:
    module = _module(path)
    own = layer_of(module)
    ours = [name for name in imports(path) if name.split(".")[0] in ("publishers", "server")]
    upward = sorted({name for name in ours if layer_of(name) > own})
    assert not upward, f"{module} (layer {LAYERS[own]}) imports from above it: {upward}"
    if LAYERS[own] in ("server.core", "server.alerts"):
        io = sorted({name for name in imports(path) if name.split(".")[0] in CORE_FORBIDDEN})
        assert not io, f"{module} is in the pure core but imports {io}"


def test_server_keeps_at_most_six_modules_at_its_top_the_rest_live_in_layer_folders() -> None:
    top = sorted(p.name for p in (ROOT / "server").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 6, top


def test_nothing_is_patched_or_attached_after_construction() -> None:
    """Collaborators are constructor arguments (server/cli/runner.py composes): no monkey-patched
    methods, no ``x.attr = self`` back-links."""
    offenders = []
    for path in SOURCES:
        text = path.read_text()
        if "method-assign" in text:
            offenders.append(f"{path.relative_to(ROOT)}: type: ignore[method-assign]")
        for node in ast.walk(ast.parse(text)):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and any(isinstance(t, ast.Attribute) and not _is_self(t.value) for t in node.targets)
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: attaches self to another object")
    assert offenders == []


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"
