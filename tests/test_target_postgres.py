"""target-postgres, specified by feeding real Singer messages (and real Parquet BATCH files) to the real
target and reading the tables it writes in the local PostgreSQL server.

Every test of a load path counts rows and distinct keys: a loader that silently drops or doubles a row
must fail here. Each test loads into a schema of its own (`pg_schema`), dropped afterwards.
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
import textwrap
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from singer_sdk.singerlib.json import serialize_json

from elt.errors import EltError
from targets.target_duckdb.errors import LoadError
from targets.target_postgres.target import TargetPostgres
from tests.conftest import BIN, run_elt

# The console script once the package installs it; the module until then.
TARGET = (
    [str(BIN / "target-postgres")]
    if (BIN / "target-postgres").exists()
    else [sys.executable, "-m", "targets.target_postgres"]
)
UTC = dt.UTC


# --- Singer messages -----------------------------------------------------------------------------


def schema(stream: str, properties: dict[str, Any], keys: list[str] | None = None) -> dict:
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"properties": properties},
        "key_properties": keys or [],
    }


def record(stream: str, values: dict[str, Any], time_extracted: str | None = None) -> dict:
    message: dict[str, Any] = {"type": "RECORD", "stream": stream, "record": values}
    if time_extracted:
        message["time_extracted"] = time_extracted
    return message


def state(value: dict[str, Any]) -> dict:
    return {"type": "STATE", "value": value}


def lines(messages: list[dict]) -> str:
    """Messages as JSON lines; Decimal values are written digit for digit."""
    return "".join(serialize_json(message) + "\n" for message in messages)


def states(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


ORDERS = {
    "id": {"type": "integer"},
    "name": {"type": ["null", "string"]},
    "created_at": {"type": ["null", "string"], "format": "date-time"},
}


def orders(ids: range | list[int], name: str = "order") -> list[dict]:
    return [
        record(
            "orders", {"id": i, "name": f"{name} {i}", "created_at": f"2024-05-01T10:{i % 60:02d}:00+02:00"}
        )
        for i in ids
    ]


# --- running the target and reading PostgreSQL ---------------------------------------------------


@pytest.fixture
def config(postgres_dsn: str, pg_schema: str) -> dict[str, Any]:
    """The target's config: MeltanoLabs' keys for the local server, loading into the test's schema."""
    return {
        "host": "127.0.0.1",
        "port": 5432,
        "user": "postgres",
        "database": "test",
        "default_target_schema": pg_schema,
    }


@pytest.fixture
def run_target(config: dict[str, Any], tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `target-postgres --config` as a process on messages; returns it finished (stdout, stderr)."""

    def run(messages: list[dict], **overrides: Any) -> subprocess.CompletedProcess[str]:
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps({**config, **overrides}))
        return subprocess.run(
            [*TARGET, "--config", str(config_file)],
            input=lines(messages),
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


@pytest.fixture
def load(config: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> Callable[..., list[dict]]:
    """Run TargetPostgres in this process on messages; returns the STATE messages it wrote."""

    def run(messages: list[dict], **overrides: Any) -> list[dict]:
        target = TargetPostgres(config={**config, **overrides})
        target.listen(io.StringIO(lines(messages)))
        return states(capsys.readouterr().out)

    return run


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    # A TargetPostgres made in this process installs singer-sdk's SIGINT/SIGTERM handlers.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.fixture
def query(postgres_dsn: str, pg_schema: str) -> Callable[[str], list[tuple]]:
    """Run SQL in the test's schema (`{s}` in the SQL is the schema) and fetch every row."""

    def run(sql: str) -> list[tuple]:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            return conn.execute(sql.replace("{s}", pg_schema)).fetchall()

    return run


@pytest.fixture
def column_types(query: Callable[[str], list[tuple]], pg_schema: str) -> Callable[[str], dict[str, str]]:
    """A table's columns and their types, as PostgreSQL's format_type() spells them."""

    def run(table: str) -> dict[str, str]:
        rows = query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            f'WHERE a.attrelid = \'"{pg_schema}"."{table}"\'::regclass AND a.attnum > 0 '
            "AND NOT a.attisdropped ORDER BY a.attnum"
        )
        return dict(rows)

    return run


METADATA_TYPES = {"_elt_loaded_at": "timestamp with time zone", "_elt_synced_at": "timestamp with time zone"}


# --- load methods and types ----------------------------------------------------------------------


def test_append_only_loads_every_record_with_exact_types(run_target, query, column_types) -> None:
    properties = {
        "id": {"type": "integer"},
        "amount": {"type": ["null", "number"]},
        "price": {
            "type": ["null", "number"],
            "multipleOf": 0.01,
            "maximum": 1000000,
            "exclusiveMaximum": True,
        },
        "small": {"type": "integer", "x-sql-datatype": "smallint"},
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
    rows: list[dict[str, Any]] = [
        {
            "id": 1,
            "amount": Decimal("123456789012345678.123456789"),
            "price": 19.99,
            "small": 7,
            "label": "first \u00e9t\u00e9 \\ \t",
            "active": True,
            "at": "2024-05-01T12:00:00.123456+02:00",
            "day": "2024-05-01",
            "clock": "08:30:00",
            "attrs": {"k": "v", "n": Decimal("1.50")},
            "tags": ["a", "b"],
            "anything": {"deep": [1, 2]},
            "code": 7,
        },
        {
            "id": 2,
            "amount": None,
            "label": None,
            "active": False,
            "clock": "23:59:59.5",
            "tags": [],
            "code": "X7",
        },
        {
            "id": 2,
            "amount": 3,
            "small": -2,
            "active": True,
            "at": "2024-05-01 00:00:00",
            "clock": "00:00",
            "tags": [],
        },
    ]
    messages = [schema("events", properties, ["id"])]
    messages += [record("events", row, "2024-05-02T00:00:00+00:00") for row in rows]

    result = run_target(messages, load_method="append-only")

    assert result.returncode == 0, result.stderr
    assert column_types("events") == {
        "id": "bigint",
        "amount": "numeric",
        "price": "numeric(8,2)",
        "small": "smallint",
        "label": "text",
        "active": "boolean",
        "at": "timestamp with time zone",
        "day": "date",
        "clock": "time without time zone",
        "attrs": "jsonb",
        "tags": "jsonb",
        "anything": "jsonb",
        "code": "text",
        **METADATA_TYPES,
    }
    assert query("SELECT count(*), count(DISTINCT id) FROM {s}.events") == [(3, 2)]
    first = query(
        "SELECT amount, price, small, label, active, at, day, clock, attrs::text, tags::text, "
        "anything::text, code, _elt_synced_at FROM {s}.events WHERE id = 1"
    )
    assert first == [
        (
            Decimal("123456789012345678.123456789"),
            Decimal("19.99"),
            7,
            "first \u00e9t\u00e9 \\ \t",
            True,
            dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC),
            dt.date(2024, 5, 1),
            dt.time(8, 30),
            '{"k": "v", "n": 1.50}',
            '["a", "b"]',
            '{"deep": [1, 2]}',
            "7",
            dt.datetime(2024, 5, 2, tzinfo=UTC),
        )
    ]
    # A date-time without an offset is UTC; a multi-typed property keeps each value's text.
    assert query(
        "SELECT amount, small, at, code FROM {s}.events WHERE id = 2 ORDER BY amount NULLS FIRST"
    ) == [
        (None, None, None, "X7"),
        (Decimal(3), -2, dt.datetime(2024, 5, 1, tzinfo=UTC), None),
    ]
    assert query("SELECT count(*) FROM {s}.events WHERE _elt_loaded_at IS NULL") == [(0,)]


def test_upsert_keeps_the_last_record_of_each_key(run_target, load, query) -> None:
    load([schema("orders", ORDERS, ["id"]), *orders(range(1, 6), "old")])

    # Key 4 comes three times, in two batches of the second run: the last record wins.
    second = run_target(
        [
            schema("orders", ORDERS, ["id"]),
            *orders(range(3, 8), "new"),
            record("orders", {"id": 4, "name": "newer 4", "created_at": None}),
            record("orders", {"id": 4, "name": "newest 4", "created_at": None}),
        ],
        batch_size_rows=3,
    )

    assert second.returncode == 0, second.stderr
    assert query("SELECT count(*), count(DISTINCT id) FROM {s}.orders") == [(7, 7)]
    assert query("SELECT id, name FROM {s}.orders ORDER BY id") == [
        (1, "old 1"),
        (2, "old 2"),
        (3, "new 3"),
        (4, "newest 4"),
        (5, "new 5"),
        (6, "new 6"),
        (7, "new 7"),
    ]
    assert query(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = '{s}.orders'::regclass AND i.indisprimary"
    ) == [("id",)]


def test_upsert_of_a_table_without_a_key_index_adds_one(load, query) -> None:
    load([schema("orders", ORDERS, ["id"]), *orders(range(1, 4), "old")], load_method="append-only")

    load([schema("orders", ORDERS, ["id"]), *orders(range(2, 6), "new")], load_method="upsert")

    assert query("SELECT count(*), count(DISTINCT id), min(name), max(name) FROM {s}.orders") == [
        (5, 5, "new 2", "old 1")
    ]


def test_upsert_of_a_table_with_duplicate_keys_fails_with_a_hint(load, query) -> None:
    load([schema("orders", ORDERS, ["id"]), *orders([1, 1, 2])], load_method="append-only")

    with pytest.raises(
        LoadError, match=r"stream 'orders': table .*\.orders has rows with the same key \(id\)"
    ):
        load([schema("orders", ORDERS, ["id"]), *orders([3])], load_method="upsert")

    assert query("SELECT count(*) FROM {s}.orders") == [(3,)]


def test_overwrite_replaces_the_rows_of_earlier_runs(load, query) -> None:
    load([schema("orders", ORDERS, ["id"]), *orders(range(1, 6))], load_method="overwrite")

    # Three batches: only the first empties the table, in its own transaction.
    load(
        [schema("orders", ORDERS, ["id"]), *orders(range(10, 15))], load_method="overwrite", batch_size_rows=2
    )
    assert query("SELECT count(*), count(DISTINCT id), min(id) FROM {s}.orders") == [(5, 5, 10)]

    load([schema("orders", ORDERS, ["id"]), state({"bookmarks": {}})], load_method="overwrite")
    assert query("SELECT count(*) FROM {s}.orders") == [(0,)]


# --- schema evolution ----------------------------------------------------------------------------


def test_new_property_adds_a_column(load, query, column_types) -> None:
    load([schema("orders", ORDERS, ["id"]), *orders(range(1, 3))])
    wider = {**ORDERS, "Email": {"type": ["null", "string"]}}

    # A new SCHEMA in the middle of a run: rows before it are loaded first, then the new column.
    load(
        [
            schema("orders", ORDERS, ["id"]),
            *orders(range(3, 5)),
            schema("orders", wider, ["id"]),
            record("orders", {"id": 5, "name": "order 5", "Email": "five@example.com"}),
        ]
    )

    assert column_types("orders") == {
        "id": "bigint",
        "name": "text",
        "created_at": "timestamp with time zone",
        **METADATA_TYPES,
        "email": "text",
    }
    assert query("SELECT id, email FROM {s}.orders ORDER BY id") == [
        (1, None),
        (2, None),
        (3, None),
        (4, None),
        (5, "five@example.com"),
    ]


def test_widened_type_widens_the_column(load, query, column_types) -> None:
    def items(code: dict[str, Any], day_format: str) -> dict:
        properties = {
            "id": {"type": "integer"},
            "code": code,
            "day": {"type": "string", "format": day_format},
        }
        return schema("items", properties, ["id"])

    load(
        [items({"type": "integer"}, "date"), record("items", {"id": 1, "code": 10**18, "day": "2024-05-01"})]
    )
    load(
        [
            items({"type": "number"}, "date"),
            record("items", {"id": 2, "code": Decimal("2.5"), "day": "2024-05-02"}),
        ]
    )
    assert column_types("items")["code"] == "numeric"  # integer -> number

    load(
        [
            items({"type": ["string", "null"]}, "date-time"),
            record("items", {"id": 3, "code": "X-3", "day": "2024-05-03T10:00:00Z"}),
        ]
    )

    types = column_types("items")  # number -> string, date -> date-time
    assert (types["code"], types["day"]) == ("text", "timestamp with time zone")
    assert query("SELECT id, code, day FROM {s}.items ORDER BY id") == [
        (1, "1000000000000000000", dt.datetime(2024, 5, 1, tzinfo=UTC)),
        (2, "2.5", dt.datetime(2024, 5, 2, tzinfo=UTC)),
        (3, "X-3", dt.datetime(2024, 5, 3, 10, tzinfo=UTC)),
    ]


# --- deletes -------------------------------------------------------------------------------------

DELETABLE = {**ORDERS, "_sdc_deleted_at": {"type": ["null", "string"], "format": "date-time"}}
DELETED_AT = "2024-06-01T00:00:00+00:00"


def deletes_batch() -> list[dict]:
    """Key 2 deleted, 3 updated, 5 new, 6 new then deleted in the same batch."""
    return [
        schema("orders", DELETABLE, ["id"]),
        record("orders", {"id": 2, "name": "order 2", "_sdc_deleted_at": DELETED_AT}),
        record("orders", {"id": 3, "name": "changed 3", "_sdc_deleted_at": None}),
        record("orders", {"id": 5, "name": "order 5"}),
        record("orders", {"id": 6, "name": "order 6"}),
        record("orders", {"id": 6, "name": "order 6", "_sdc_deleted_at": DELETED_AT}),
    ]


def test_hard_delete_removes_the_rows_of_deleted_keys(load, query) -> None:
    load([schema("orders", DELETABLE, ["id"]), *orders(range(1, 5))])

    load(deletes_batch(), hard_delete=True)

    assert query("SELECT id, name, _sdc_deleted_at FROM {s}.orders ORDER BY id") == [
        (1, "order 1", None),
        (3, "changed 3", None),
        (4, "order 4", None),
        (5, "order 5", None),
    ]


def test_hard_delete_of_an_append_only_stream_removes_every_row_of_the_key(load, query) -> None:
    load([schema("orders", DELETABLE, ["id"]), *orders([1, 2, 2, 3])], load_method="append-only")

    load(deletes_batch(), hard_delete=True, load_method="append-only")

    assert query("SELECT id, name FROM {s}.orders ORDER BY id, name") == [
        (1, "order 1"),
        (3, "changed 3"),
        (3, "order 3"),
        (5, "order 5"),
    ]


def test_soft_delete_keeps_the_rows_with_deleted_at_filled(load, query) -> None:
    load([schema("orders", DELETABLE, ["id"]), *orders(range(1, 5))])

    load(deletes_batch())

    deleted = dt.datetime(2024, 6, 1, tzinfo=UTC)
    assert query("SELECT id, name, _sdc_deleted_at FROM {s}.orders ORDER BY id") == [
        (1, "order 1", None),
        (2, "order 2", deleted),
        (3, "changed 3", None),
        (4, "order 4", None),
        (5, "order 5", None),
        (6, "order 6", deleted),
    ]


# --- STATE and failures --------------------------------------------------------------------------


def test_state_is_written_only_after_its_rows_are_committed(
    config: dict[str, Any], tmp_path: Path, query
) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({**config, "batch_size_rows": 500}))
    process = subprocess.Popen(
        [*TARGET, "--config", str(config_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        # 300 rows and their STATE, then 200 more: the 500th fills the batch, which is committed and
        # only then may that STATE come out. Then 100 rows and a STATE that must not come out (its
        # rows are still buffered). Input stays open, so nothing else drains.
        process.stdin.write(lines([schema("orders", ORDERS, ["id"]), *orders(range(1, 301))]))
        process.stdin.write(lines([state({"rows": 300}), *orders(range(301, 501))]))
        process.stdin.write(lines([*orders(range(501, 601)), state({"rows": 600})]))
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "no STATE within 60 s"
        emitted = json.loads(process.stdout.readline())
        more, _, _ = select.select([process.stdout], [], [], 1)
        process.send_signal(signal.SIGKILL)  # no chance to write anything more
    finally:
        process.kill()
        process.wait()

    assert emitted == {"rows": 300}
    assert not more, "a STATE came out before its rows were committed"
    assert query("SELECT count(*), count(DISTINCT id), max(id) FROM {s}.orders") == [(500, 500, 500)]


@pytest.mark.parametrize(
    ("column", "bad_value", "expected"),
    [
        ("id", "abc", "BIGINT"),  # refused while building the batch
        ("created_at", "not a time", "TIMESTAMPTZ"),  # refused by PostgreSQL's cast into the table
        ("name", "nul \u0000 inside", "invalid byte sequence"),  # refused by PostgreSQL's COPY
    ],
)
def test_bad_value_fails_the_batch_naming_stream_and_column(
    run_target, query, column: str, bad_value: str, expected: str
) -> None:
    bad_batch = orders(range(4, 7))
    bad_batch[1]["record"][column] = bad_value
    messages = [
        schema("orders", ORDERS, ["id"]),
        *orders(range(1, 4)),
        state({"bookmarks": {"orders": {"id": 3}}}),
        *bad_batch,
        state({"bookmarks": {"orders": {"id": 6}}}),
    ]

    result = run_target(messages, batch_size_rows=3)

    assert result.returncode == 1
    error = result.stderr
    assert f"stream 'orders', column '{column}': cannot load {bad_value!r}" in error
    assert expected in error
    assert "record 2 of the batch" in error
    assert "Traceback" not in error
    # The first batch was committed and its STATE emitted; nothing of the bad batch was written.
    assert states(result.stdout) == [{"bookmarks": {"orders": {"id": 3}}}]
    assert query("SELECT count(*), count(DISTINCT id), max(id) FROM {s}.orders") == [(3, 3, 3)]


def test_record_without_its_key_fails_naming_the_key(load, query) -> None:
    messages = [
        schema("orders", ORDERS, ["id"]),
        *orders(range(1, 3)),
        record("orders", {"id": None, "name": "no key"}),
    ]

    with pytest.raises(LoadError, match=r"stream 'orders', column 'id': a record has no value \(record 3 "):
        load(messages)

    assert query("SELECT count(*) FROM pg_tables WHERE schemaname = '{s}'") == [(0,)]


def test_nul_characters_are_removed_when_asked(load, query) -> None:
    properties = {**ORDERS, "doc": {"type": ["object", "null"]}}
    messages = [
        schema("orders", properties, ["id"]),
        record("orders", {"id": 1, "name": "a\u0000b", "doc": {"k\u0000": "v\u0000", "n": 1}}),
    ]

    load(messages, sanitize_null_text_characters=True)

    assert query("SELECT name, doc::text FROM {s}.orders") == [("ab", '{"k": "v", "n": 1}')]


# --- config --------------------------------------------------------------------------------------


def test_sqlalchemy_url_config_connects_like_the_separate_keys(load, query, pg_schema: str) -> None:
    url = "postgresql+psycopg://postgres:@127.0.0.1:5432/test?application_name=elt-test"

    load([schema("orders", ORDERS, ["id"]), *orders(range(1, 4))], sqlalchemy_url=url, host="nowhere.invalid")

    assert query("SELECT count(*), count(DISTINCT id) FROM {s}.orders") == [(3, 3)]


def test_bad_sqlalchemy_url_is_reported_without_its_password(config: dict[str, Any]) -> None:
    with pytest.raises(EltError, match="sqlalchemy_url") as failure:
        TargetPostgres(config={**config, "sqlalchemy_url": "mysql://me:s3cret-pw@host/db"})

    assert "s3cret-pw" not in str(failure.value)


def test_pipelinewise_keys_are_accepted(load, query, config: dict[str, Any]) -> None:
    keys = {k: v for k, v in config.items() if k != "database"}

    load(
        [schema("src-orders", ORDERS, ["id"]), *[{**r, "stream": "src-orders"} for r in orders(range(1, 3))]],
        **keys,
        dbname="test",
        add_metadata_columns=True,
        schema_mapping={"src": {"target_schema": config["default_target_schema"]}},
    )

    assert query("SELECT count(*), count(_sdc_extracted_at IS NULL) FROM {s}.orders") == [(2, 2)]


# --- the fast path: Parquet BATCH messages -------------------------------------------------------

EVENTS = {
    "id": {"type": "integer"},
    "amount": {"type": ["number", "null"]},
    "created_at": {"type": ["string", "null"], "format": "date-time"},
    "payload": {"type": ["object", "null"]},
    "qty": {"type": ["integer", "null"]},
    "blob": {"type": ["string", "null"]},
    "seen_on": {"type": ["string", "null"], "format": "date"},
}


def events_file(path: Path, ids: range, note: str = "") -> Path:
    base = dt.datetime(2024, 1, 1, tzinfo=UTC)
    table = pa.Table.from_arrays(
        [
            pa.array(list(ids), pa.int64()),
            pa.array([Decimal(i) / 100 - 1 for i in ids], pa.decimal128(12, 2)),
            pa.array(
                [base + dt.timedelta(seconds=i, microseconds=7) for i in ids], pa.timestamp("us", tz="UTC")
            ),
            pa.array([json.dumps({"n": i, "note": note}) for i in ids], pa.string()),
            pa.array([i % 7 for i in ids], pa.int32()),
            pa.array([bytes([i % 256, 0]) for i in ids], pa.binary()),
            pa.array([f"2024-02-{1 + i % 28:02d}" for i in ids], pa.string()),  # a date sent as text
        ],
        schema=pa.schema(
            [
                pa.field("id", pa.int64()),
                pa.field("amount", pa.decimal128(12, 2)),
                pa.field("created_at", pa.timestamp("us", tz="UTC")),
                pa.field("payload", pa.string(), metadata={"elt.json": "1"}),
                pa.field("qty", pa.int32()),
                pa.field("blob", pa.binary()),
                pa.field("seen_on", pa.string()),
            ]
        ),
    )
    pq.write_table(table, path, compression="zstd")
    return path


def batch_message(*paths: Path) -> dict:
    return {
        "type": "BATCH",
        "stream": "public-events",
        "encoding": {"format": "parquet", "compression": "none"},
        "manifest": [path.as_uri() for path in paths],
    }


def test_parquet_batch_loads_exact_types_and_deletes_its_files(
    run_target, query, column_types, tmp_path
) -> None:
    first = events_file(tmp_path / "events-1.parquet", range(1, 40_001))
    # One BATCH message, two files: one transaction; key 40000 is in both, the second file's wins.
    second = events_file(tmp_path / "events-2.parquet", range(40_000, 50_001), note="second")
    messages = [
        schema("public-events", EVENTS, ["id"]),
        batch_message(first, second),
        state({"bookmarks": {"public-events": {"id": 50_000}}}),
    ]

    result = run_target(messages)

    assert result.returncode == 0, result.stderr
    assert states(result.stdout) == [{"bookmarks": {"public-events": {"id": 50_000}}}]
    assert not first.exists() and not second.exists()
    assert column_types("public_events") == {
        "id": "bigint",
        "amount": "numeric(12,2)",
        "created_at": "timestamp with time zone",
        "payload": "jsonb",
        "qty": "integer",
        "blob": "bytea",
        "seen_on": "date",
        **METADATA_TYPES,
    }
    assert query(
        "SELECT count(*), count(DISTINCT id), sum(amount), min(amount), max(created_at), sum(qty) "
        "FROM {s}.public_events"
    ) == [
        (
            50_000,
            50_000,
            sum(Decimal(i) / 100 - 1 for i in range(1, 50_001)),
            Decimal("-0.99"),
            dt.datetime(2024, 1, 1, 13, 53, 20, 7, tzinfo=UTC),
            sum(i % 7 for i in range(1, 50_001)),
        )
    ]
    assert query(
        "SELECT payload, blob, seen_on FROM {s}.public_events WHERE id IN (39999, 40000) ORDER BY id"
    ) == [
        ({"n": 39999, "note": ""}, bytes([39999 % 256, 0]), dt.date(2024, 2, 1 + 39999 % 28)),
        ({"n": 40000, "note": "second"}, bytes([40000 % 256, 0]), dt.date(2024, 2, 1 + 40000 % 28)),
    ]


def test_parquet_batch_appends_after_the_records_before_it(run_target, query, tmp_path) -> None:
    path = events_file(tmp_path / "events.parquet", range(3, 6))
    messages = [
        schema("public-events", EVENTS, ["id"]),
        record("public-events", {"id": 1, "amount": 1.5, "payload": {"a": 1}}),
        record("public-events", {"id": 3, "amount": 99}),
        batch_message(path),
        state({"bookmarks": {"public-events": {"id": 5}}}),
    ]

    result = run_target(messages, load_method="append-only")

    assert result.returncode == 0, result.stderr
    assert query("SELECT count(*), count(DISTINCT id) FROM {s}.public_events") == [(5, 4)]
    assert query("SELECT id, amount FROM {s}.public_events WHERE id IN (1, 3) ORDER BY id, amount") == [
        (1, Decimal("1.5")),
        (3, Decimal("-0.97")),
        (3, Decimal("99")),
    ]


# --- end to end through elt ----------------------------------------------------------------------


@pytest.fixture
def target_on_path(tmp_path: Path) -> dict[str, str]:
    """The environment in which `elt` finds a `target-postgres` executable.

    The console script is installed with the package; until it is, a shim runs the module.
    """
    if (BIN / "target-postgres").exists():
        return {}
    shims = tmp_path / "bin"
    shims.mkdir()
    shim = shims / "target-postgres"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m targets.target_postgres "$@"\n')
    shim.chmod(0o755)
    return {"PATH": f"{shims}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.mark.parametrize("fast_path", ["1", "parquet"])
def test_elt_sync_tap_files_into_target_postgres_is_incremental(
    tmp_path: Path, pg_schema: str, query, column_types, target_on_path: dict[str, str], fast_path: str
) -> None:
    """Through the `elt` executable, on the fast paths: in-process Arrow batches (as `elt sync` runs
    by default) and Parquet files between processes."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    csv = project / "data" / "orders.csv"
    csv.write_text(
        "id,customer,amount,updated_at\n"
        "1,ann,10.50,2024-05-01T10:00:00Z\n"
        "2,bob,20.00,2024-05-02T10:00:00Z\n"
        "3,cid,30.25,2024-05-03T10:00:00Z\n"
    )
    (project / "elt.yml").write_text(
        textwrap.dedent(
            f"""
            version: 1
            plugins:
              extractors:
                - name: tap-files
                  config:
                    files:
                      - {{entity: orders, path: data/orders.csv, keys: [id], replication_key: updated_at}}
              loaders:
                - name: target-postgres
                  config:
                    host: 127.0.0.1
                    user: postgres
                    database: test
                    default_target_schema: {pg_schema}
            """
        ).lstrip()
    )
    env = {**target_on_path, "ELT_FAST_PATH": fast_path}

    sync = ("sync", "tap-files", "target-postgres", "--format", "json")
    first = run_elt(*sync, cwd=project, env=env)
    with csv.open("a") as handle:
        handle.write("2,bob,22.00,2024-05-04T10:00:00Z\n4,dan,40.00,2024-05-04T10:00:00Z\n")
    second = run_elt(*sync, cwd=project, env=env)

    assert '"event": "fast_path"' in first.stderr
    assert json.loads(first.stdout)["streams"]["orders"]["rows"] == 3
    assert json.loads(second.stdout)["streams"]["orders"]["rows"] == 2  # 2 changed, 4 new
    assert not list(project.glob(".elt/**/*.parquet")), "the target deletes each file once committed"
    assert query("SELECT count(*), count(DISTINCT id) FROM {s}.orders") == [(4, 4)]
    assert query("SELECT id, customer, amount::float8 FROM {s}.orders ORDER BY id") == [
        (1, "ann", 10.5),
        (2, "bob", 22.0),
        (3, "cid", 30.25),
        (4, "dan", 40.0),
    ]
    # tap-files reads the CSV's decimals as float64: the fast path keeps that exact Parquet type (the
    # record path has only JSON Schema's `number`, NUMERIC).
    assert column_types("orders") == {
        "id": "bigint",
        "customer": "text",
        "amount": "double precision",
        "updated_at": "timestamp with time zone",
        **METADATA_TYPES,
    }
