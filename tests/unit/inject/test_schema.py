"""The OpenAPI schema of the injection request agrees with what the parser accepts."""

from __future__ import annotations

from outrider.http.openapi import document
from outrider.inject import request
from outrider.inject.schema import INJECT_REQUEST


def test_schema_fields_are_the_parsers() -> None:
    props = INJECT_REQUEST["properties"]
    assert set(props) == request.TOP_FIELDS
    assert set(props["recipients"]["items"]["properties"]) == request.RECIPIENT_FIELDS
    builder = props["content"]["oneOf"][1]
    assert set(builder["properties"]) == request.BUILDER_FIELDS
    attachment = builder["properties"]["attachments"]["items"]
    assert set(attachment["properties"]) == request.ATTACHMENT_FIELDS


def test_the_operation_is_documented_with_its_body() -> None:
    doc = document("x")
    op = doc["paths"]["/api/v1/messages"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/InjectRequest"}
    assert "InjectRequest" in doc["components"]["schemas"]
    assert {"200", "400", "401", "403", "413"} <= set(op["responses"])
    assert "get" in doc["paths"]["/api/v1/messages"]  # the listing is still there
