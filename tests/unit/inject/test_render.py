"""Templates: compiled once, rendered per recipient in the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from outrider.inject import render
from outrider.inject.build import raw_message
from outrider.inject.render import check_renders, compile_content
from outrider.inject.request import InjectError, parse_request


def request(content: Any, recipients: list[dict[str, Any]] | None = None, **extra: Any) -> Any:
    return parse_request(
        {
            "envelope_sender": "b@news.example.com",
            "recipients": recipients or [{"email": "ann@example.org", "name": "Ann"}],
            "content": content,
            **extra,
        }
    )


def builder(**fields: Any) -> dict[str, Any]:
    return {"from": "news@news.example.com", "text_body": "", **fields}


def test_recipient_substitutions_win_over_global_ones() -> None:
    req = request(
        builder(subject="{{ greeting }} {{ first }}, {{ offer }} for {{ email }}"),
        [
            {"email": "ann@example.org", "substitutions": {"first": "Ann", "offer": "mine"}},
            {"email": "bob@example.org", "substitutions": {"first": "Bob"}},
        ],
        substitutions={"greeting": "Hello", "offer": "two for one"},
    )
    compiled = compile_content(req)
    subjects = [compiled.render(r, i).subject for i, r in enumerate(req.recipients)]
    assert subjects == [
        "Hello Ann, mine for ann@example.org",
        "Hello Bob, two for one for bob@example.org",
    ]


def test_html_is_autoescaped_text_is_not() -> None:
    req = request(
        builder(text_body="{{ x }}", html_body="<p>{{ x }}</p>"),
        [{"email": "a@example.org", "substitutions": {"x": "<b>&</b>"}}],
    )
    out = compile_content(req).render(req.recipients[0], 0)
    assert out.text_body == "<b>&</b>"
    assert out.html_body == "<p>&lt;b&gt;&amp;&lt;/b&gt;</p>"


def test_each_template_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = render._PLAIN.from_string

    def counting(source: str) -> Any:
        calls.append(source)
        return original(source)

    monkeypatch.setattr(render._PLAIN, "from_string", counting)
    req = request(
        builder(subject="Hi {{ name }}", text_body="plain, no template"),
        [{"email": f"u{i}@example.org", "name": f"U{i}"} for i in range(50)],
    )
    compiled = compile_content(req)
    outs = [compiled.render(r, i) for i, r in enumerate(req.recipients)]
    assert calls == ["Hi {{ name }}"]
    assert outs[7].subject == "Hi U7" and outs[7].text_body == "plain, no template"


def test_syntax_errors_name_the_field() -> None:
    req = request(builder(subject="{{ oops", headers={"X-A": "{% if %}"}))
    with pytest.raises(InjectError) as caught:
        compile_content(req)
    fields = {p.field for p in caught.value.problems}
    assert fields == {"content.subject", "content.headers.X-A"}


def test_render_errors_name_the_recipient() -> None:
    req = request(
        builder(subject="{{ 10 // n }}"),
        [{"email": f"u{i}@example.org", "substitutions": {"n": i - 2}} for i in range(4)],
    )
    with pytest.raises(InjectError) as caught:
        check_renders(compile_content(req), req.recipients)
    [problem] = caught.value.problems
    assert problem.field == "content.subject"
    assert problem.error.startswith("recipients[2]:") and "ZeroDivisionError" in problem.error


def test_a_header_that_renders_to_two_lines_is_refused() -> None:
    req = request(
        builder(headers={"X-Tag": "{{ tag }}"}),
        [{"email": "a@example.org", "substitutions": {"tag": "x\r\nBcc: victim@example.org"}}],
    )
    with pytest.raises(InjectError) as caught:
        check_renders(compile_content(req), req.recipients)
    assert "more than one line" in caught.value.problems[0].error


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ email.__class__.__base__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ email.format.__self__.__class__ }}",
    ],
)
def test_the_sandbox_refuses_unsafe_attribute_access(source: str) -> None:
    req = request(builder(subject=source))
    compiled = compile_content(req)
    try:
        out = compiled.render(req.recipients[0], 0).subject
    except render.RenderError as exc:
        assert "template error" in exc.problem.error
    else:
        assert "class" not in out and "module" not in out and "function" not in out


def test_raw_content_is_a_template_only_with_substitutions() -> None:
    raw = "Subject: {{ first }}\r\n\r\nHi {{ first }}\r\n"
    plain = request(raw)
    assert compile_content(plain).render(plain.recipients[0], 0).raw == raw
    merged = request(raw, [{"email": "a@example.org", "substitutions": {"first": "Ann"}}])
    out = compile_content(merged).render(merged.recipients[0], 0).raw
    assert out is not None
    assert raw_message(out) == b"Subject: Ann\r\n\r\nHi Ann\r\n"  # CRLF once built


def test_output_size_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "MAX_RENDERED", 1000)
    req = request(builder(text_body="{% for i in range(500) %}{{ email }}{% endfor %}"))
    with pytest.raises(InjectError) as caught:
        check_renders(compile_content(req), req.recipients)
    assert "more than 1000" in caught.value.problems[0].error
