"""Singer catalogs: which streams and properties a sync reads.

Selection rules are Meltano's: `stream.property` globs, `!` to exclude; no rules selects everything.
`metadata` overrides (e.g. replication-method, replication-key) and `schema` overrides are applied to
matching streams. Key properties and replication keys stay selected whatever the rules say.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any


@dataclass(frozen=True)
class SelectRule:
    exclude: bool
    stream: str
    prop: str

    @classmethod
    def parse(cls, rule: str) -> SelectRule:
        exclude = rule.startswith("!")
        body = rule[1:] if exclude else rule
        stream, _, prop = body.partition(".")
        return cls(exclude, stream, prop or "*")


def stream_names(catalog: dict[str, Any]) -> list[str]:
    return [entry.get("tap_stream_id") or entry["stream"] for entry in catalog.get("streams", [])]


def select_catalog(
    catalog: dict[str, Any],
    rules: list[str] | tuple[str, ...] = (),
    only_streams: set[str] | None = None,
    metadata: dict[str, Any] | None = None,
    schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A copy of `catalog` with `selected` metadata set from `rules`, restricted to `only_streams`."""
    parsed = [SelectRule.parse(r) for r in (rules or ["*.*"])]
    result = copy.deepcopy(catalog)
    for entry in result.get("streams", []):
        name = entry.get("tap_stream_id") or entry["stream"]
        selected = _stream_selected(name, parsed)
        if only_streams is not None and name not in only_streams:
            selected = False
        for pattern, override in (schema or {}).items():
            if fnmatchcase(name, pattern) and isinstance(override, dict):
                properties = entry.setdefault("schema", {}).setdefault("properties", {})
                for prop, prop_schema in override.items():
                    properties[prop] = {**properties.get(prop, {}), **prop_schema}
        md = _metadata_by_breadcrumb(entry)
        root = md.setdefault((), {"breadcrumb": [], "metadata": {}})["metadata"]
        for pattern, override in (metadata or {}).items():
            if fnmatchcase(name, pattern) and isinstance(override, dict):
                root.update(override)
                # Taps read the method and key from the entry's own fields as often as from metadata.
                if "replication-method" in override:
                    entry["replication_method"] = override["replication-method"]
                    root["forced-replication-method"] = override["replication-method"]
                if "replication-key" in override:
                    entry["replication_key"] = override["replication-key"]
        root["selected"] = selected
        automatic = set(root.get("table-key-properties") or entry.get("key_properties") or [])
        if root.get("replication-key"):
            automatic.add(root["replication-key"])
        for prop in (entry.get("schema") or {}).get("properties", {}):
            crumb = ("properties", prop)
            prop_md = md.setdefault(crumb, {"breadcrumb": list(crumb), "metadata": {}})["metadata"]
            if prop in automatic:
                prop_md["inclusion"] = "automatic"
            prop_md["selected"] = selected and (
                prop in automatic
                or prop_md.get("inclusion") == "automatic"
                or _property_selected(name, prop, parsed)
            )
        entry["metadata"] = list(md.values())
    return result


def _metadata_by_breadcrumb(entry: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    for item in entry.get("metadata") or []:
        found[tuple(item.get("breadcrumb") or ())] = item
    return found


def _stream_selected(stream: str, rules: list[SelectRule]) -> bool:
    included = any(not r.exclude and fnmatchcase(stream, r.stream) for r in rules)
    excluded = any(r.exclude and r.prop == "*" and fnmatchcase(stream, r.stream) for r in rules)
    return included and not excluded


def _property_selected(stream: str, prop: str, rules: list[SelectRule]) -> bool:
    def matches(r: SelectRule) -> bool:
        return fnmatchcase(stream, r.stream) and fnmatchcase(prop, r.prop)

    return any(not r.exclude and matches(r) for r in rules) and not any(
        r.exclude and matches(r) for r in rules
    )


@dataclass(frozen=True)
class PropertySelection:
    name: str
    status: str  # automatic | selected | excluded


@dataclass(frozen=True)
class StreamSelection:
    stream: str
    selected: bool
    properties: tuple[PropertySelection, ...]


def selection_report(catalog: dict[str, Any]) -> list[StreamSelection]:
    """What a selected catalog (from `select_catalog`) reads: each stream and property with its status."""
    report = []
    for entry in catalog.get("streams", []):
        md = _metadata_by_breadcrumb(entry)
        root = md.get((), {}).get("metadata", {})
        props = []
        for prop in (entry.get("schema") or {}).get("properties", {}):
            meta = md.get(("properties", prop), {}).get("metadata", {})
            if meta.get("inclusion") == "automatic":
                status = "automatic"
            else:
                status = "selected" if meta.get("selected") else "excluded"
            props.append(PropertySelection(prop, status))
        name = entry.get("tap_stream_id") or entry["stream"]
        report.append(StreamSelection(name, bool(root.get("selected")), tuple(props)))
    return report
