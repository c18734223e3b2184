"""Bad Singer input and misbehaving connectors: clear errors naming plugin, stream and line; state
never advances past data that was not loaded; nothing hangs."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import duckdb
import yaml

from tests.conftest import BIN, run_elt
from tests.singer_scripts import catalog, install_scripts, record, schema, state


def make_project(
    root: Path,
    tap: dict[str, Any],
    target: dict[str, Any] | None = None,
    mapper: dict[str, Any] | None = None,
) -> dict[str, str]:
    env = install_scripts(root / "bin")
    plugins: dict[str, Any] = {
        "extractors": [{"name": "tap-script", "config": {"catalog": catalog("things", "others"), **tap}}],
        "loaders": [
            {"name": "target-duckdb", "config": {"path": "w.duckdb", **(target or {})}},
            {"name": "target-script", "config": target or {}},
        ],
    }
    if mapper is not None:
        plugins["mappers"] = [{"name": "mapper-script", "config": mapper}]
    (root / "elt.yml").write_text(yaml.safe_dump({"version": 1, "plugins": plugins}))
    return env


def sync(root: Path, env: dict[str, str], *args: str, target: str = "target-duckdb", check: bool = False):
    return run_elt("sync", "tap-script", target, *args, cwd=root, env=env, check=check)


def loaded(root: Path, table: str = "things") -> list[tuple[Any, ...]]:
    with duckdb.connect(str(root / "w.duckdb"), read_only=True) as db:
        return db.execute(f"select id, name from tap_script.{table} order by id").fetchall()


def stored_state(root: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    return json.loads(run_elt("state", "list", "--format", "json", cwd=root, env=env).stdout)


def test_non_json_line_stops_the_sync_naming_plugin_and_line(tmp_path: Path) -> None:
    lines = [schema("things"), record("things", 1), state(things={"id": 1}), "Connecting to the API..."]
    env = make_project(tmp_path, {"lines": [*lines, record("things", 2)]})
    proc = sync(tmp_path, env)
    assert proc.returncode == 1
    assert "tap-script wrote a line that is not a Singer message (line 4): 'Connecting to the API...'" in (
        proc.stderr
    )
    # what came before the bad line is loaded, and the state says exactly that
    assert loaded(tmp_path) == [(1, "n1")]
    current = json.loads(
        run_elt("state", "get", "default:tap-script-to-target-duckdb", cwd=tmp_path, env=env).stdout
    )
    assert current == {"bookmarks": {"things": {"id": 1}}}


def test_record_before_schema_names_stream_and_line(tmp_path: Path) -> None:
    env = make_project(tmp_path, {"lines": [schema("things"), record("others", 1)]})
    proc = sync(tmp_path, env)
    assert proc.returncode == 1
    assert (
        "tap-script sent a RECORD for stream 'others' before its SCHEMA (line 2 of its output)" in proc.stderr
    )
    assert stored_state(tmp_path, env) == []


def test_record_failing_its_schema_fails_the_target_when_validation_is_on(tmp_path: Path) -> None:
    bad = {"type": "RECORD", "stream": "things", "record": {"id": "not a number", "name": "x"}}
    lines = [schema("things"), record("things", 1), bad, state(things={"id": 2})]
    env = make_project(tmp_path, {"lines": lines}, target={"validate_records": True})
    proc = sync(tmp_path, env)
    assert proc.returncode == 1
    assert "target-duckdb failed (exit 1)" in proc.stderr
    assert "stream 'things': record 2 of the stream does not match its schema" in proc.stderr
    assert stored_state(tmp_path, env) == []


def test_unknown_message_type_is_a_warning_and_ignored(tmp_path: Path) -> None:
    lines = [schema("things"), {"type": "HEARTBEAT"}, record("things", 1), state(things={"id": 1})]
    env = make_project(tmp_path, {"lines": lines})
    proc = sync(tmp_path, env, "--format", "json", check=True)
    assert "tap-script sent a message of unknown type 'HEARTBEAT' (line 2); ignored" in proc.stderr
    assert json.loads(proc.stdout)["rows"] == 1
    assert loaded(tmp_path) == [(1, "n1")]


def test_target_exiting_without_state_leaves_the_bookmarks_where_they_were(tmp_path: Path) -> None:
    lines = [schema("things"), record("things", 1), state(things={"id": 1})]
    env = make_project(tmp_path, {"lines": lines})
    proc = sync(tmp_path, env, target="target-script", check=True)
    assert "target-script emitted no STATE: the bookmarks did not advance" in proc.stderr
    assert stored_state(tmp_path, env) == []


def test_state_for_an_unselected_stream_is_a_warning(tmp_path: Path) -> None:
    lines = [schema("things"), record("things", 1), state(things={"id": 1}, others={"id": 9})]
    env = make_project(tmp_path, {"lines": lines})
    proc = sync(tmp_path, env, "--select", "things", check=True)
    assert "tap-script moved the bookmark of stream 'others', which is not selected (line 3)" in proc.stderr


def test_a_dying_target_stops_an_endless_tap_within_seconds(tmp_path: Path) -> None:
    env = make_project(
        tmp_path, {"lines": [schema("things")], "endless": True}, target={"read": 50, "exit": 3}
    )
    started = time.monotonic()
    proc = sync(tmp_path, env, target="target-script")
    assert time.monotonic() - started < 30
    assert proc.returncode == 1
    assert "target-script failed (exit 3)" in proc.stderr
    assert "target-script: giving up" in proc.stderr


def test_timeout_stops_a_hanging_tap(tmp_path: Path) -> None:
    env = make_project(tmp_path, {"lines": [schema("things"), record("things", 1)], "hang": True})
    started = time.monotonic()
    proc = sync(tmp_path, env, "--timeout", "3")
    assert time.monotonic() - started < 30
    assert proc.returncode == 1
    assert "the sync timed out after 3s and was stopped" in proc.stderr


def test_mapper_runs_between_tap_and_target(tmp_path: Path) -> None:
    lines = [
        schema("things"),
        record("things", 1, "ada"),
        record("things", 2, "bob"),
        state(things={"id": 2}),
    ]
    env = make_project(tmp_path, {"lines": lines}, mapper={"field": "name"})
    proc = sync(tmp_path, env, "--mapper", "mapper-script", "--format", "json", check=True)
    assert json.loads(proc.stdout)["rows"] == 2
    assert loaded(tmp_path) == [(1, "ADA"), (2, "BOB")]
    run = run_elt("run", "tap-script", "mapper-script", "target-duckdb", cwd=tmp_path, env=env)
    assert "succeeded" in run.stdout


def test_stream_maps_in_tap_config_pass_through_to_sdk_taps(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("id,name,email\n1,Ada,ada@example.com\n2,Bob,bob@example.com\n")
    (tmp_path / "elt.yml").write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "plugins": {
                    "extractors": [
                        {
                            "name": "tap-files",
                            "config": {
                                "files": [{"entity": "people", "path": "people.csv", "keys": ["id"]}],
                                "stream_maps": {"people": {"email": "__NULL__", "name": "name.upper()"}},
                            },
                        }
                    ],
                    "loaders": [{"name": "target-duckdb", "config": {"path": "w.duckdb"}}],
                },
            }
        )
    )
    run_elt("sync", "tap-files", "target-duckdb", cwd=tmp_path)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as db:
        columns = [r[0] for r in db.execute("describe tap_files.people").fetchall()]
        rows = db.execute("select id, name from tap_files.people order by id").fetchall()
    assert "email" not in columns
    assert rows == [(1, "ADA"), (2, "BOB")]


def test_second_concurrent_sync_of_the_same_state_id_fails_at_once(tmp_path: Path) -> None:
    env = make_project(tmp_path, {"lines": [schema("things"), record("things", 1)], "hang": True})
    first = subprocess.Popen(
        [str(BIN / "elt"), "sync", "tap-script", "target-duckdb", "--timeout", "60"],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        running = False
        while not running and time.monotonic() < deadline:
            pattern = f"{tmp_path}/.elt/run/.*tap.config.json"
            running = bool(subprocess.run(["pgrep", "-f", pattern], capture_output=True).stdout)
            time.sleep(0.2)
        assert running, "the first sync never started its tap"
        started = time.monotonic()
        second = sync(tmp_path, env)
        assert time.monotonic() - started < 20
        assert second.returncode == 1
        assert "state id 'default:tap-script-to-target-duckdb' is locked by run" in second.stderr
        assert "pass --wait to wait for it" in second.stderr
    finally:
        first.kill()
        first.communicate()


def test_state_strategies_overwrite_or_merge_the_stored_state(tmp_path: Path) -> None:
    lines = [schema("things"), record("things", 1), state(things={"id": 5})]
    env = make_project(tmp_path, {"lines": lines})
    state_id = "default:tap-script-to-target-duckdb"

    def run_with(*args: str) -> dict[str, Any]:
        before = {"bookmarks": {"things": {"id": 1}, "others": {"id": 2}}}
        run_elt("state", "set", state_id, json.dumps(before), "--force", cwd=tmp_path, env=env)
        sync(tmp_path, env, *args, check=True)
        return dict(json.loads(run_elt("state", "get", state_id, cwd=tmp_path, env=env).stdout))

    assert run_with() == {"bookmarks": {"things": {"id": 5}}}  # auto, whole tap: overwrite
    assert run_with("--state-strategy", "overwrite") == {"bookmarks": {"things": {"id": 5}}}
    merged = {"bookmarks": {"things": {"id": 5}, "others": {"id": 2}}}
    assert run_with("--state-strategy", "merge") == merged
    assert run_with("--select", "things") == merged  # auto, some streams: merge


def test_select_list_shows_streams_and_properties(tmp_path: Path) -> None:
    env = make_project(tmp_path, {"lines": []})
    config = yaml.safe_load((tmp_path / "elt.yml").read_text())
    config["plugins"]["extractors"][0]["select"] = ["things.*", "!things.name"]
    (tmp_path / "elt.yml").write_text(yaml.safe_dump(config))
    shown = run_elt("select", "tap-script", "--list", cwd=tmp_path, env=env).stdout
    assert shown.splitlines() == ["things", "  [automatic] things.id"]
    everything = run_elt("select", "tap-script", "--list", "--all", cwd=tmp_path, env=env).stdout
    assert everything.splitlines() == [
        "things",
        "  [automatic] things.id",
        "  [excluded ] things.name",
        "others  (excluded)",
        "  [automatic] others.id",
        "  [excluded ] others.name",
    ]


def test_catalog_is_discovered_once_per_config_until_refreshed(tmp_path: Path) -> None:
    log = tmp_path / "discoveries.txt"
    lines = [schema("things"), record("things", 1), state(things={"id": 1})]
    env = make_project(tmp_path, {"lines": lines, "discover_log": str(log)})

    def discoveries() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    sync(tmp_path, env, check=True)
    sync(tmp_path, env, check=True)
    assert discoveries() == 1
    sync(tmp_path, env, "--refresh-catalog", check=True)
    assert discoveries() == 2
    config = yaml.safe_load((tmp_path / "elt.yml").read_text())
    config["plugins"]["extractors"][0]["config"]["note"] = "changed"
    (tmp_path / "elt.yml").write_text(yaml.safe_dump(config))
    sync(tmp_path, env, check=True)
    assert discoveries() == 3
