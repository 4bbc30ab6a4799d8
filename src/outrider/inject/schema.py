"""The injection request and reply as OpenAPI 3 schemas (for ``/api/v1/openapi.json``).

Kept beside :mod:`outrider.inject.request`, which is what actually validates; a test
checks that the field names agree.
"""

from __future__ import annotations

from typing import Any

from outrider.inject.request import MAX_RECIPIENTS

_STRING: dict[str, Any] = {"type": "string"}
_SUBSTITUTIONS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": True,
    "description": "template variables (any JSON values)",
}
_MAILBOX: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "description": "an address"},
        {
            "type": "object",
            "properties": {"email": _STRING, "name": _STRING},
            "required": ["email"],
            "additionalProperties": False,
        },
    ]
}

INJECT_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["envelope_sender", "recipients", "content"],
    "additionalProperties": False,
    "properties": {
        "envelope_sender": {"type": "string", "description": "the reverse-path; '' for <>"},
        "recipients": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_RECIPIENTS,
            "items": {
                "type": "object",
                "required": ["email"],
                "additionalProperties": False,
                "properties": {
                    "email": _STRING,
                    "name": _STRING,
                    "substitutions": _SUBSTITUTIONS,
                },
            },
        },
        "substitutions": _SUBSTITUTIONS,
        "content": {
            "oneOf": [
                {"type": "string", "description": "raw RFC 5322 message text"},
                {
                    "type": "object",
                    "required": ["from"],
                    "additionalProperties": False,
                    "properties": {
                        "from": _MAILBOX,
                        "reply_to": _MAILBOX,
                        "subject": _STRING,
                        "text_body": _STRING,
                        "html_body": _STRING,
                        "headers": {"type": "object", "additionalProperties": _STRING},
                        "attachments": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["content_type", "data"],
                                "additionalProperties": False,
                                "properties": {
                                    "file_name": _STRING,
                                    "content_type": _STRING,
                                    "data": {
                                        "type": "string",
                                        "description": "base64, or text when base64 is false",
                                    },
                                    "base64": {"type": "boolean", "default": True},
                                    "content_id": _STRING,
                                },
                            },
                        },
                    },
                },
            ]
        },
        "job_id": _STRING,
        "virtual_mta": _STRING,
        "envid": _STRING,
        "template_engine": {"type": "string", "enum": ["jinja"]},
        "unsubscribe": {
            "type": "boolean",
            "description": "add List-Unsubscribe (one-click) to these messages, or never; "
            "default: [unsubscribe] sender-domains",
        },
    },
}

INJECT_REPLY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "success_count": {"type": "integer"},
        "failure_count": {"type": "integer"},
        "failed_recipients": {"type": "array", "items": _STRING},
        "errors": {"type": "array", "items": _STRING},
        "queue_ids": {"type": "object", "additionalProperties": _STRING},
    },
}

INJECT_ERRORS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": _STRING, "error": _STRING},
            },
        }
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "InjectRequest": INJECT_REQUEST,
    "InjectReply": INJECT_REPLY,
    "InjectErrors": INJECT_ERRORS,
}
