"""The monitor's files: only files under static/, no dot files, known content types."""

from __future__ import annotations

from pathlib import Path

from outrider.http.static_files import content_type, resolve


def test_resolve_stays_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "static"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<p>hi</p>")
    (root / "js" / "app.js").write_text("1")
    (root / ".secret.js").write_text("x")
    (root / "notes.exe").write_text("x")
    (tmp_path / "outside.html").write_text("x")
    assert resolve("index.html", root) == (root / "index.html").resolve()
    found = resolve("js/app.js", root)
    assert found is not None and content_type(found).startswith("text/javascript")
    for bad in ("../outside.html", "js/../../outside.html", ".secret.js", "notes.exe", "", "a\\b",
                "js//app.js", "missing.css"):  # fmt: skip
        assert resolve(bad, root) is None, bad
