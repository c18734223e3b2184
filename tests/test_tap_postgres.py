"""Specification of the built-in tap `tap-postgres`: discovery types, full and incremental syncs, views,
the Parquet fast path, and `elt sync tap-postgres target-duckdb` end to end, against real PostgreSQL."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader
from singer_sdk.exceptions import ConfigValidationError, FatalSyncError

from elt.singer import select_catalog
from taps.tap_postgres.connection import conninfo
from taps.tap_postgres.tap import TapPostgres
from tests.conftest import BIN, run_elt

UTC = dt.UTC
SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "test"}

# One column of every type the tap maps, with the JSON Schema and the Arrow type it must get.
TYPES_TABLE = """
CREATE TABLE {schema}.all_types (
    id bigint PRIMARY KEY,
    small smallint,
    whole integer,
    big bigint,
    price numeric(12,2),
    ratio numeric,
    wide numeric(40,5),
    single real,
    double double precision,
    created timestamptz,
    local timestamp,
    day date,
    at time,
    flag boolean,
    doc json,
    docb jsonb,
    ints integer[],
    words text[],
    uid uuid,
    raw bytea,
    body text,
    code varchar(8),
    letter char(2),
    span interval
)
"""
EXPECTED_SCHEMA: dict[str, dict[str, Any]] = {
    "id": {"type": "integer", "x-sql-datatype": "bigint"},
    "small": {"type": ["integer", "null"], "x-sql-datatype": "smallint"},
    "whole": {"type": ["integer", "null"], "x-sql-datatype": "integer"},
    "big": {"type": ["integer", "null"], "x-sql-datatype": "bigint"},
    "price": {"type": ["number", "null"], "x-sql-datatype": "numeric(12,2)"},
    "ratio": {"type": ["number", "null"], "x-sql-datatype": "numeric"},
    "wide": {"type": ["number", "null"], "x-sql-datatype": "numeric(40,5)"},
    "single": {"type": ["number", "null"], "x-sql-datatype": "real"},
    "double": {"type": ["number", "null"], "x-sql-datatype": "double precision"},
    "created": {"type": ["string", "null"], "format": "date-time", "x-sql-datatype": "timestamptz"},
    "local": {"type": ["string", "null"], "format": "date-time", "x-sql-datatype": "timestamp"},
    "day": {"type": ["string", "null"], "format": "date", "x-sql-datatype": "date"},
    "at": {"type": ["string", "null"], "format": "time", "x-sql-datatype": "time"},
    "flag": {"type": ["boolean", "null"], "x-sql-datatype": "boolean"},
    "doc": {"x-sql-datatype": "json"},
    "docb": {"x-sql-datatype": "jsonb"},
    "ints": {
        "type": ["array", "null"],
        "items": {"type": ["integer", "null"]},
        "x-sql-datatype": "integer[]",
    },
    "words": {"type": ["array", "null"], "items": {"type": ["string", "null"]}, "x-sql-datatype": "text[]"},
    "uid": {"type": ["string", "null"], "format": "uuid", "x-sql-datatype": "uuid"},
    "raw": {"type": ["string", "null"], "contentEncoding": "base64", "x-sql-datatype": "bytea"},
    "body": {"type": ["string", "null"], "x-sql-datatype": "text"},
    "code": {"type": ["string", "null"], "maxLength": 8, "x-sql-datatype": "varchar(8)"},
    "letter": {"type": ["string", "null"], "maxLength": 2, "x-sql-datatype": "char(2)"},
    "span": {"type": ["string", "null"], "format": "duration", "x-sql-datatype": "interval"},
}
JSON_TEXT = {"doc", "docb", "ints", "words"}
EXPECTED_ARROW = {
    "id": pa.int64(),
    "small": pa.int16(),
    "whole": pa.int32(),
    "big": pa.int64(),
    "price": pa.decimal128(12, 2),
    "ratio": pa.float64(),
    "wide": pa.decimal256(40, 5),
    "single": pa.float32(),
    "double": pa.float64(),
    "created": pa.timestamp("us", tz="UTC"),
    "local": pa.timestamp("us"),
    "day": pa.date32(),
    "at": pa.time64("us"),
    "flag": pa.bool_(),
    "uid": pa.string(),
    "raw": pa.binary(),
    "body": pa.string(),
    "code": pa.string(),
    "letter": pa.string(),
    "span": pa.string(),
    **dict.fromkeys(JSON_TEXT, pa.string()),
}
TRICKY_TEXT = 'quote " backslash \\ tab \t newline \n return \r bell \x07 é ✓ 😀'
TYPES_ROWS = [
    # ordinary values, and text that JSON must escape
    (
        1, 1, 2, 3, Decimal("1234.50"), Decimal("0.1"), Decimal("12345678901234567890123456789012345.12345"),
        1.5, 0.1, dt.datetime(2024, 1, 1, 12, 0, 0, 500000, tzinfo=UTC), dt.datetime(2024, 1, 1, 12),
        dt.date(2024, 2, 29), dt.time(13, 14, 15, 1), True, '{"a": [1, 2],\n  "b": "x"}',
        json.dumps({"k": 'v"q', "n": None, "deep": {"list": [1, "two"]}}), [1, None, 3], ["a", 'b"c', None],
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", b"\x00\xff\x10", TRICKY_TEXT, "short", "ab", "1 day 02:00:00",
    ),
    # NULL wherever it can be
    (2, *([None] * 23)),
    # extremes: the widest integers, tiny and negative numerics, dates before 1970, the last microsecond
    (
        3, -32768, -2147483648, 9223372036854775807, Decimal("-9999999999.99"), Decimal("1E-20"),
        Decimal("-0.00001"), -0.25, -1e300, dt.datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC),
        dt.datetime(1900, 1, 1), dt.date(1, 1, 1), dt.time(23, 59, 59, 999999), False, "[]", "{}", [], [],
        "00000000-0000-0000-0000-000000000000", b"", "", "", "", "-3 mons",
    ),
]  # fmt: skip


# -- the database and the tap -------------------------------------------------------------------


@pytest.fixture
def types_table(db: Callable[..., list[Any]], pg_schema: str) -> str:
    """`all_types` with three rows (ordinary, NULL and extreme values); its stream name."""
    db(TYPES_TABLE)
    placeholders = ", ".join(["%s"] * len(TYPES_ROWS[0]))
    for row in TYPES_ROWS:
        db(f"INSERT INTO {{schema}}.all_types VALUES ({placeholders})", params=row)
    return f"{pg_schema}-all_types"


@dataclass
class Sync:
    """What one run of the tap wrote."""

    messages: list[dict[str, Any]]

    def records(self, stream: str) -> list[dict[str, Any]]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream]

    def ids(self, stream: str) -> list[Any]:
        return [record["id"] for record in self.records(stream)]

    @property
    def state(self) -> dict[str, Any]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"][-1]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]


def config_for(schema: str, **extra: Any) -> dict[str, Any]:
    return {**SERVER, "filter_schemas": [schema], **extra}


def catalog_for(config: dict[str, Any], stream: str, **metadata: Any) -> dict[str, Any]:
    """The tap's catalog with only `stream` selected and `metadata` set on it, as `elt sync` makes it."""
    discovered = TapPostgres(config=config).catalog_dict
    return select_catalog(discovered, [f"{stream}.*"], metadata={stream: metadata} if metadata else None)


def sync(
    config: dict[str, Any], catalog: dict[str, Any] | None = None, state: dict[str, Any] | None = None
) -> Sync:
    """Run a sync in-process; numbers are read back as Decimal, digit for digit."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        TapPostgres(config=config, catalog=catalog, state=state).sync_all()
    return Sync([json.loads(line, parse_float=Decimal) for line in out.getvalue().splitlines()])


def source_rows(postgres_dsn: str, schema: str, table: str) -> dict[int, dict[str, Any]]:
    """The table's rows as psycopg reads them, by id: what the tap's values are compared with."""
    with psycopg.connect(postgres_dsn, row_factory=dict_row) as conn:
        conn.execute("SET TIME ZONE 'UTC'; SET IntervalStyle = 'iso_8601'")
        # json as its text, interval as ISO 8601 text: what the tap reads them as
        for name in ("json", "interval"):
            conn.adapters.register_loader(name, TextLoader)
        rows = conn.execute(f"SELECT * FROM {schema}.{table}").fetchall()
        return {row["id"]: row for row in rows}


def expected_json(name: str, value: Any) -> Any:
    """A source value in the form a RECORD carries it (numbers as Decimal, as `sync` reads them)."""
    if value is None:
        return None
    if isinstance(value, float):
        return None if not math.isfinite(value) else Decimal(repr(value))
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat(timespec="microseconds")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if name == "doc":
        return json.loads(value, parse_float=Decimal)
    if name == "uid":
        return str(value)
    return value


def expected_arrow(name: str, value: Any) -> Any:
    """A source value as the Parquet file holds it (read back with `to_pylist`)."""
    if value is None:
        return None
    if name == "single":
        return pa.array([value], pa.float32())[0].as_py()
    if name == "ratio":
        return float(value)
    if name in ("docb", "ints", "words"):
        return value  # compared with the JSON text parsed
    if name == "uid":
        return str(value)
    return value


# -- discovery ----------------------------------------------------------------------------------


def test_discovery_gives_every_column_its_exact_type(types_table: str, pg_schema: str) -> None:
    catalog = TapPostgres(config=config_for(pg_schema)).catalog_dict
    entry = next(s for s in catalog["streams"] if s["tap_stream_id"] == types_table)

    assert entry["schema"]["properties"] == EXPECTED_SCHEMA
    assert entry["key_properties"] == ["id"]
    assert entry["table_name"] == "all_types" and entry["database_name"] == "test"
    root = next(m["metadata"] for m in entry["metadata"] if m["breadcrumb"] == [])
    assert root["schema-name"] == pg_schema
    assert root["table-key-properties"] == ["id"]
    assert root["valid-replication-keys"] == [
        "id", "small", "whole", "big", "price", "ratio", "wide", "created", "local", "day",
    ]  # fmt: skip


def test_streams_are_named_schema_dash_table_and_include_views(
    db: Callable[..., list[Any]], pg_schema: str
) -> None:
    db(
        "CREATE TABLE {schema}.orders (id int PRIMARY KEY, total numeric(8,2))",
        "CREATE VIEW {schema}.big_orders AS SELECT id, total FROM {schema}.orders WHERE total > 100",
        "CREATE MATERIALIZED VIEW {schema}.order_count AS SELECT count(*) AS n FROM {schema}.orders",
    )
    catalog = TapPostgres(config=config_for(pg_schema)).catalog_dict
    entries = {entry["tap_stream_id"]: entry for entry in catalog["streams"]}

    assert set(entries) == {f"{pg_schema}-orders", f"{pg_schema}-big_orders", f"{pg_schema}-order_count"}
    assert entries[f"{pg_schema}-big_orders"]["is_view"] is True
    assert entries[f"{pg_schema}-big_orders"]["key_properties"] == []
    assert entries[f"{pg_schema}-orders"]["is_view"] is False


# -- full table ---------------------------------------------------------------------------------


def test_full_table_sync_round_trips_every_value(types_table: str, pg_schema: str, postgres_dsn: str) -> None:
    result = sync(config_for(pg_schema))
    source = source_rows(postgres_dsn, pg_schema, "all_types")

    records = result.records(types_table)
    assert [record["id"] for record in records] == [1, 2, 3]
    for record in records:
        for name, value in source[record["id"]].items():
            assert record[name] == expected_json(name, value), (record["id"], name)
    assert records[0]["body"] == TRICKY_TEXT
    assert records[0]["created"] == "2024-01-01T12:00:00.500000+00:00"
    assert records[0]["local"] == "2024-01-01T12:00:00.000000+00:00"  # a timestamp without time zone: UTC
    assert records[0]["span"] == "P1DT2H"


def test_nan_and_infinite_values_become_null(db: Callable[..., list[Any]], pg_schema: str) -> None:
    db(
        "CREATE TABLE {schema}.odd (id int PRIMARY KEY, x double precision, n numeric(6,2), t timestamptz)",
        "INSERT INTO {schema}.odd VALUES (1, 'NaN', 'NaN', 'infinity'), (2, '-Infinity', 1.5, '-infinity')",
    )
    records = sync(config_for(pg_schema)).records(f"{pg_schema}-odd")

    assert records == [
        {"id": 1, "x": None, "n": None, "t": None},
        {"id": 2, "x": None, "n": Decimal("1.50"), "t": None},
    ]


def test_deselected_columns_are_not_read(types_table: str, pg_schema: str) -> None:
    config = config_for(pg_schema)
    discovered = TapPostgres(config=config).catalog_dict
    catalog = select_catalog(discovered, [f"{types_table}.price", f"{types_table}.body"])

    records = sync(config, catalog).records(types_table)

    assert records[0] == {"id": 1, "price": Decimal("1234.50"), "body": TRICKY_TEXT}


def test_views_sync_like_tables(db: Callable[..., list[Any]], pg_schema: str) -> None:
    db(
        "CREATE TABLE {schema}.orders (id int PRIMARY KEY, total numeric(8,2))",
        "INSERT INTO {schema}.orders SELECT g, g * 50 FROM generate_series(1, 5) g",
        "CREATE VIEW {schema}.big_orders AS SELECT id, total FROM {schema}.orders WHERE total > 100",
    )
    result = sync(config_for(pg_schema))

    assert result.records(f"{pg_schema}-big_orders") == [
        {"id": 3, "total": Decimal("150.00")},
        {"id": 4, "total": Decimal("200.00")},
        {"id": 5, "total": Decimal("250.00")},
    ]


def test_stream_maps_take_singer_sdks_record_path(types_table: str, pg_schema: str) -> None:
    config = config_for(
        pg_schema, stream_maps={types_table: {"code_upper": "code.upper() if code else None", "raw": None}}
    )
    records = sync(config).records(types_table)

    assert [record["code_upper"] for record in records] == ["SHORT", None, None]
    assert "raw" not in records[0]
    assert records[0]["price"] == Decimal("1234.50")


# -- incremental --------------------------------------------------------------------------------


def events(db: Callable[..., list[Any]]) -> None:
    """`events`: ids 1-5 updated a minute apart, id 6 never (a NULL replication key)."""
    db(
        "CREATE TABLE {schema}.events (id int PRIMARY KEY, updated_at timestamptz, name text)",
        "INSERT INTO {schema}.events SELECT g, timestamptz '2024-01-01' + g * interval '1 minute', 'e' || g "
        "FROM generate_series(1, 5) g",
        "INSERT INTO {schema}.events VALUES (6, NULL, 'never updated')",
    )


def test_incremental_sync_keeps_late_rows_at_the_bookmark(
    db: Callable[..., list[Any]], pg_schema: str
) -> None:
    events(db)
    config = config_for(pg_schema)
    stream = f"{pg_schema}-events"
    catalog = catalog_for(
        config, stream, **{"replication-method": "INCREMENTAL", "replication-key": "updated_at"}
    )

    first = sync(config, catalog)
    assert first.ids(stream) == [1, 2, 3, 4, 5, 6]  # in key order; a NULL key on a full sync only
    bookmark = first.state["bookmarks"][stream]
    assert bookmark["replication_key"] == "updated_at"
    assert bookmark["replication_key_value"] == "2024-01-01T00:05:00.000000+00:00"

    db(
        "INSERT INTO {schema}.events VALUES (7, '2024-01-01 00:05:00+00', 'late, at the bookmark')",
        "INSERT INTO {schema}.events VALUES (8, '2024-01-01 00:10:00+00', 'new')",
        "UPDATE {schema}.events SET updated_at = '2024-01-01 00:20:00+00' WHERE id = 2",
    )
    second = sync(config, catalog, first.state)
    assert second.ids(stream) == [5, 7, 8, 2]  # the rows at the bookmark are read again
    assert second.state["bookmarks"][stream]["replication_key_value"] == "2024-01-01T00:20:00.000000+00:00"

    third = sync(config, catalog, second.state)
    assert third.ids(stream) == [2]


def test_incremental_by_an_integer_key(db: Callable[..., list[Any]], pg_schema: str) -> None:
    events(db)
    config = config_for(pg_schema)
    stream = f"{pg_schema}-events"
    catalog = catalog_for(config, stream, **{"replication-method": "INCREMENTAL", "replication-key": "id"})
    state = {"bookmarks": {stream: {"replication_key": "id", "replication_key_value": 4}}}

    result = sync(config, catalog, state)

    assert result.ids(stream) == [4, 5, 6]
    assert result.state["bookmarks"][stream]["replication_key_value"] == 6


def test_incremental_by_a_numeric_key_keeps_the_bookmark_exact(
    db: Callable[..., list[Any]], pg_schema: str
) -> None:
    db(
        "CREATE TABLE {schema}.readings (id int PRIMARY KEY, position numeric(30,20))",
        "INSERT INTO {schema}.readings VALUES (1, 1.5), (2, 1234567890.12345678901234567891)",
    )
    config = config_for(pg_schema)
    stream = f"{pg_schema}-readings"
    catalog = catalog_for(
        config, stream, **{"replication-method": "INCREMENTAL", "replication-key": "position"}
    )

    first = sync(config, catalog)
    # as text: a JSON number would come back as a float, rounded above the row at the bookmark
    assert first.state["bookmarks"][stream]["replication_key_value"] == "1234567890.12345678901234567891"
    assert sync(config, catalog, first.state).ids(stream) == [2]


def test_stream_options_and_max_record_count_limit_the_rows(
    db: Callable[..., list[Any]], pg_schema: str
) -> None:
    events(db)
    stream = f"{pg_schema}-events"
    options = {stream: {"custom_where_clauses": ["id % 2 = 1", "name IS NOT NULL"]}}

    assert sync(config_for(pg_schema, stream_options=options)).ids(stream) == [1, 3, 5]
    assert len(sync(config_for(pg_schema, max_record_count=4)).ids(stream)) == 4


def test_log_based_views_and_keyless_incremental_are_refused(
    db: Callable[..., list[Any]], pg_schema: str
) -> None:
    events(db)
    db("CREATE VIEW {schema}.recent AS SELECT * FROM {schema}.events")
    config = config_for(pg_schema)
    stream, view = f"{pg_schema}-events", f"{pg_schema}-recent"

    # LOG_BASED itself: tests/test_tap_postgres_logical.py
    with pytest.raises(FatalSyncError, match=f"'{view}' is LOG_BASED, but {pg_schema}.recent is not a table"):
        sync(config, catalog_for(config, view, **{"replication-method": "LOG_BASED"}))
    with pytest.raises(FatalSyncError, match="no replication key; set `replication-key`.*updated_at"):
        sync(config, catalog_for(config, stream, **{"replication-method": "INCREMENTAL"}))


def test_sqlalchemy_url_and_ssl_keys_are_meltanolabs_ones(
    db: Callable[..., list[Any]], pg_schema: str, tmp_path: Path
) -> None:
    events(db)
    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/test?sslmode=disable"
    assert sync({"sqlalchemy_url": url, "filter_schemas": [pg_schema]}).ids(f"{pg_schema}-events") == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]

    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    info = conninfo_to_dict(
        conninfo(
            {
                **SERVER,
                "password": "s3cret",
                "ssl_enable": True,
                "ssl_mode": "verify-full",
                "ssl_certificate_authority": pem,
                "ssl_storage_directory": str(tmp_path / "certs"),
            }
        )
    )
    assert info["sslmode"] == "verify-full" and info["password"] == "s3cret"
    assert Path(info["sslrootcert"]).read_text() == pem  # a certificate given as text is written to a file


def test_an_unreachable_server_is_reported() -> None:
    with pytest.raises(ConfigValidationError, match="cannot connect to PostgreSQL"):
        TapPostgres(config={**SERVER, "port": 1}).catalog_dict  # noqa: B018


# -- the fast path ------------------------------------------------------------------------------


def batch_config(root: Path, size: int) -> dict[str, Any]:
    return {
        "encoding": {"format": "parquet", "compression": "zstd"},
        "storage": {"root": root.as_uri(), "prefix": ""},
        "batch_size": size,
    }


def test_batch_files_have_exact_arrow_types_and_every_row(
    types_table: str, pg_schema: str, postgres_dsn: str, tmp_path: Path
) -> None:
    result = sync(config_for(pg_schema, batch_config=batch_config(tmp_path, 2)))
    source = source_rows(postgres_dsn, pg_schema, "all_types")

    batches = [m for m in result.of_type("BATCH") if m["stream"] == types_table]
    assert not result.of_type("RECORD")
    assert [len(m["manifest"]) for m in batches] == [1, 1]  # 2 rows, then 1
    table = pa.concat_tables(pq.read_table(Path(m["manifest"][0].removeprefix("file://"))) for m in batches)
    assert {field.name: field.type for field in table.schema} == EXPECTED_ARROW
    assert table.column_names == list(EXPECTED_SCHEMA)  # the SCHEMA message's order
    assert {name for name in table.column_names if table.schema.field(name).metadata} == JSON_TEXT
    assert all(table.schema.field(name).metadata == {b"elt.json": b"1"} for name in JSON_TEXT)
    rows = table.to_pylist()
    assert [row["id"] for row in rows] == [1, 2, 3]
    for row in rows:
        for name, value in source[row["id"]].items():
            held = json.loads(row[name]) if name in JSON_TEXT and row[name] is not None else row[name]
            if name == "doc":
                value = json.loads(value) if value is not None else None
            assert held == expected_arrow(name, value), (row["id"], name)


def test_each_batch_is_followed_by_the_state_of_the_rows_sent(
    db: Callable[..., list[Any]], pg_schema: str, tmp_path: Path
) -> None:
    events(db)
    config = config_for(pg_schema, batch_config=batch_config(tmp_path, 2))
    stream = f"{pg_schema}-events"
    catalog = catalog_for(
        config, stream, **{"replication-method": "INCREMENTAL", "replication-key": "updated_at"}
    )

    result = sync(config, catalog)

    kinds = [m["type"] for m in result.messages if m["type"] in ("BATCH", "STATE")]
    assert kinds == ["BATCH", "STATE", "BATCH", "STATE", "BATCH", "STATE"]  # 2 + 2 + 2 rows
    bookmarks = [
        m["value"]["bookmarks"][stream].get("replication_key_value") for m in result.of_type("STATE")
    ]
    # the NULL key (last) does not move the bookmark
    assert bookmarks == [
        "2024-01-01T00:02:00.000000+00:00",
        "2024-01-01T00:04:00.000000+00:00",
        "2024-01-01T00:05:00.000000+00:00",
    ]
    files = [Path(m["manifest"][0].removeprefix("file://")) for m in result.of_type("BATCH")]
    assert [pq.read_table(f).column("id").to_pylist() for f in files] == [[1, 2], [3, 4], [5, 6]]


def test_batches_end_at_batch_size_bytes_as_well_as_rows(
    db: Callable[..., list[Any]], pg_schema: str, tmp_path: Path
) -> None:
    db(
        "CREATE TABLE {schema}.docs (id int PRIMARY KEY, body text)",
        "INSERT INTO {schema}.docs SELECT g, repeat('x', 1000) FROM generate_series(1, 2000) g",
    )
    config = {**config_for(pg_schema, batch_config=batch_config(tmp_path, 100_000))}
    config["batch_size_bytes"] = 100_000  # about 100 rows of 1 kB
    result = sync(config, catalog_for(config, f"{pg_schema}-docs"))

    files = [Path(m["manifest"][0].removeprefix("file://")) for m in result.of_type("BATCH")]
    rows = [pq.read_table(f).num_rows for f in files]
    assert sum(rows) == 2000
    assert len(rows) >= 15 and max(rows) <= 150  # not one file of 2,000 rows


# -- end to end ---------------------------------------------------------------------------------


@pytest.fixture
def tap_executable(tmp_path: Path) -> str | None:
    """None when `tap-postgres` is installed next to elt; else a script running the package."""
    if (BIN / "tap-postgres").exists():
        return None
    script = tmp_path / "bin" / "tap-postgres"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\nexec "{BIN / "python"}" -m taps.tap_postgres "$@"\n')
    script.chmod(0o755)
    return str(script)


# The fast paths (in-process Arrow, Parquet files) keep the source types; the record path has JSON Schema's.
PATHS = {
    "fast path": ({}, ("INTEGER", "DECIMAL(12,2)", "TIMESTAMP WITH TIME ZONE")),
    "parquet path": ({"ELT_FAST_PATH": "parquet"}, ("INTEGER", "DECIMAL(12,2)", "TIMESTAMP WITH TIME ZONE")),
    "record path": ({"ELT_FAST_PATH": "0"}, ("BIGINT", "DOUBLE", "TIMESTAMP WITH TIME ZONE")),
}


@pytest.mark.parametrize("path", PATHS)
def test_elt_sync_into_duckdb_loads_new_rows_and_late_ties_once(
    db: Callable[..., list[Any]], pg_schema: str, tmp_path: Path, tap_executable: str | None, path: str
) -> None:
    env, column_types = PATHS[path]
    db(
        "CREATE TABLE {schema}.customers (id int PRIMARY KEY, updated_at timestamptz NOT NULL, "
        "name text, balance numeric(12,2))",
        "INSERT INTO {schema}.customers SELECT g, timestamptz '2024-01-01' + (g / 10) * interval '1 day', "
        "'c' || g, g * 1.25 FROM generate_series(1, 50) g",
    )
    stream = f"{pg_schema}-customers"
    project = tmp_path / "project"
    project.mkdir()
    extractor: dict[str, Any] = {
        "name": "tap-postgres",
        "config": config_for(pg_schema),
        "select": [f"{stream}.*"],
        "metadata": {stream: {"replication-method": "INCREMENTAL", "replication-key": "updated_at"}},
    }
    if tap_executable:
        extractor["executable"] = tap_executable
    loader = {"name": "target-duckdb", "config": {"path": "warehouse.duckdb"}}
    plugins = {"extractors": [extractor], "loaders": [loader]}
    (project / "elt.yml").write_text(yaml.safe_dump({"version": 1, "plugins": plugins}, sort_keys=False))
    table = f"tap_postgres.{stream.replace('-', '_')}"

    run_elt("sync", "tap-postgres", "target-duckdb", cwd=project, env=env, timeout=120)
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as warehouse:
        assert warehouse.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchone() == (50, 50)
        assert warehouse.execute(f"SELECT sum(balance) FROM {table}").fetchone() == (Decimal("1593.75"),)
        types = dict(warehouse.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())
        assert (types["id"], types["balance"], types["updated_at"]) == column_types

    # new rows, a changed row, and a late row with the bookmark's value (id 50 has the greatest)
    db(
        "INSERT INTO {schema}.customers SELECT g, '2024-02-01', 'new' || g, 0 FROM generate_series(51, 60) g",
        "INSERT INTO {schema}.customers VALUES (61, '2024-01-06', 'late tie', 0)",
        "UPDATE {schema}.customers SET name = 'changed', updated_at = '2024-03-01' WHERE id = 7",
    )
    run_elt("sync", "tap-postgres", "target-duckdb", cwd=project, env=env, timeout=120)
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as warehouse:
        assert warehouse.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchone() == (61, 61)
        assert warehouse.execute(f"SELECT name FROM {table} WHERE id IN (7, 61) ORDER BY id").fetchall() == [
            ("changed",),
            ("late tie",),
        ]
