from __future__ import annotations

from pathlib import Path

from outrider.queue.control_state import STATE_FILE, ControlState


def test_round_trip(tmp_path: Path) -> None:
    state = ControlState(
        paused_queues={"example.org"},
        paused_jobs={"spring"},
        backoff={"mx:mx.gmail.test/default": 1_700_000_000.5},
        disabled={"mx:mx.yahoo.test": {"mta10": 1_700_003_600.0}, "empty.test": {}},
    )
    state.save(tmp_path)
    loaded = ControlState.load(tmp_path)
    assert loaded.paused_queues == {"example.org"}
    assert loaded.paused_jobs == {"spring"}
    assert loaded.backoff == {"mx:mx.gmail.test/default": 1_700_000_000.5}
    assert loaded.disabled == {"mx:mx.yahoo.test": {"mta10": 1_700_003_600.0}}
    assert (tmp_path / STATE_FILE).stat().st_mode & 0o777 == 0o600


def test_missing_or_malformed_state_starts_empty(tmp_path: Path) -> None:
    assert ControlState.load(tmp_path) == ControlState()
    (tmp_path / STATE_FILE).write_text("{not json")
    assert ControlState.load(tmp_path) == ControlState()
    (tmp_path / STATE_FILE).write_text('{"backoff": {"q": "soon"}}')
    assert ControlState.load(tmp_path) == ControlState()
