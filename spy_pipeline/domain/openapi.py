"""Baselines from Polygon's published OpenAPI spec: the fields of an answer's result items, with their types.

The spec (rest.json, websocket.json as the official client ships them) is OpenAPI 3.0: `$ref`s into
`components`, `allOf` for shared envelopes, `nullable: true` for a value that may be null. A REST answer's
items are its `results` array's items; a WebSocket event is the item itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spy_pipeline.domain.source_schema import JSON_TYPES, Baseline, BaselineField

Spec = Mapping[str, Any]


def response_schema(spec: Spec, path: str) -> dict[str, Any]:
    """The 200 answer's JSON schema of GET `path` (a path of the spec, e.g. /v3/reference/splits)."""
    try:
        return spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    except KeyError:
        raise KeyError(f"the spec documents no JSON answer for GET {path}") from None


def resolve(spec: Spec, schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` with `$ref`s followed and `allOf` parts merged (properties and required lists united)."""
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = spec["components"]["schemas"][name]
    if "allOf" not in schema:
        return dict(schema)
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    properties: dict[str, Any] = dict(merged.get("properties", {}))
    required: list[str] = list(merged.get("required", []))
    for part in schema["allOf"]:
        part = resolve(spec, part)
        properties.update(part.get("properties", {}))
        required += part.get("required", [])
        for key in ("type", "nullable"):
            if key in part:
                merged.setdefault(key, part[key])
    return {**merged, "properties": properties, "required": required}


def _types(schema: Mapping[str, Any]) -> tuple[str, ...]:
    kind = schema.get("type")
    if kind is None and schema.get("enum") and all(isinstance(v, str) for v in schema["enum"]):
        kind = "string"
    if kind is None:
        return JSON_TYPES  # undocumented type: anything goes
    kinds = {"integer": "number"}.get(kind, kind)
    return (kinds, "null") if schema.get("nullable") else (kinds,)


def item_fields(spec: Spec, schema: Mapping[str, Any], prefix: str = "") -> dict[str, BaselineField]:
    """Every field path of an object schema, recursing into objects and arrays of objects."""
    schema = resolve(spec, schema)
    required = set(schema.get("required", []))
    fields: dict[str, BaselineField] = {}
    for name, sub in schema.get("properties", {}).items():
        sub = resolve(spec, sub)
        path = prefix + name
        fields[path] = BaselineField(_types(sub), name in required)
        if sub.get("type") == "object" and sub.get("properties"):
            fields.update(item_fields(spec, sub, f"{path}."))
        elif sub.get("type") == "array":
            items = resolve(spec, sub.get("items", {}))
            if items.get("type") == "object" and items.get("properties"):
                fields.update(item_fields(spec, items, f"{path}[]."))
    return fields


def baseline_from_spec(spec: Spec, endpoint: str, path: str, spec_name: str, results_key: str | None = "results",
                       ) -> Baseline:
    """The baseline of `endpoint`: the fields of the items of GET `path`'s answer (of `results_key`, or the
    answer itself when None, as a WebSocket event)."""
    schema = resolve(spec, response_schema(spec, path))
    if results_key is not None:
        results = resolve(spec, schema["properties"][results_key])
        schema = results.get("items", {})
    where = f"{spec_name} GET {path}" + (f" {results_key}[]" if results_key else "")
    return Baseline(endpoint, where, item_fields(spec, schema))
