"""State store semantics and catalog selection rules."""

from __future__ import annotations

from pathlib import Path

from elt.singer import select_catalog
from elt.state import StateStore, without_streams

CATALOG = {
    "streams": [
        {
            "tap_stream_id": name,
            "stream": name,
            "key_properties": ["id"],
            "schema": {"properties": {"id": {}, "email": {}, "name": {}, "updated_at": {}}},
            "metadata": [
                {"breadcrumb": [], "metadata": {"table-key-properties": ["id"]}},
            ],
        }
        for name in ("customers", "orders", "payments")
    ]
}


def selected(catalog: dict) -> dict[str, list[str]]:
    result = {}
    for entry in catalog["streams"]:
        md = {tuple(m["breadcrumb"]): m["metadata"] for m in entry["metadata"]}
        if md[()]["selected"]:
            result[entry["stream"]] = sorted(
                crumb[1] for crumb, m in md.items() if crumb and m.get("selected")
            )
    return result


def test_no_rules_select_everything() -> None:
    assert set(selected(select_catalog(CATALOG))) == {"customers", "orders", "payments"}


def test_rules_with_globs_and_exclusions() -> None:
    catalog = select_catalog(CATALOG, ["customers.*", "!customers.email", "orders.updated_at"])
    assert selected(catalog) == {
        "customers": ["id", "name", "updated_at"],
        "orders": ["id", "updated_at"],  # the key stays selected
    }


def test_excluding_a_whole_stream() -> None:
    assert set(selected(select_catalog(CATALOG, ["*.*", "!payments.*"]))) == {"customers", "orders"}


def test_only_streams_and_metadata_override() -> None:
    catalog = select_catalog(CATALOG, [], {"orders"}, metadata={"ord*": {"replication-key": "updated_at"}})
    assert selected(catalog) == {"orders": ["email", "id", "name", "updated_at"]}
    orders = catalog["streams"][1]
    root = next(m["metadata"] for m in orders["metadata"] if m["breadcrumb"] == [])
    assert root["replication-key"] == "updated_at"


def test_partial_state_wins_until_the_run_completes(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "elt.db")
    store.complete("dev:a-to-b", {"bookmarks": {"orders": {"replication_key_value": 1}}})
    store.save_partial("dev:a-to-b", {"bookmarks": {"orders": {"replication_key_value": 5}}})
    record = store.require("dev:a-to-b")
    assert record.effective == {"bookmarks": {"orders": {"replication_key_value": 5}}}
    store.complete("dev:a-to-b", {"bookmarks": {"customers": {"replication_key_value": 2}}})
    record = store.require("dev:a-to-b")
    assert record.partial is None
    assert record.completed == {
        "bookmarks": {
            "orders": {"replication_key_value": 1},
            "customers": {"replication_key_value": 2},
        }
    }


def test_clear_one_stream_and_full_state(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "elt.db")
    state = {"bookmarks": {"orders": {"v": 1}, "customers": {"v": 2}}}
    store.set("dev:a-to-b", state)
    assert without_streams(state, {"orders"}) == {"bookmarks": {"customers": {"v": 2}}}
    assert store.clear("dev:a-to-b", "orders")
    assert store.require("dev:a-to-b").effective == {"bookmarks": {"customers": {"v": 2}}}
    assert store.clear("dev:a-to-b")
    assert store.get("dev:a-to-b") is None
    assert not store.clear("dev:a-to-b")


def test_schema_override_changes_a_property_type() -> None:
    catalog = select_catalog(CATALOG, [], None, schema={"orders": {"updated_at": {"format": "date-time"}}})
    orders = catalog["streams"][1]
    assert orders["schema"]["properties"]["updated_at"] == {"format": "date-time"}
    assert catalog["streams"][0]["schema"]["properties"]["updated_at"] == {}
