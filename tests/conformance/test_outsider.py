"""The conformance clients and tests are an outsider's: they import nothing from the project."""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).parent
PROJECT = ("server", "publishers", "client_js", "tests.support")
ALLOWED_LOCAL = ("tests.conformance.wire",)


def test_the_client_side_imports_nothing_from_the_project() -> None:
    checked = [HERE / "wire.py", *sorted(HERE.glob("test_*.py"))]
    for path in checked:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                local = name.startswith("tests.") and name not in ALLOWED_LOCAL
                assert not name.startswith(PROJECT) and not local, f"{path.name} imports {name}"
    assert len(checked) >= 3
