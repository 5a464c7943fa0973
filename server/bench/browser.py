"""The machine's Chromium for wall measurements and browser tests (driven by playwright).

``playwright install`` is not needed (nor possible offline): the system Chromium is launched
through ``executable_path``. ``$SIGNALPUSH_TEST_CHROMIUM`` names another binary.
"""

from __future__ import annotations

import os
import shutil
from typing import Final

#: Flags for an unattended headless Chromium that talks to nobody but the page's own server.
CHROMIUM_ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_path() -> str | None:
    """$SIGNALPUSH_TEST_CHROMIUM, else /usr/bin/chromium (or one on PATH); None when there is none."""
    given = os.environ.get("SIGNALPUSH_TEST_CHROMIUM")
    if given:
        return given if os.path.exists(given) else None
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.exists(candidate):
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")
