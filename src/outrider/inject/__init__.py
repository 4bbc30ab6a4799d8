"""HTTP injection (``POST /api/v1/messages``): KumoMTA-style JSON in, one message per
recipient out through the intake.

The steps have one module each, so the whole request can be checked before anything
is queued: :mod:`.request` parses and validates the JSON into dataclasses with
field-level errors, :mod:`.render` compiles the templates once and renders them per
recipient in Jinja2's sandbox, :mod:`.build` assembles each message with Python's
``email`` package, and :mod:`.submit` hands them to the intake in concurrent chunks so
the spool's group commit batches the fsyncs.
"""

from __future__ import annotations

from outrider.inject.request import FieldProblem, InjectError, InjectRequest, parse_request

__all__ = ["FieldProblem", "InjectError", "InjectRequest", "parse_request"]
