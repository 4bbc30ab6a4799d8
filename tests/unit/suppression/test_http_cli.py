"""The suppression API's handlers and parameters, and the CLI, without a daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from outrider.cli import main
from outrider.http import suppressions
from outrider.http.api import match
from outrider.http.params import FieldError, values
from outrider.suppression.store import SuppressionStore


def _values(method: str, path: str, query: dict[str, str], body: object = None) -> dict:
    found = match(method, path)
    assert found.operation is not None, path
    return values(found.operation, found.path_params, query, body)


def test_routes_and_parameters() -> None:
    assert match("GET", "/api/v1/suppressions").operation.handler == "suppressions_list"  # type: ignore[union-attr]
    op = match("DELETE", "/api/v1/suppressions/a%40x.test").operation
    assert op is not None and op.role == "admin"
    got = _values("POST", "/api/v1/suppressions", {}, {"addresses": ["a@x.test"], "scope": "s"})
    assert got["addresses"] == ["a@x.test"] and got["reason"] == "manual"
    assert _values("POST", "/api/v1/suppressions", {}, {"addresses": "a@x.test"})["addresses"] == [
        "a@x.test"
    ]
    with pytest.raises(FieldError, match="array of strings"):
        _values("POST", "/api/v1/suppressions", {}, {"addresses": [1]})
    with pytest.raises(FieldError, match="must be one of"):
        _values("POST", "/api/v1/suppressions", {}, {"address": "a@x.test", "reason": "x"})
    assert _values("GET", "/api/v1/suppressions/A%40x.test", {})["address"] == "A@x.test"


def test_handlers(tmp_path: Path) -> None:
    store = SuppressionStore(tmp_path / "s.db")
    add = suppressions.add_entries
    assert add(store, {"address": "", "addresses": None})[0] == 400
    status, body = add(store, {"address": "A@x.test", "addresses": ["b@x.test"], "scope": ""})
    assert (status, body) == (200, {"added": 2, "scope": "*", "reason": "manual"})
    status, body = add(store, {"addresses": ["ok@x.test", "bad"], "scope": "s.test"})
    assert status == 400 and body["errors"] == [
        {"address": "bad", "error": "not an address: 'bad'"}
    ]
    assert add(store, {"address": "c@x.test", "scope": "bad..scope"})[0] == 400
    status, body = suppressions.list_entries(store, {"scope": "", "limit": 1, "after": ""})
    assert (status, body["count"], body["total"]) == (200, 1, 2)
    assert suppressions.list_entries(store, {"scope": "", "limit": 0, "after": "a"})[0] == 400
    assert suppressions.get_entries(store, {"address": "a@X.test"})[0] == 200
    assert suppressions.get_entries(store, {"address": "zz@x.test"})[0] == 404
    assert suppressions.get_entries(store, {"address": "zz"})[0] == 400
    assert suppressions.delete_entry(store, {"address": "a@x.test", "scope": "s.test"})[0] == 404
    assert suppressions.delete_entry(store, {"address": "a@x.test", "scope": ""}) == (
        200,
        {"removed": 1},
    )
    store.close()


def test_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "outrider.toml"
    config.write_text(
        '[server]\nhostname = "mta.test"\n[[listener]]\naddress = "127.0.0.1:2525"\n'
        '[suppression]\nfile = "lists/s.db"\n'
    )
    c = ["-c", str(config)]
    assert main(["suppression", "add", "Ann@X.test", "--scope", "News.test", *c]) == 0
    assert main(["suppression", "add", "bob@x.test", "--reason", "complaint", *c]) == 0
    assert main(["suppression", "add", "bad", *c]) == 1
    assert "not an address: 'bad'" in capsys.readouterr().err
    assert (tmp_path / "lists/s.db").exists()
    assert main(["suppression", "list", "--scope", "news.test", *c]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ann@x.test\tnews.test\tmanual\t") and out.count("\n") == 1
    csv_file = tmp_path / "in.csv"
    csv_file.write_text("address,scope,reason\nc@x.test,news.test,unsubscribe\n,,\nx y@z\n")
    assert main(["suppression", "import", str(csv_file), *c]) == 1
    captured = capsys.readouterr()
    assert f"{csv_file}: line 4: not an address: 'x y@z'" in captured.err
    assert "imported 1 address(es), 1 bad line(s)" in captured.out
    assert main(["suppression", "export", *c]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0] == "address,scope,reason,added,source"
    assert main(["suppression", "remove", "ann@x.test", "--global", *c]) == 1
    assert main(["suppression", "remove", "ann@x.test", "--scope", "news.test", *c]) == 0
    assert "ann@x.test is not on the global list" in capsys.readouterr().err
    assert main(["suppression", "list", "--limit", "1", *c]) == 0
    assert capsys.readouterr().out.count("\n") == 1
    assert main(["suppression", "import", str(tmp_path / "missing.csv"), *c]) == 1
