from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from server.history.queries import event_json
from tests.support.fixtures_store import random_events


@settings(max_examples=25)
@given(seed=st.integers(0, 10**6), seq=st.integers(1, 10**12))
def test_a_row_is_encoded_exactly_as_the_publish_script_writes_the_event(seed: int, seq: int) -> None:
    for event in random_events("BTCUSDT", 8, seed):
        written_by_the_script = '{"seq":' + str(seq) + "," + event.body()
        assert event_json(event.kind, event.to_dict(seq)) == written_by_the_script
