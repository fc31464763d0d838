"""What Polygon sent, compared with what it is documented to send (pure: no Dagster, no client).

An *observed schema* is the set of JSON field paths seen in the result items of one endpoint's answers, each
with the JSON types it carried and how many items had it. Paths are dotted: `vw`, `publisher.name`,
`insights[].sentiment` (a field of the objects in the `insights` array). A *baseline* is the same for what
Polygon documents (written from its OpenAPI spec, or re-captured from a live run). `compare` names the drift:

- blocking: a field the pipeline reads that is missing (from any item that should have it), or that carries
  a JSON type the baseline does not allow. A missing field beside a new one is reported as a likely rename.
- warning: a field the baseline does not know (listed), or a type change of a field the pipeline ignores.

JSON has one number type: integers and floats are both "number" (Polygon sends `v: 1200` and `v: 1200.5`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

JSON_TYPES = ("string", "number", "boolean", "object", "array", "null")
NEEDED, OPTIONAL = "needed", "optional"  # how the pipeline reads a field: must always be there, or may be absent


def parent_of(path: str) -> str:
    """The container of a field path: '' for a result item's own fields, 'insights[].' for `insights[].ticker`."""
    cut = path.rfind(".")
    return path[: cut + 1] if cut >= 0 else ""


@dataclass
class ObservedSchema:
    """Field paths seen in one endpoint's result items: their JSON types and how many containers had them."""

    endpoint: str
    types: dict[str, set[str]] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)
    containers: dict[str, int] = field(default_factory=dict)  # '' -> result items, 'publisher.' -> publishers...

    @property
    def items(self) -> int:
        return self.containers.get("", 0)

    def observe(self, items: Iterable[object], prefix: str = "") -> None:
        """Add result items (dicts; anything else counts as an item without fields)."""
        counts: dict[tuple[str, type], int] = {}
        nested: dict[str, list[dict]] = {}
        total = 0
        for item in items:
            total += 1
            if not isinstance(item, dict):
                continue
            for key, value in item.items():
                pair = (key, value.__class__)
                counts[pair] = counts.get(pair, 0) + 1
                if isinstance(value, dict):
                    nested.setdefault(f"{prefix}{key}.", []).append(value)
                elif isinstance(value, list) and value and isinstance(value[0], dict):
                    nested.setdefault(f"{prefix}{key}[].", []).extend(value)
        self.containers[prefix] = self.containers.get(prefix, 0) + total
        for (key, cls), count in counts.items():
            path = prefix + key
            self.types.setdefault(path, set()).add(_json_type_of_class(cls))
            self.present[path] = self.present.get(path, 0) + count
        for child, values in nested.items():
            self.observe(values, child)

    def merge(self, other: ObservedSchema) -> None:
        for path, kinds in other.types.items():
            self.types.setdefault(path, set()).update(kinds)
        for path, count in other.present.items():
            self.present[path] = self.present.get(path, 0) + count
        for prefix, count in other.containers.items():
            self.containers[prefix] = self.containers.get(prefix, 0) + count

    def missing(self, path: str) -> int:
        """Containers of `path` (items, or objects of its parent) that lacked it."""
        return self.containers.get(parent_of(path), 0) - self.present.get(path, 0)

    def to_json(self) -> dict[str, object]:
        """For materialization metadata: `{"items": n, "fields": {path: {"types": [...], "present": k}}}`."""
        return {
            "items": self.items,
            "fields": {
                path: {"types": sorted(self.types[path]), "present": self.present.get(path, 0),
                       "of": self.containers.get(parent_of(path), 0)}
                for path in sorted(self.types)
            },
        }


# bool before int: a JSON true is a Python bool, which is also an int
_CLASS_TYPES = ((type(None), "null"), (bool, "boolean"), (int, "number"), (float, "number"), (str, "string"),
                (list, "array"), (dict, "object"))


def _json_type_of_class(cls: type) -> str:
    return next(name for base, name in _CLASS_TYPES if issubclass(cls, base))


@dataclass(frozen=True)
class BaselineField:
    types: tuple[str, ...]  # JSON types Polygon documents for it ("null" when nullable)
    required: bool  # documented as always present


@dataclass(frozen=True)
class Baseline:
    endpoint: str
    source: str  # where it was written from: the spec's path, or a live capture
    fields: Mapping[str, BaselineField]

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Baseline:
        fields = data["fields"]
        assert isinstance(fields, dict)
        return cls(
            endpoint=str(data["endpoint"]), source=str(data.get("source", "")),
            fields={path: BaselineField(tuple(spec["types"]), bool(spec.get("required", False)))
                    for path, spec in fields.items()},
        )

    def to_json(self) -> dict[str, object]:
        return {
            "endpoint": self.endpoint,
            "source": self.source,
            "fields": {
                path: {"types": list(f.types), "required": f.required} for path, f in sorted(self.fields.items())
            },
        }

    def dumps(self) -> str:
        """JSON with one line per field, so that a re-captured baseline's diff reads field by field."""
        data = self.to_json()
        fields = data["fields"]
        assert isinstance(fields, dict)
        body = ",\n".join(f"    {json.dumps(path)}: {json.dumps(spec)}" for path, spec in fields.items())
        return (f'{{\n  "endpoint": {json.dumps(self.endpoint)},\n  "source": {json.dumps(self.source)},\n'
                f'  "fields": {{\n{body}\n  }}\n}}\n')


@dataclass(frozen=True)
class Drift:
    endpoint: str
    blocking: tuple[str, ...] = ()  # one line each, naming the endpoint and the field
    warnings: tuple[str, ...] = ()
    new_fields: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.blocking and not self.warnings


def compare(observed: ObservedSchema, baseline: Baseline, reads: Mapping[str, str]) -> Drift:
    """Drift of `observed` from `baseline`; `reads` maps each field path the pipeline reads to NEEDED/OPTIONAL.

    An answer without result items shows nothing, so it never drifts. A field missing from containers that
    exist (items; the insights of articles that have insights) is blocking when the pipeline reads it and it is
    NEEDED or documented as required; a warning when the pipeline reads it as OPTIONAL (its column gets nulls)
    or ignores a field documented as required.
    """
    name = observed.endpoint
    if observed.items == 0:
        return Drift(name)
    new = tuple(sorted(path for path in observed.types if path not in baseline.fields))
    blocking, warnings = [], []
    for path in sorted(reads.keys() | {p for p, f in baseline.fields.items() if f.required}):
        lacking = observed.missing(path)
        containers = observed.containers.get(parent_of(path), 0)
        if lacking <= 0 or containers <= 0:
            continue
        likely = [p for p in new if parent_of(p) == parent_of(path)]
        hint = f" (renamed? new: {', '.join(likely)})" if likely else ""
        line = f"{name}: field {path} is missing from {lacking} of {containers} items{hint}"
        documented = baseline.fields.get(path)
        required = reads.get(path) == NEEDED or (documented is not None and documented.required)
        (blocking if path in reads and required else warnings).append(line)
    for path, kinds in sorted(observed.types.items()):
        documented = baseline.fields.get(path)
        if documented is None:
            continue
        unexpected = sorted(kinds - set(documented.types))
        if not unexpected:
            continue
        line = (f"{name}: field {path} is {'/'.join(unexpected)}, documented as {'/'.join(documented.types)}")
        (blocking if path in reads else warnings).append(line)
    if new:
        warnings.append(f"{name}: new field{'s' if len(new) > 1 else ''} {', '.join(new)}")
    return Drift(name, tuple(blocking), tuple(warnings), new)


def baseline_diff(old: Baseline | None, new: Baseline) -> list[str]:
    """What re-capturing a baseline would change, one line per field ('+ vwap: number', '- vw', '~ t: ...')."""
    before = dict(old.fields) if old else {}
    lines = []
    for path in sorted(before.keys() | new.fields.keys()):
        was, now = before.get(path), new.fields.get(path)
        if was == now:
            continue
        if was is None:
            lines.append(f"+ {path}: {'/'.join(now.types)}{' (required)' if now.required else ''}")
        elif now is None:
            lines.append(f"- {path}: {'/'.join(was.types)}")
        else:
            lines.append(f"~ {path}: {'/'.join(was.types)}{' (required)' if was.required else ''} -> "
                         f"{'/'.join(now.types)}{' (required)' if now.required else ''}")
    return lines


def recaptured(old: Baseline | None, observed: ObservedSchema, source: str) -> Baseline:
    """The baseline after a live capture: every field seen, with the types seen added to those documented.

    Documented fields not seen are kept (a capture of a few days need not meet every optional field); a new
    field is required when every container had it. Accepting a renamed field this way adds the new name but
    keeps the old one, so a pipeline still reading the old name stays blocked until its code changes.
    """
    fields = dict(old.fields) if old else {}
    for path, kinds in observed.types.items():
        known = fields.get(path)
        if known is None:
            fields[path] = BaselineField(tuple(sorted(kinds)), observed.missing(path) == 0)
        else:
            fields[path] = BaselineField(known.types + tuple(sorted(kinds - set(known.types))), known.required)
    return Baseline(observed.endpoint, source, fields)
