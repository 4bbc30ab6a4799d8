"""The OpenAPI document is generated from the operation table and is structurally valid."""

from __future__ import annotations

import json
import re

from outrider.http.api import OPERATIONS
from outrider.http.openapi import document

METHODS = {"get", "post", "delete", "put", "patch", "head", "options"}
LOCATIONS = {"path", "query", "header", "cookie"}
TYPES = {"string", "integer", "boolean", "number", "object", "array"}


def check_schema(schema: dict[str, object], where: str) -> None:
    if "$ref" in schema:
        assert str(schema["$ref"]).startswith("#/components/schemas/"), where
        return
    if "oneOf" in schema:  # e.g. injection content: raw text or a builder object
        alternatives = schema["oneOf"]
        assert isinstance(alternatives, list) and alternatives, where
        for i, sub in enumerate(alternatives):
            check_schema(sub, f"{where}|{i}")
        return
    assert schema.get("type") in TYPES, where
    if "enum" in schema:
        assert isinstance(schema["enum"], list) and schema["enum"], where
    props = schema.get("properties", {})
    assert isinstance(props, dict)
    for name, sub in props.items():
        check_schema(sub, f"{where}.{name}")
    items = schema.get("items")
    if isinstance(items, dict):
        check_schema(items, f"{where}[]")


def test_document_is_a_valid_openapi_3_structure() -> None:
    doc = json.loads(json.dumps(document("1.2.3")))  # JSON-serialisable
    assert doc["openapi"].startswith("3.") and doc["info"]["version"] == "1.2.3"
    ids: set[str] = set()
    for path, item in doc["paths"].items():
        assert path.startswith("/")
        templated = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            assert method in METHODS
            assert op["operationId"] not in ids
            ids.add(op["operationId"])
            assert op["responses"]["200"]["description"]
            for code, response in op["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", code) and response["description"]
            declared = set()
            for param in op["parameters"]:
                assert param["in"] in LOCATIONS and param["name"] and param["description"]
                check_schema(param["schema"], f"{path} {param['name']}")
                if param["in"] == "path":
                    assert param["required"] is True
                    declared.add(param["name"])
            assert declared == templated, path
            if "requestBody" in op:
                for content in op["requestBody"]["content"].values():  # JSON, or a form
                    check_schema(content["schema"], path)
    for name, schema in doc["components"]["schemas"].items():
        check_schema(schema, name)


def test_every_operation_and_parameter_is_documented() -> None:
    doc = document("x")
    for op in OPERATIONS:
        entry = doc["paths"][op.openapi_path][op.method.lower()]
        if op.role == "public":
            assert entry["security"] == [] and "401" not in entry["responses"]
        else:
            assert f"Role needed: {op.role}" in entry["description"]
        names = {p["name"] for p in entry["parameters"]}
        body = entry.get("requestBody", {}).get("content", {}).get("application/json", {})
        names |= set(body.get("schema", {}).get("properties", {}))
        assert names == {p.name for p in op.params}, op.path
    mode = doc["paths"]["/api/v1/queues/{queue}/mode"]["post"]
    schema = mode["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["mode"]["enum"] == ["backoff", "normal"]
    assert schema["required"] == ["mode"]
