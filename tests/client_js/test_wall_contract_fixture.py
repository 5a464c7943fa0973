"""The figure-contract fixture the JS tests check the wall against must be the server's current output."""

from __future__ import annotations

import json

from tests.support.wall_contract import FIXTURE, build_contract


def test_the_committed_contract_fixture_is_what_the_server_builds_now() -> None:
    committed = json.loads(FIXTURE.read_text())
    fresh = json.loads(json.dumps(build_contract(), allow_nan=False))
    assert committed == fresh, (
        "client_js/tests/fixtures/wall-contract.json is stale: the server's figure contract changed. "
        "Run `python -m tests.support.wall_contract`, then `make nodetest`."
    )
