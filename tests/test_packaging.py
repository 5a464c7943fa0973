"""A plain, non-editable wheel carries everything the server needs at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("signalpush-*.whl")
    return built


def test_wheel_ships_the_lua_script_and_console_script(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "publishers/publish.lua" in names
    assert "server/py.typed" in names and "publishers/py.typed" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "signalpush = server.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_unpacked_wheel_runs_without_the_checkout(wheel: Path, tmp_path: Path) -> None:
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    result = subprocess.run(
        [sys.executable, "-I", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); "
         "import publishers.script as s, server.cli.main as c; "
         "assert s.PUBLISH_SCRIPT.startswith('-- signalpush'); print(s.__file__)",
         str(tmp_path / "site")],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.stdout.startswith(str(tmp_path / "site"))


def test_wheel_ships_the_client_and_the_wall_but_not_node_modules(wheel: Path, tmp_path: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.removeprefix("client_js/") for n in names if n.startswith("client_js/")}
    expected = {
        "signalpush.js",
        "signalpush.d.ts",
        "wall.html",
        "wall.js",
        "wall.css",
        "wall-model.js",
        "wall-tile.js",
        "wall-live.js",
        "wall-paint.js",
    }
    assert (
        expected
        | {"wall-figure.js", "wall-ledger.js", "index.html", "index.js", "events-schema.json"}
        | {"wall-fleet.js", "wall-fit.js", "walls.html", "walls.js"}
        <= shipped
    )
    assert "package.json" not in shipped
    assert not any("/" in name for name in shipped), "node_modules and tests stay out of the wheel"
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    subprocess.run(
        [sys.executable, "-I", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); from importlib import resources; "
         "assert resources.files('client_js').joinpath('wall.html').is_file()",
         str(tmp_path / "site")],
        check=True, cwd=tmp_path,
    )  # fmt: skip
