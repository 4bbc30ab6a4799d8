"""Per-recipient templates: Jinja2 in its sandbox, compiled once per request.

The subject, the bodies and the header values of built content (and raw content when
the request gives substitutions) are templates. Each is compiled once
(:class:`CompiledContent`) and rendered per recipient with the context
``{"email", "name"} | global substitutions | the recipient's substitutions`` (the
recipient's win). Rendering uses :class:`jinja2.sandbox.SandboxedEnvironment`, so a
template cannot reach Python internals (``''.__class__`` and the like are refused);
``html_body`` is autoescaped, the rest are not (they are not HTML). A string with no
Jinja syntax is used as it is, without a template.

Rendering is done twice per message, on purpose: once for every recipient while the
request is validated (so a template that fails for recipient 9,000 refuses the whole
request before anything is queued), and again chunk by chunk while the messages are
built, so a 10,000-recipient campaign with a large HTML body never holds all its
rendered bodies in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from outrider.inject.request import Builder, FieldProblem, InjectError, InjectRequest, Recipient

MAX_RENDERED = 10 * 1024 * 1024  # characters per rendered template
MAX_PROBLEMS = 100  # render errors reported per request (the rest are alike)
_SYNTAX = ("{{", "{%", "{#")


class RenderError(Exception):
    def __init__(self, problem: FieldProblem) -> None:
        super().__init__(f"{problem.field}: {problem.error}")
        self.problem = problem


def _environment(autoescape: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(autoescape=autoescape, keep_trailing_newline=True)


_PLAIN = _environment(False)
_HTML = _environment(True)


@dataclass(frozen=True, slots=True)
class Rendered:
    """One recipient's parts: raw text, or the builder's rendered fields."""

    raw: str | None = None
    subject: str = ""
    text_body: str | None = None
    html_body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


class _Piece:
    """One template, or a literal string when it has no Jinja syntax."""

    __slots__ = ("field", "literal", "one_line", "template")

    def __init__(self, field: str, source: str, *, html: bool = False, one_line: bool = False):
        self.field = field
        self.one_line = one_line
        self.literal: str | None = None
        self.template: jinja2.Template | None = None
        if any(mark in source for mark in _SYNTAX):
            env = _HTML if html else _PLAIN
            try:
                self.template = env.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise RenderError(FieldProblem(field, f"template error: {exc}")) from None
        else:
            self.literal = source

    def render(self, context: Mapping[str, Any], where: str) -> str:
        if self.template is None:
            assert self.literal is not None
            return self.literal
        try:
            text = self.template.render(context)
        except jinja2.TemplateError as exc:
            raise RenderError(FieldProblem(self.field, f"{where}: template error: {exc}")) from None
        except Exception as exc:  # a template is user code: any error refuses, never crashes
            raise RenderError(
                FieldProblem(self.field, f"{where}: template error: {type(exc).__name__}: {exc}")
            ) from None
        if len(text) > MAX_RENDERED:
            raise RenderError(
                FieldProblem(self.field, f"{where}: renders to more than {MAX_RENDERED} characters")
            )
        if self.one_line and ("\r" in text or "\n" in text):
            raise RenderError(FieldProblem(self.field, f"{where}: renders to more than one line"))
        return text


class CompiledContent:
    """A request's templates, compiled once; :meth:`render` per recipient."""

    def __init__(self, request: InjectRequest) -> None:
        self.request = request
        self.problems: list[FieldProblem] = []
        content = request.content
        self.raw: _Piece | None = None
        self.subject: _Piece | None = None
        self.text: _Piece | None = None
        self.html: _Piece | None = None
        self.headers: list[tuple[str, _Piece]] = []
        if isinstance(content, str):
            self.raw = self._piece("content", content) if request.templated else None
            return
        self._compile_builder(content)

    def _compile_builder(self, content: Builder) -> None:
        self.subject = self._piece("content.subject", content.subject, one_line=True)
        if content.text_body is not None:
            self.text = self._piece("content.text_body", content.text_body)
        if content.html_body is not None:
            self.html = self._piece("content.html_body", content.html_body, html=True)
        for name, value in content.headers:
            piece = self._piece(f"content.headers.{name}", value, one_line=True)
            if piece is not None:
                self.headers.append((name, piece))

    def _piece(
        self, field: str, source: str, *, html: bool = False, one_line: bool = False
    ) -> _Piece | None:
        try:
            return _Piece(field, source, html=html, one_line=one_line)
        except RenderError as exc:
            self.problems.append(exc.problem)
            return None

    def context(self, recipient: Recipient) -> dict[str, Any]:
        return {
            "email": recipient.email,
            "name": recipient.name,
            **self.request.substitutions,
            **recipient.substitutions,
        }

    def render(self, recipient: Recipient, index: int) -> Rendered:
        """The recipient's parts; :class:`RenderError` naming the field and recipient."""
        content = self.request.content
        where = f"recipients[{index}]"
        ctx = self.context(recipient)
        if isinstance(content, str):
            return Rendered(raw=self.raw.render(ctx, where) if self.raw is not None else content)
        return Rendered(
            subject=self.subject.render(ctx, where) if self.subject is not None else "",
            text_body=self.text.render(ctx, where) if self.text is not None else None,
            html_body=self.html.render(ctx, where) if self.html is not None else None,
            headers=tuple((name, piece.render(ctx, where)) for name, piece in self.headers),
        )


def compile_content(request: InjectRequest) -> CompiledContent:
    """Compile every template of the request; :class:`InjectError` on syntax errors."""
    compiled = CompiledContent(request)
    if compiled.problems:
        raise InjectError(compiled.problems)
    return compiled


def check_renders(compiled: CompiledContent, recipients: Iterable[Recipient]) -> None:
    """Render for every recipient, keeping nothing; :class:`InjectError` listing the
    failures (up to :data:`MAX_PROBLEMS`)."""
    problems: list[FieldProblem] = []
    for index, recipient in enumerate(recipients):
        try:
            compiled.render(recipient, index)
        except RenderError as exc:
            problems.append(exc.problem)
            if len(problems) >= MAX_PROBLEMS:
                break
    if problems:
        raise InjectError(problems)
