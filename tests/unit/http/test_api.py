"""The operation table: routing on raw paths, parameter parsing, control requests, replies."""

from __future__ import annotations

import pytest

from outrider.http.api import OPERATIONS, match
from outrider.http.params import FieldError, control_request, values
from outrider.http.replies import answer
from outrider.queue.control import ACTIONS, LOOKUPS


def test_queue_names_travel_url_encoded() -> None:
    found = match("POST", "/api/v1/queues/mx%3Amx1.example.org%2Fdefault/pause")
    assert found.operation is not None and found.operation.cmd == "pause"
    assert found.path_params == {"queue": "mx:mx1.example.org/default"}
    detail = match("GET", "/api/v1/queues/example.net%2Fdefault?x=1")
    assert detail.operation is not None and detail.operation.handler == "queue_detail"
    assert detail.path_params == {"queue": "example.net/default"}


def test_unknown_paths_and_methods() -> None:
    assert match("GET", "/api/v1/nothing").status == 404
    assert match("GET", "/api/v1/queues/a/b/retry").status == 404  # unencoded '/'
    wrong = match("GET", "/api/v1/reload")
    assert (wrong.status, wrong.allowed) == (405, ("POST",))
    assert match("HEAD", "/api/v1/status").operation is not None


def test_static_takes_the_rest_of_the_path() -> None:
    found = match("GET", "/static/js/app.js")
    assert found.operation is not None and found.path_params == {"file": "js/app.js"}
    assert match("GET", "/").operation is not None


def test_every_cmd_is_a_control_verb() -> None:
    verbs = set(LOOKUPS) | set(ACTIONS) | {
        "overview", "reload", "route", "status", "pause", "resume", "backoff", "normal",
        "pause-job", "resume-job", "disable-source", "enable-source", "config", "cluster",
    }  # fmt: skip
    for op in OPERATIONS:
        assert bool(op.cmd) != bool(op.handler), op.path
        if op.cmd and not op.cmd.startswith("{"):
            assert op.cmd in verbs, op.path
        if op.method != "GET":  # acting needs admin; injecting, admin or an inject token
            if op.handler == "unsubscribe":  # the token is the credential (RFC 8058)
                assert op.role == "public", op.path
                continue
            assert op.role == ("inject" if op.handler == "inject" else "admin"), op.path


def op_for(method: str, path: str):  # type: ignore[no-untyped-def]
    found = match(method, path)
    assert found.operation is not None
    return found.operation, found.path_params


def test_query_values_are_typed_and_defaulted() -> None:
    op, path = op_for("GET", "/api/v1/queues")
    parsed = values(op, path, {"max": "5", "mode": "paused"}, None)
    assert parsed == {"domain": "", "vmta": "", "mode": "paused", "sort": "recipients", "max": 5}
    assert control_request(op, parsed) == {
        "cmd": "queues", "mode": "paused", "sort": "recipients", "max": 5,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"max": "-1"}, "max"),
        ({"max": "ten"}, "max"),
        ({"mode": "sleepy"}, "mode"),
        ({"sort": "size\x00"}, "sort"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_query_names_the_field(query: dict[str, str], field: str) -> None:
    op, path = op_for("GET", "/api/v1/queues")
    with pytest.raises(FieldError) as exc:
        values(op, path, query, None)
    assert exc.value.field == field


def test_required_and_boolean_parameters() -> None:
    op, path = op_for("GET", "/api/v1/route")
    with pytest.raises(FieldError) as exc:
        values(op, path, {}, None)
    assert exc.value.field == "address"
    op, path = op_for("DELETE", "/api/v1/messages/ABC")
    parsed = values(op, path, {"bounce": "true"}, None)
    assert control_request(op, parsed) == {"cmd": "delete", "id": "ABC", "bounce": True}
    with pytest.raises(FieldError) as exc:
        values(op, path, {"bounce": "maybe"}, None)
    assert exc.value.field == "bounce"


def test_mode_comes_from_the_body() -> None:
    op, path = op_for("POST", "/api/v1/queues/example.org/mode")
    parsed = values(op, path, {}, {"mode": "backoff"})
    assert control_request(op, parsed) == {"cmd": "backoff", "queue": "example.org"}
    for body, field in (({}, "mode"), ({"mode": 3}, "mode"), ({"mood": "x"}, "mood")):
        with pytest.raises(FieldError) as exc:
            values(op, path, {}, body)
        assert exc.value.field == field
    with pytest.raises(FieldError):
        values(op, path, {}, ["backoff"])


def test_control_replies_become_statuses() -> None:
    assert answer({"ok": True, "queues": []}).body == {"queues": []}
    missing = answer({"ok": False, "error": "no queued message X"})
    assert missing.status == 404 and "field" not in missing.body
    assert answer({"ok": False, "error": "queue q is not paused"}).status == 404
    bad = answer({"ok": False, "error": "'limit' must be a whole number, 0 or more"})
    assert (bad.status, bad.body["field"]) == (400, "limit")
    route = answer({"ok": False, "error": "not an address"}, default_field="address")
    assert (route.status, route.body["field"]) == (400, "address")
    assert answer({"ok": False, "error": "reload refused"}, cmd="reload").status == 409
    assert answer({"ok": False, "error": "command failed: boom"}).status == 500


def test_queue_detail_flattens_the_row_and_adds_shaping() -> None:
    from outrider.http.server import queue_detail

    row = {"queue": "q/default", "recipients": 2, "mode": "backoff", "reason": "backoff since x"}
    shaping = {"name": "q/default", "window": 3, "disabled_sources": ["192.0.2.1"]}
    replies = {"451 later": 1, "421 slow down": 2}
    detail = queue_detail("q/default", row, shaping, 0.0, replies)
    assert (detail["recipients"], detail["mode"], detail["shaping"]["window"]) == (2, "backoff", 3)
    assert detail["disabled_sources"] == ["192.0.2.1"]
    assert detail["backoff_since"] == "1970-01-01T00:00:00+00:00"
    assert [r["reply"] for r in detail["recent_replies"]] == ["421 slow down", "451 later"]
    empty = queue_detail("idle/default", None, {"mode": "normal", "domain": "idle"}, None, {})
    assert (empty["queue"], empty["recipients"], empty["domain"]) == ("idle/default", 0, "idle")
    assert empty["backoff_since"] is None and empty["recent_replies"] == []
