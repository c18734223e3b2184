"""Specification of LOG_BASED replication in the built-in tap-postgres, against real PostgreSQL: the first
sync copies the table, later ones replay its inserts, updates and deletes from a replication slot, which
is moved on only to what the target has stored; through `elt sync` into target-postgres and target-duckdb,
and through the `tap-postgres` executable where the records themselves are the point."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
import yaml
from psycopg import sql

from elt.singer import select_catalog
from tests.conftest import BIN, run_elt
from tests.test_tap_postgres import TYPES_ROWS, TYPES_TABLE

SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "test"}
CUSTOMERS = (
    "CREATE TABLE {schema}.customers (id int PRIMARY KEY, name text, balance numeric(12,2), "
    "updated_at timestamptz)",
    "INSERT INTO {schema}.customers SELECT g, 'c' || g, g * 1.25, "
    "'2024-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 20) g",
)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def slot_prefix(postgres_dsn: str) -> Iterator[str]:
    """The test's `replication_slot_name`; its slots and publications are dropped after it (a slot left
    behind keeps the server's WAL forever)."""
    prefix = f"elt_test_{uuid.uuid4().hex[:10]}"
    yield prefix
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE %s",
            (f"{prefix}%",),
        )
        for (name,) in conn.execute(
            "SELECT pubname FROM pg_publication WHERE pubname LIKE %s", (f"{prefix}%",)
        ).fetchall():
            conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(name)))


@pytest.fixture
def out_schema(postgres_dsn: str) -> Iterator[str]:
    """A schema for target-postgres to load into, dropped after the test."""
    name = f"elt_out_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def executables(tmp_path: Path) -> dict[str, str]:
    """The environment in which `elt` finds the built-in connectors: installed next to elt, or shims."""
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, module in (
        ("tap-postgres", "taps.tap_postgres"),
        ("target-postgres", "targets.target_postgres"),
    ):
        if not (BIN / name).exists():
            (shims / name).write_text(f'#!/bin/sh\nexec "{BIN / "python"}" -m {module} "$@"\n')
            (shims / name).chmod(0o755)
    return {"PATH": f"{shims}{os.pathsep}{os.environ.get('PATH', '')}"}


def write_project(
    folder: Path, schema: str, prefix: str, table: str, loader: dict[str, Any], **tap_config: Any
) -> Path:
    """An elt.yml that syncs `<schema>-<table>` LOG_BASED into `loader`."""
    stream = f"{schema}-{table}"
    extractor = {
        "name": "tap-postgres",
        "config": {**SERVER, "filter_schemas": [schema], "replication_slot_name": prefix, **tap_config},
        "select": [f"{stream}.*"],
        "metadata": {stream: {"replication-method": "LOG_BASED"}},
    }
    plugins = {"extractors": [extractor], "loaders": [loader]}
    folder.mkdir(exist_ok=True)
    (folder / "elt.yml").write_text(yaml.safe_dump({"version": 1, "plugins": plugins}, sort_keys=False))
    return folder


def target_postgres(schema: str, **extra: Any) -> dict[str, Any]:
    return {"name": "target-postgres", "config": {**SERVER, "default_target_schema": schema, **extra}}


def sync(project: Path, target: str, env: dict[str, str], check: bool = True) -> dict[str, Any]:
    """`elt sync tap-postgres <target> --format json`: its result (rows per stream, state id)."""
    proc = run_elt("sync", "tap-postgres", target, "--format", "json", cwd=project, env=env, check=check)
    if not check and proc.returncode != 0:
        return {"failed": True, "stdout": proc.stdout, "stderr": proc.stderr}
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def stored_bookmark(project: Path, result: dict[str, Any], stream: str) -> dict[str, Any]:
    """The stream's bookmark in the state elt stored for the next sync."""
    proc = run_elt("state", "get", result["state_id"], "--format", "json", cwd=project)
    bookmark: dict[str, Any] = json.loads(proc.stdout)["bookmarks"][stream]
    return bookmark


def slot_position(postgres_dsn: str, prefix: str) -> int:
    """confirmed_flush_lsn of the test's one slot, as an integer."""
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots WHERE slot_name LIKE %s",
            (f"{prefix}%",),
        ).fetchall()
    assert len(rows) == 1, rows
    return int(rows[0][0])


def run_tap(
    folder: Path, config: dict[str, Any], stream: str, state: dict[str, Any] | None = None
) -> list[dict]:
    """The messages of the `tap-postgres` executable with the stream selected LOG_BASED, as elt runs it."""
    config_file = folder / "tap.json"
    config_file.write_text(json.dumps(config))
    tap = str(BIN / "tap-postgres")
    discovered = json.loads(
        subprocess.run(
            [tap, "--config", str(config_file), "--discover"], capture_output=True, check=True
        ).stdout
    )
    catalog = select_catalog(
        discovered, [f"{stream}.*"], metadata={stream: {"replication-method": "LOG_BASED"}}
    )
    (folder / "catalog.json").write_text(json.dumps(catalog))
    args = [tap, "--config", str(config_file), "--catalog", str(folder / "catalog.json")]
    if state is not None:
        (folder / "state.json").write_text(json.dumps(state))
        args += ["--state", str(folder / "state.json")]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line, parse_float=Decimal) for line in proc.stdout.splitlines()]


def records(messages: list[dict]) -> list[dict[str, Any]]:
    return [message["record"] for message in messages if message["type"] == "RECORD"]


def last_state(messages: list[dict]) -> dict[str, Any]:
    return [message["value"] for message in messages if message["type"] == "STATE"][-1]


# -- through elt sync ---------------------------------------------------------------------------


@pytest.mark.parametrize("hard_delete", [False, True], ids=["soft delete", "hard delete"])
def test_first_sync_copies_the_table_and_later_syncs_replay_its_changes_into_postgres(
    db: Callable[..., list[Any]],
    pg_schema: str,
    slot_prefix: str,
    out_schema: str,
    executables: dict[str, str],
    tmp_path: Path,
    postgres_dsn: str,
    hard_delete: bool,
) -> None:
    db(*CUSTOMERS)
    loader = target_postgres(out_schema, hard_delete=hard_delete)
    project = write_project(tmp_path / "project", pg_schema, slot_prefix, "customers", loader)
    stream, table = f"{pg_schema}-customers", f"{out_schema}.{pg_schema}_customers"

    first = sync(project, "target-postgres", executables)
    assert first["streams"][stream] == {"rows": 20}
    assert db(f"SELECT count(*), sum(balance) FROM {table}") == [(20, Decimal("262.50"))]
    bookmark = stored_bookmark(project, first, stream)
    assert bookmark["replication_key"] == "_sdc_lsn"
    # the slot stays where it was created until the next sync starts; the bookmark covers what was read
    assert slot_position(postgres_dsn, slot_prefix) <= bookmark["replication_key_value"]

    db(
        "INSERT INTO {schema}.customers VALUES (21, 'new', 5, now())",
        "UPDATE {schema}.customers SET name = 'changed', balance = 99.99 WHERE id = 2",
        "DELETE FROM {schema}.customers WHERE id = 3",
        "BEGIN; UPDATE {schema}.customers SET balance = balance + 1 WHERE id = 4; "
        "UPDATE {schema}.customers SET balance = balance + 1 WHERE id = 4; COMMIT",
    )
    second = sync(project, "target-postgres", executables)
    assert second["streams"][stream] == {"rows": 5}  # 1 insert, 3 updates, 1 delete, in commit order
    assert (
        stored_bookmark(project, second, stream)["replication_key_value"] > bookmark["replication_key_value"]
    )
    assert db(f"SELECT name, balance FROM {table} WHERE id IN (2, 4, 21) ORDER BY id") == [
        ("changed", Decimal("99.99")),
        ("c4", Decimal("7.00")),
        ("new", Decimal("5.00")),
    ]
    deleted = db(f"SELECT _sdc_deleted_at IS NOT NULL, name FROM {table} WHERE id = 3")
    # A delete carries the key only (REPLICA IDENTITY DEFAULT): a soft delete keeps the key and the time.
    assert deleted == ([] if hard_delete else [(True, None)])
    assert db(f"SELECT count(*) FROM {table} WHERE _sdc_deleted_at IS NOT NULL") == [
        (0 if hard_delete else 1,)
    ]

    third = sync(project, "target-postgres", executables)
    assert third["rows"] == 0
    assert third["streams"][stream] == {"rows": 0}


# elt's fast paths send BATCH messages; a LOG_BASED stream's changes go out as records on each.
PATHS = {"in-process": {}, "parquet": {"ELT_FAST_PATH": "parquet"}, "records": {"ELT_FAST_PATH": "0"}}


@pytest.mark.parametrize("path", PATHS)
def test_changes_reach_duckdb_on_every_path_and_deletes_remove_rows(
    db: Callable[..., list[Any]],
    pg_schema: str,
    slot_prefix: str,
    executables: dict[str, str],
    tmp_path: Path,
    path: str,
) -> None:
    db(*CUSTOMERS)
    loader = {"name": "target-duckdb", "config": {"path": "warehouse.duckdb", "hard_delete": True}}
    project = write_project(tmp_path / "project", pg_schema, slot_prefix, "customers", loader)
    stream = f"{pg_schema}-customers"
    table = f"tap_postgres.{pg_schema}_customers"
    env = {**executables, **PATHS[path]}

    def rows(*options: str) -> int:
        proc = run_elt(
            "sync", "tap-postgres", "target-duckdb", "--format", "json", *options, cwd=project, env=env
        )
        count: int = json.loads(proc.stdout)["streams"][stream]["rows"]
        return count

    assert rows() == 20
    db(
        "UPDATE {schema}.customers SET name = 'changed' WHERE id = 1",
        "DELETE FROM {schema}.customers WHERE id IN (2, 3)",
        "INSERT INTO {schema}.customers VALUES (30, 'thirty', 30, now())",
        "UPDATE {schema}.customers SET id = 40 WHERE id = 4",  # a new key: the old one is deleted
    )
    assert rows() == 6

    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as warehouse:
        ids = [row[0] for row in warehouse.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]
        assert ids == [1, *range(5, 21), 30, 40]
        assert warehouse.execute(f"SELECT name FROM {table} WHERE id IN (1, 40) ORDER BY id").fetchall() == [
            ("changed",),
            ("c4",),
        ]
        types = dict(warehouse.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())
        assert types["_sdc_lsn"] == "BIGINT"
    assert rows() == 0
    # A full refresh copies the table again (the slot is kept, and read from where it is).
    assert rows("--full-refresh") == 19


def test_the_slot_moves_only_to_a_bookmark_the_target_stored(
    db: Callable[..., list[Any]],
    pg_schema: str,
    slot_prefix: str,
    out_schema: str,
    executables: dict[str, str],
    tmp_path: Path,
    postgres_dsn: str,
) -> None:
    db(*CUSTOMERS)
    good = write_project(tmp_path / "good", pg_schema, slot_prefix, "customers", target_postgres(out_schema))
    stream, table = f"{pg_schema}-customers", f"{out_schema}.{pg_schema}_customers"
    first = sync(good, "target-postgres", executables)
    stored = stored_bookmark(good, first, stream)["replication_key_value"]
    # the slot is where the first sync made it; the bookmark is at or past it (the sync read the WAL on
    # to its end, which other databases' writes move), and the slot follows it only when a sync starts
    assert slot_position(postgres_dsn, slot_prefix) <= stored

    # The target cannot load: the run fails and its state is not stored; the slot moves to the stored
    # bookmark as the run starts, and no further.
    db("UPDATE {schema}.customers SET name = 'lost?' WHERE id = 1")
    write_project(good, pg_schema, slot_prefix, "customers", target_postgres(out_schema, port=1))
    failed = sync(good, "target-postgres", executables, check=False)
    assert failed.get("failed"), failed
    assert slot_position(postgres_dsn, slot_prefix) == stored  # moved to the stored bookmark, no further
    assert stored_bookmark(good, first, stream)["replication_key_value"] == stored

    # The next run reads the change again; the slot moves to the bookmark that run was given.
    write_project(good, pg_schema, slot_prefix, "customers", target_postgres(out_schema))
    again = sync(good, "target-postgres", executables)
    assert again["streams"][stream] == {"rows": 1}
    assert db(f"SELECT name FROM {table} WHERE id = 1") == [("lost?",)]
    assert slot_position(postgres_dsn, slot_prefix) == stored
    after = stored_bookmark(good, again, stream)["replication_key_value"]
    assert after > stored

    assert sync(good, "target-postgres", executables)["rows"] == 0
    assert slot_position(postgres_dsn, slot_prefix) == after


def test_a_table_without_a_key_is_refused_naming_the_stream(
    db: Callable[..., list[Any]],
    pg_schema: str,
    slot_prefix: str,
    out_schema: str,
    executables: dict[str, str],
    tmp_path: Path,
    postgres_dsn: str,
) -> None:
    db(
        "CREATE TABLE {schema}.events (at timestamptz, what text)",
        "INSERT INTO {schema}.events VALUES (now(), 'x')",
    )
    project = write_project(
        tmp_path / "project", pg_schema, slot_prefix, "events", target_postgres(out_schema)
    )

    failed = sync(project, "target-postgres", executables, check=False)

    assert failed.get("failed")
    output = failed["stdout"] + failed["stderr"]
    assert f"stream '{pg_schema}-events' is LOG_BASED, but {pg_schema}.events has no primary key" in output
    assert "REPLICA IDENTITY FULL" in output
    with psycopg.connect(postgres_dsn) as conn:  # nothing was created for it
        assert conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE %s", (f"{slot_prefix}%",)
        ).fetchone() == (0,)

    # With REPLICA IDENTITY FULL the same table syncs, and its deletes carry the whole row.
    db("ALTER TABLE {schema}.events REPLICA IDENTITY FULL")
    assert sync(project, "target-postgres", executables)["rows"] == 1


# -- the records themselves ---------------------------------------------------------------------


def test_changed_rows_are_written_exactly_as_copied_rows(
    db: Callable[..., list[Any]], pg_schema: str, slot_prefix: str, tmp_path: Path
) -> None:
    """Every type: numeric digit for digit, json/jsonb, arrays, timestamps, uuid, bytea, NaN and infinity."""
    db(TYPES_TABLE)
    placeholders = ", ".join(["%s"] * len(TYPES_ROWS[0]))
    for row in TYPES_ROWS:
        db(f"INSERT INTO {{schema}}.all_types VALUES ({placeholders})", params=row)
    db("INSERT INTO {schema}.all_types (id, single, double, ratio, created, day) "
       "VALUES (4, 'NaN', '-Infinity', 'NaN', 'infinity', '-infinity')")  # fmt: skip
    config = {**SERVER, "filter_schemas": [pg_schema], "replication_slot_name": slot_prefix}
    stream = f"{pg_schema}-all_types"

    first = run_tap(tmp_path, config, stream)
    copied = {record["id"]: record for record in records(first)}
    assert set(copied) == {1, 2, 3, 4}
    db(
        "INSERT INTO {schema}.all_types SELECT id + 100, small, whole, big, price, ratio, wide, single, "
        "double, created, local, day, at, flag, doc, docb, ints, words, uid, raw, body, code, letter, span "
        "FROM {schema}.all_types"
    )
    changed = {
        record["id"] - 100: record for record in records(run_tap(tmp_path, config, stream, last_state(first)))
    }

    assert set(changed) == {1, 2, 3, 4}
    for key, record in changed.items():
        assert record["_sdc_lsn"] > copied[key]["_sdc_lsn"]
        assert record["_sdc_deleted_at"] is None
        for name in ("id", "_sdc_lsn"):
            del record[name], copied[key][name]
        assert record == copied[key], key
    assert changed[1]["wide"] == Decimal("12345678901234567890123456789012345.12345")
    assert changed[1]["docb"] == {"k": 'v"q', "n": None, "deep": {"list": [1, "two"]}}
    assert changed[1]["ints"] == [1, None, 3] and changed[1]["words"] == ["a", 'b"c', None]
    assert changed[1]["created"] == "2024-01-01T12:00:00.500000+00:00"
    assert changed[1]["uid"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert changed[1]["raw"] == "AP8Q"  # base64
    assert (
        changed[4]["single"] is changed[4]["double"] is changed[4]["ratio"] is changed[4]["created"] is None
    )


def test_an_update_that_leaves_a_large_value_alone_still_carries_it(
    db: Callable[..., list[Any]], pg_schema: str, slot_prefix: str, tmp_path: Path
) -> None:
    # Incompressible text over 2 kB is stored out of line (TOAST): pgoutput leaves it out of updates
    # that do not change it.
    db(
        "CREATE TABLE {schema}.docs (id int PRIMARY KEY, title text, body text)",
        "INSERT INTO {schema}.docs SELECT g, 't' || g, "
        "(SELECT string_agg(md5(random()::text || i), '') FROM generate_series(1, 300) i) "
        "FROM generate_series(1, 2) g",
    )
    config = {**SERVER, "filter_schemas": [pg_schema], "replication_slot_name": slot_prefix}
    stream = f"{pg_schema}-docs"
    first = run_tap(tmp_path, config, stream)
    bodies = {record["id"]: record["body"] for record in records(first)}

    db("UPDATE {schema}.docs SET title = 'renamed'", "DELETE FROM {schema}.docs WHERE id = 2")
    changes = records(run_tap(tmp_path, config, stream, last_state(first)))

    assert [(r["id"], r["title"], r["_sdc_deleted_at"] is not None) for r in changes] == [
        (1, "renamed", False),
        (2, "renamed", False),
        (2, None, True),
    ]
    assert len(bodies[1]) == 9600
    # Read from the table (the row's current value): the delete that follows comes after it.
    assert changes[0]["body"] == bodies[1]
    assert changes[2]["body"] is None


def test_many_changes_are_read_in_chunks_each_followed_by_its_state(
    db: Callable[..., list[Any]], pg_schema: str, slot_prefix: str, tmp_path: Path, postgres_dsn: str
) -> None:
    db("CREATE TABLE {schema}.events (id int PRIMARY KEY, payload text)")
    config = {**SERVER, "filter_schemas": [pg_schema], "replication_slot_name": slot_prefix}
    stream = f"{pg_schema}-events"
    first = run_tap(tmp_path, config, stream)
    assert records(first) == []
    # the first bookmark, after the copy, is the slot's position at creation
    created = [
        m["value"]["bookmarks"][stream]["replication_key_value"] for m in first if m["type"] == "STATE"
    ]
    assert created[0] == slot_position(postgres_dsn, slot_prefix) <= created[-1]
    # three transactions of 15000 rows: chunks of 10000 end inside them
    for start in (0, 15_000, 30_000):
        db(
            "INSERT INTO {schema}.events SELECT g, repeat('x', 50) "
            f"FROM generate_series({start + 1}, {start + 15_000}) g"
        )

    started = time.monotonic()
    messages = run_tap(tmp_path, config, stream, last_state(first))
    seconds = time.monotonic() - started

    ids = [record["id"] for record in records(messages)]
    assert ids == list(range(1, 45_001))
    bookmarks = [
        m["value"]["bookmarks"][stream]["replication_key_value"]
        for m in messages
        if m["type"] == "STATE" and stream in m["value"]["bookmarks"]
    ]
    assert bookmarks == sorted(bookmarks)
    assert (
        len(set(bookmarks)) >= 3
    )  # the bookmark moves as transactions are sent in full, not only at the end
    print(f"45000 changes in {seconds:.2f} s")
