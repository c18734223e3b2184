"""target-duckdb, specified by feeding real Singer messages to the real `target-duckdb` process.

Every test of a load path counts rows and distinct keys: a loader that silently drops a row (as the
PyPI target-duckdb 0.8 does with the first row of every batch) must fail here.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from targets.target_duckdb.target import TargetDuckDB

TARGET = Path(sys.executable).parent / "target-duckdb"
UTC = dt.UTC


# --- Singer messages -----------------------------------------------------------------------------


def schema(stream: str, properties: dict[str, Any], keys: list[str] | None = None) -> dict:
    message = {"type": "SCHEMA", "stream": stream, "schema": {"properties": properties}}
    message["key_properties"] = keys or []
    return message


def record(stream: str, values: dict[str, Any], time_extracted: str | None = None) -> dict:
    message: dict[str, Any] = {"type": "RECORD", "stream": stream, "record": values}
    if time_extracted:
        message["time_extracted"] = time_extracted
    return message


def state(value: dict[str, Any]) -> dict:
    return {"type": "STATE", "value": value}


def lines(messages: list[dict]) -> str:
    return "".join(json.dumps(message) + "\n" for message in messages)


ORDERS = {
    "id": {"type": "integer"},
    "name": {"type": ["null", "string"]},
    "created_at": {"type": ["null", "string"], "format": "date-time"},
}


def orders(ids: range, name: str = "order") -> list[dict]:
    return [
        record(
            "orders",
            {"id": i, "name": f"{name} {i}", "created_at": f"2024-05-01T10:{i % 60:02d}:00+00:00"},
        )
        for i in ids
    ]


# --- running the target --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def target_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment the target runs in: compiled modules cached outside the virtualenv.

    Without a bytecode cache every run of the target recompiles singer-sdk, pyarrow's pandas and
    duckdb from source (seconds per run); the prefix keeps the cache out of the virtualenv.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.getbasetemp() / "pycache")
    return env


@pytest.fixture
def run_target(tmp_path: Path, target_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `target-duckdb --config` on messages; returns the finished process (stdout, stderr)."""

    def run(messages: list[dict], **config: Any) -> subprocess.CompletedProcess[str]:
        config_file = tmp_path / "config.json"
        if "filepath" not in config:
            config.setdefault("path", str(tmp_path / "warehouse.duckdb"))
        config_file.write_text(json.dumps(config))
        return subprocess.run(
            [str(TARGET), "--config", str(config_file)],
            input=lines(messages),
            capture_output=True,
            text=True,
            env=target_env,
            timeout=120,
        )

    return run


@pytest.fixture
def load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., list[dict]]:
    """Run TargetDuckDB in this process on messages; returns the STATE lines it wrote."""

    def run(messages: list[dict], **config: Any) -> list[dict]:
        config.setdefault("path", str(tmp_path / "warehouse.duckdb"))
        target = TargetDuckDB(config={k: v for k, v in config.items() if v is not None})
        target.listen(io.StringIO(lines(messages)))
        return states(capsys.readouterr().out)

    return run


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    # A TargetDuckDB made in this process installs singer-sdk's SIGINT/SIGTERM handlers.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def query(database: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).fetchall()


def column_types(database: Path, table: str) -> dict[str, str]:
    schema_name, name = table.split(".")
    rows = query(
        database,
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{schema_name}' AND table_name = '{name}' ORDER BY ordinal_position",
    )
    return dict(rows)


def states(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


# --- load methods --------------------------------------------------------------------------------


def test_append_loads_every_row_with_exact_types(run_target, tmp_path: Path) -> None:
    properties = {
        "id": {"type": "integer"},
        "amount": {"type": ["null", "number"]},
        "label": {"type": ["string", "null"]},
        "active": {"type": "boolean"},
        "at": {"type": ["null", "string"], "format": "date-time"},
        "day": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
        "clock": {"type": "string", "format": "time"},
        "attrs": {"type": ["null", "object"], "properties": {"k": {"type": "string"}}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "anything": {},
        "code": {"type": ["integer", "string"]},
    }
    rows = [
        {
            "id": 1,
            "amount": 12.25,
            "label": "first",
            "active": True,
            "at": "2024-05-01T12:00:00+02:00",
            "day": "2024-05-01",
            "clock": "08:30:00",
            "attrs": {"k": "v", "n": 1.5},
            "tags": ["a", "b"],
            "anything": {"deep": [1, 2]},
            "code": 7,
        },
        {
            "id": 2,
            "amount": None,
            "label": None,
            "active": False,
            "at": None,
            "day": None,
            "clock": "23:59:59.5",
            "attrs": None,
            "tags": [],
            "anything": "text",
            "code": "X7",
        },
        {"id": 2, "amount": 3, "active": True, "clock": "00:00:00", "tags": ["c"]},
    ]
    messages = [schema("events", properties)]
    messages += [record("events", row, "2024-05-02T00:00:00+00:00") for row in rows]

    result = run_target(messages)

    assert result.returncode == 0, result.stderr
    db = tmp_path / "warehouse.duckdb"
    assert column_types(db, "main.events") == {
        "id": "BIGINT",
        "amount": "DOUBLE",
        "label": "VARCHAR",
        "active": "BOOLEAN",
        "at": "TIMESTAMP WITH TIME ZONE",
        "day": "DATE",
        "clock": "TIME",
        "attrs": "JSON",
        "tags": "JSON",
        "anything": "JSON",
        "code": "VARCHAR",
        "_elt_loaded_at": "TIMESTAMP WITH TIME ZONE",
        "_elt_synced_at": "TIMESTAMP WITH TIME ZONE",
    }
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM main.events") == [(3, 2)]
    first = query(
        db,
        'SELECT amount, label, active, "at", day, clock, attrs::VARCHAR, tags::VARCHAR, '
        "anything::VARCHAR, code, _elt_synced_at FROM main.events WHERE label = 'first'",
    )
    assert first == [
        (
            12.25,
            "first",
            True,
            dt.datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
            dt.date(2024, 5, 1),
            dt.time(8, 30),
            '{"k":"v","n":1.5}',
            '["a","b"]',
            '{"deep":[1,2]}',
            "7",
            dt.datetime(2024, 5, 2, tzinfo=UTC),
        )
    ]
    assert query(db, "SELECT anything::VARCHAR, code FROM main.events WHERE id = 2 AND tags = '[]'") == [
        ('"text"', "X7")
    ]
    assert query(db, "SELECT count(*) FROM main.events WHERE _elt_loaded_at IS NULL") == [(0,)]


def test_upsert_replaces_rows_by_key(run_target, load, tmp_path: Path) -> None:
    db = tmp_path / "warehouse.duckdb"
    load([schema("orders", ORDERS, ["id"]), *orders(range(1, 6), "old")])

    # Key 4 comes twice in one batch: the last record wins.
    second = run_target(
        [
            schema("orders", ORDERS, ["id"]),
            *orders(range(3, 8), "new"),
            record("orders", {"id": 4, "name": "newest 4", "created_at": None}),
        ]
    )

    assert second.returncode == 0, second.stderr
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM main.orders") == [(7, 7)]
    assert query(db, "SELECT id, name FROM main.orders ORDER BY id") == [
        (1, "old 1"),
        (2, "old 2"),
        (3, "new 3"),
        (4, "newest 4"),
        (5, "new 5"),
        (6, "new 6"),
        (7, "new 7"),
    ]


def test_upsert_across_batches_keeps_the_latest_record(load, tmp_path: Path) -> None:
    messages = [schema("orders", ORDERS, ["id"])]
    for version in range(3):
        messages += orders(range(1, 11), f"v{version}")

    load(messages, batch_size_rows=4)

    db = tmp_path / "warehouse.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM main.orders") == [(10, 10)]
    assert query(db, "SELECT DISTINCT split_part(name, ' ', 1) FROM main.orders") == [("v2",)]


def test_overwrite_replaces_table_contents(run_target, load, tmp_path: Path) -> None:
    db = tmp_path / "warehouse.duckdb"
    load([schema("orders", ORDERS, ["id"]), *orders(range(1, 11))])

    result = run_target(
        [schema("orders", ORDERS, ["id"]), *orders(range(100, 105), "again")],
        load_method="overwrite",
        batch_size_rows=2,
    )

    assert result.returncode == 0, result.stderr
    assert query(db, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM main.orders") == [
        (5, 5, 100, 104)
    ]


def test_append_only_keeps_every_version(load, tmp_path: Path) -> None:
    messages = [schema("orders", ORDERS, ["id"]), *orders(range(1, 4)), *orders(range(1, 4))]

    load(messages, load_method="append-only")

    db = tmp_path / "warehouse.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM main.orders") == [(6, 3)]


# --- schema evolution ----------------------------------------------------------------------------


def test_new_property_adds_column(run_target, tmp_path: Path) -> None:
    v1 = {"id": {"type": "integer"}, "score": {"type": "integer"}, "gone": {"type": "string"}}
    v2 = {"id": {"type": "integer"}, "score": {"type": "number"}, "note": {"type": "string"}}
    messages = [
        schema("items", v1, ["id"]),
        record("items", {"id": 1, "score": 10, "gone": "x"}),
        record("items", {"id": 2, "score": 20, "gone": "y"}),
        schema("items", v2, ["id"]),
        record("items", {"id": 2, "score": 20.5, "note": "two"}),
        record("items", {"id": 3, "score": 30.25, "note": "three"}),
    ]

    result = run_target(messages)

    assert result.returncode == 0, result.stderr
    db = tmp_path / "warehouse.duckdb"
    types = column_types(db, "main.items")
    assert (types["score"], types["gone"], types["note"]) == ("DOUBLE", "VARCHAR", "VARCHAR")
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM main.items") == [(3, 3)]
    # Rows under the old schema are loaded before rows under the new one: key 2 ends with v2 values.
    assert query(db, "SELECT id, score, gone, note FROM main.items ORDER BY id") == [
        (1, 10.0, "x", None),
        (2, 20.5, None, "two"),
        (3, 30.25, None, "three"),
    ]


# --- durability ----------------------------------------------------------------------------------


def test_state_is_emitted_only_after_rows_are_committed(tmp_path: Path, target_env: dict[str, str]) -> None:
    db = tmp_path / "warehouse.duckdb"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"path": str(db), "batch_size_rows": 20}))
    process = subprocess.Popen(
        [str(TARGET), "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=target_env,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        # 10 rows, their STATE, then 10 more rows: the 20th fills the batch, which is committed
        # and only then may the STATE come out. Input stays open, so nothing else drains.
        process.stdin.write(lines([schema("orders", ORDERS, ["id"]), *orders(range(1, 11))]))
        process.stdin.write(lines([state({"bookmarks": {"orders": {"id": 10}}}), *orders(range(11, 21))]))
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "no STATE within 60 s"
        emitted = json.loads(process.stdout.readline())
        process.send_signal(signal.SIGKILL)  # no chance to write anything more
    finally:
        process.kill()
        process.wait()

    assert emitted == {"bookmarks": {"orders": {"id": 10}}}
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM main.orders WHERE id <= 10") == [(10, 10)]


def test_states_come_out_after_the_rows_before_them(run_target, tmp_path: Path) -> None:
    messages = [schema("orders", ORDERS, ["id"])]
    for start in range(1, 50, 10):
        messages += orders(range(start, start + 10))
        messages.append(state({"bookmarks": {"orders": {"id": start + 9}}}))

    result = run_target(messages, batch_size_rows=15)

    assert result.returncode == 0, result.stderr
    emitted = [s["bookmarks"]["orders"]["id"] for s in states(result.stdout)]
    assert emitted and emitted[-1] == 50
    assert emitted == sorted(emitted)
    db = tmp_path / "warehouse.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM main.orders") == [(50, 50)]


@pytest.mark.parametrize(
    ("column", "bad_value", "expected"),
    [
        ("id", "abc", "BIGINT"),  # refused while building the Arrow batch
        ("created_at", "not a time", "TIMESTAMPTZ"),  # refused by DuckDB's cast on insert
    ],
)
def test_bad_value_error_names_stream_and_column(
    run_target, tmp_path: Path, column: str, bad_value: str, expected: str
) -> None:
    good = orders(range(1, 4))
    bad_batch = orders(range(4, 7))
    bad_batch[1]["record"][column] = bad_value
    messages = [
        schema("orders", ORDERS, ["id"]),
        *good,
        state({"bookmarks": {"orders": {"id": 3}}}),
        *bad_batch,
        state({"bookmarks": {"orders": {"id": 6}}}),
    ]

    result = run_target(messages, batch_size_rows=3)

    assert result.returncode != 0
    error = result.stderr
    assert "stream 'orders'" in error
    assert f"column '{column}'" in error
    assert repr(bad_value) in error
    assert expected in error
    assert "Traceback" not in error
    # The first batch was committed and its STATE emitted; nothing of the bad batch was written.
    assert states(result.stdout) == [{"bookmarks": {"orders": {"id": 3}}}]
    db = tmp_path / "warehouse.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT id), max(id) FROM main.orders") == [(3, 3, 3)]


def test_first_row_of_every_batch_is_loaded(run_target, tmp_path: Path) -> None:
    # The PyPI target-duckdb 0.8 took each batch's first line, with its +00:00 timestamps, for a
    # CSV header and dropped it.
    messages = [schema("orders", ORDERS, ["id"]), *orders(range(1, 51))]

    result = run_target(messages, batch_size_rows=7, load_method="append-only")

    assert result.returncode == 0, result.stderr
    db = tmp_path / "warehouse.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM main.orders") == [
        (50, 50, 1, 50)
    ]
    firsts = query(db, "SELECT count(*) FROM main.orders WHERE id IN (1, 8, 15, 22, 29, 36, 43, 50)")
    assert firsts == [(8,)]
    assert query(db, "SELECT min(created_at) FROM main.orders") == [
        (dt.datetime(2024, 5, 1, 10, 1, tzinfo=UTC),)
    ]


# --- config --------------------------------------------------------------------------------------


def test_filepath_alias_and_default_target_schema(run_target, tmp_path: Path) -> None:
    db = tmp_path / "nested" / "dir" / "raw.duckdb"
    messages = [
        schema("Public-Orders.v2", ORDERS, ["id"]),
        *[{**message, "stream": "Public-Orders.v2"} for message in orders(range(1, 4))],
    ]

    result = run_target(messages, filepath=str(db), default_target_schema="tap_files")

    assert result.returncode == 0, result.stderr
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM tap_files.public_orders_v2") == [(3, 3)]


# --- in-process: the library behind the CLI, for the less central paths -----------------------


def test_schema_mapping_loads_into_the_mapped_schema(load, tmp_path: Path) -> None:
    messages = [schema("public-orders", ORDERS, ["id"])]
    messages += [{**m, "stream": "public-orders"} for m in orders(range(1, 4))]
    messages += [schema("other-orders", ORDERS, ["id"])]
    messages += [{**m, "stream": "other-orders"} for m in orders(range(1, 3))]

    load(messages, schema_mapping={"public": {"target_schema": "crm"}}, default_target_schema="raw")

    db = tmp_path / "warehouse.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM crm.orders") == [(3, 3)]
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM raw.other_orders") == [(2, 2)]


def test_upsert_with_composite_key(load, tmp_path: Path) -> None:
    properties = {
        "shop": {"type": "string"},
        "sku": {"type": "integer"},
        "qty": {"type": "integer"},
    }
    rows = [("a", 1, 1), ("a", 2, 1), ("b", 1, 1), ("a", 1, 5), ("b", 1, 7)]
    messages = [schema("stock", properties, ["shop", "sku"])]
    messages += [record("stock", {"shop": s, "sku": k, "qty": q}) for s, k, q in rows]

    load(messages, batch_size_rows=2)

    db = tmp_path / "warehouse.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT (shop, sku)) FROM main.stock") == [(3, 3)]
    assert query(db, "SELECT shop, sku, qty FROM main.stock ORDER BY ALL") == [
        ("a", 1, 5),
        ("a", 2, 1),
        ("b", 1, 7),
    ]


def test_hard_delete_removes_rows_marked_deleted(load, tmp_path: Path) -> None:
    load([schema("orders", ORDERS, ["id"]), *orders(range(1, 6))])
    deleted = record("orders", {"id": 2, "name": None, "_sdc_deleted_at": "2024-05-03T00:00:00Z"})

    load([schema("orders", ORDERS, ["id"]), deleted], hard_delete=True)

    db = tmp_path / "warehouse.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM main.orders") == [(4, 4)]
    assert query(db, "SELECT count(*) FROM main.orders WHERE id = 2") == [(0,)]


def test_soft_delete_keeps_the_declared_deleted_at_column(load, tmp_path: Path) -> None:
    """A tap that declares `_sdc_deleted_at` (LOG_BASED tap-postgres) sends deletes as data: without
    hard_delete they stay as rows with the column filled, not as a key with nulls and no marker."""
    with_deleted = {**ORDERS, "_sdc_deleted_at": {"type": ["null", "string"], "format": "date-time"}}
    load([schema("orders", with_deleted, ["id"]), *orders(range(1, 4))])
    deleted = record("orders", {"id": 2, "name": None, "_sdc_deleted_at": "2024-05-03T00:00:00Z"})

    load([schema("orders", with_deleted, ["id"]), deleted])

    db = tmp_path / "warehouse.duckdb"
    assert query(
        db, "SELECT id, name, strftime(_sdc_deleted_at, '%Y-%m-%d') FROM main.orders ORDER BY id"
    ) == [(1, "order 1", None), (2, None, "2024-05-03"), (3, "order 3", None)]
    assert "_sdc_extracted_at" not in column_types(db, "main.orders")  # the other _sdc_ columns stay out


def test_overwrite_run_without_rows_empties_the_table(load, tmp_path: Path) -> None:
    load([schema("orders", ORDERS, ["id"]), *orders(range(1, 6))])

    load([schema("orders", ORDERS, ["id"]), state({"done": True})], load_method="overwrite")

    db = tmp_path / "warehouse.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM main.orders") == [(0, 0)]


def test_primary_key_required_rejects_stream_without_key(load) -> None:
    from targets.target_duckdb.errors import LoadError

    with pytest.raises(LoadError, match="stream 'orders' has no key_properties"):
        load([schema("orders", ORDERS), *orders(range(1, 3))], primary_key_required=True)


def test_synced_at_is_receipt_time_without_time_extracted(load, tmp_path: Path) -> None:
    before = dt.datetime.now(UTC)

    load([schema("orders", ORDERS, ["id"]), *orders(range(1, 4))])

    db = tmp_path / "warehouse.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM main.orders") == [(3, 3)]
    ((earliest, latest),) = query(db, "SELECT min(_elt_synced_at), max(_elt_loaded_at) FROM main.orders")
    assert before - dt.timedelta(seconds=1) <= earliest <= latest


def test_property_widened_to_string_widens_the_column(load, tmp_path: Path) -> None:
    db = tmp_path / "warehouse.duckdb"
    as_int = {"id": {"type": "integer"}, "code": {"type": "integer"}}
    as_text = {"id": {"type": "integer"}, "code": {"type": ["null", "string"]}}
    load([schema("codes", as_int, ["id"]), record("codes", {"id": 1, "code": 42})])

    load([schema("codes", as_text, ["id"]), record("codes", {"id": 2, "code": "A-1"})])

    assert column_types(db, "main.codes")["code"] == "VARCHAR"
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM main.codes") == [(2, 2)]
    assert query(db, "SELECT id, code FROM main.codes ORDER BY id") == [(1, "42"), (2, "A-1")]


def test_path_defaults_to_the_project_warehouse(
    load, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    load([schema("orders", ORDERS, ["id"]), *orders(range(1, 3))], path=None)

    db = tmp_path / ".elt" / "warehouse.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM main.orders") == [(2, 2)]


def test_add_metadata_columns_alias_loads_sdc_columns(load, tmp_path: Path) -> None:
    messages = [schema("orders", ORDERS, ["id"])]
    messages += [record("orders", {"id": i}, "2024-05-02T00:00:00+00:00") for i in (1, 2)]

    load(messages, add_metadata_columns=True)

    db = tmp_path / "warehouse.duckdb"
    types = column_types(db, "main.orders")
    assert types["_sdc_extracted_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["_sdc_sequence"] == "BIGINT"
    assert query(db, "SELECT count(*), count(DISTINCT id), min(_sdc_extracted_at) FROM main.orders") == [
        (2, 2, dt.datetime(2024, 5, 2, tzinfo=UTC))
    ]


@pytest.mark.parametrize("flush_all_streams", [True, False])
def test_flush_all_streams_loads_every_stream_when_one_batch_is_full(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flush_all_streams: bool
) -> None:
    target = TargetDuckDB(
        config={
            "path": str(tmp_path / "warehouse.duckdb"),
            "batch_size_rows": 3,
            "flush_all_streams": flush_all_streams,
        }
    )
    messages = [
        schema("orders", ORDERS, ["id"]),
        schema("returns", ORDERS, ["id"]),
        *[{**m, "stream": "returns"} for m in orders(range(1, 3))],
        state({"at": "returns loaded"}),
        *orders(range(1, 4)),  # fills the orders batch
    ]

    # Read the input without the end-of-input drain, as if more were still to come.
    target.process_lines(io.StringIO(lines(messages)))

    emitted = states(capsys.readouterr().out)
    cursor = target.connection.cursor()
    loaded = cursor.execute("SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()
    if flush_all_streams:
        assert emitted == [{"at": "returns loaded"}]
        assert loaded == [("orders",), ("returns",)]
        assert cursor.execute("SELECT count(*), count(DISTINCT id) FROM main.returns").fetchall() == [(2, 2)]
    else:
        # The 2 buffered returns are not loaded yet, so the STATE after them must wait.
        assert emitted == []
        assert loaded == [("orders",)]
    assert cursor.execute("SELECT count(*), count(DISTINCT id) FROM main.orders").fetchall() == [(3, 3)]
    cursor.close()
    target.close()


def test_json_columns_keep_numbers_digit_for_digit(tmp_path: Path) -> None:
    raw = (
        json.dumps(schema("prices", {"id": {"type": "integer"}, "detail": {"type": "object"}}))
        + "\n"
        + '{"type": "RECORD", "stream": "prices", "record": '
        '{"id": 1, "detail": {"price": 1.50, "big": 12345678901234567890.123456789}}}\n'
    )
    target = TargetDuckDB(config={"path": str(tmp_path / "warehouse.duckdb")})

    target.listen(io.StringIO(raw))

    db = tmp_path / "warehouse.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT id), any_value(detail)::VARCHAR FROM main.prices") == [
        (1, 1, '{"price":1.50,"big":12345678901234567890.123456789}')
    ]
