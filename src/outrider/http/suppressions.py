"""The suppression list over HTTP: what each ``/api/v1/suppressions`` operation answers.

Plain functions of the store and the parsed parameters returning (status, JSON body), so
they are tested without a listener; :mod:`outrider.http.server` only wires them in.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from outrider.http.replies import error_body
from outrider.suppression.store import (
    SuppressionError,
    SuppressionStore,
    normalize_address,
    normalize_scope,
)

Reply = tuple[int, dict[str, Any]]
MAX_ADD = 10_000  # addresses per POST; bigger lists go through `outrider suppression import`


def _guard(call: Any, *args: Any) -> Reply:
    try:
        result: Reply = call(*args)
        return result
    except SuppressionError as exc:
        return 400, error_body(str(exc))
    except sqlite3.Error as exc:
        return 503, error_body(f"suppression list unavailable: {exc}")


def list_entries(store: SuppressionStore, values: dict[str, Any]) -> Reply:
    def run() -> Reply:
        scope = values.get("scope") or None
        after = values.get("after") or ""
        if after and scope is None:
            return 400, error_body("'after' pages within one list: give 'scope' too", "after")
        limit = int(values.get("limit") or 0)
        entries = [e.as_json() for e in store.iter(scope, after=after, limit=limit)]
        return 200, {"count": len(entries), "total": store.count(scope), "entries": entries}

    return _guard(run)


def get_entries(store: SuppressionStore, values: dict[str, Any]) -> Reply:
    def run() -> Reply:
        entries = [e.as_json() for e in store.get(values["address"])]
        if not entries:
            return 404, error_body(f"{values['address']} is not suppressed", "address")
        return 200, {"address": entries[0]["address"], "entries": entries}

    return _guard(run)


def add_entries(store: SuppressionStore, values: dict[str, Any]) -> Reply:
    def run() -> Reply:
        addresses = list(values.get("addresses") or [])
        if values.get("address"):
            addresses.insert(0, values["address"])
        if not addresses:
            return 400, error_body("give 'address' or 'addresses'", "address")
        if len(addresses) > MAX_ADD:
            return 400, error_body(f"at most {MAX_ADD} addresses per request", "addresses")
        scope = normalize_scope(values.get("scope") or None)
        reason = values.get("reason") or "manual"
        errors: list[dict[str, str]] = []
        rows: list[tuple[str, str, str]] = []
        for address in addresses:
            try:
                rows.append((normalize_address(address), scope, reason))
            except SuppressionError as exc:
                errors.append({"address": address, "error": str(exc)})
        if errors:
            body = error_body(f"{len(errors)} bad address(es); nothing was added", "addresses")
            return 400, body | {"errors": errors}
        added = store.add_many(rows, source="api")
        return 200, {"added": added, "scope": scope, "reason": reason}

    return _guard(run)


def delete_entry(store: SuppressionStore, values: dict[str, Any]) -> Reply:
    def run() -> Reply:
        scope = values.get("scope") or None
        removed = store.remove(values["address"], scope)
        if not removed:
            return 404, error_body(f"{values['address']} is not suppressed", "address")
        return 200, {"removed": removed}

    return _guard(run)
