"""Specification of the built-in tap `tap-mysql`: discovery types, full and incremental syncs, the
Parquet fast path, and `elt sync tap-mysql target-duckdb` end to end, against a real MariaDB/MySQL."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import io
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pymysql
import pytest
import yaml
from singer_sdk.exceptions import FatalSyncError, InvalidReplicationKeyException, TapStreamConnectionFailure

from elt.singer import select_catalog
from taps.tap_mysql.tap import TapMySQL, selected_databases
from tests.conftest import BIN, IN_CI, run_elt

SERVER = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
UTC = dt.UTC

# Every column type the tap maps, with the JSON Schema property discovery must give it.
TYPES_TABLE = """
CREATE TABLE all_types (
    id INT NOT NULL PRIMARY KEY,
    flag TINYINT(1),
    ti TINYINT,
    tu TINYINT UNSIGNED,
    si SMALLINT,
    mu MEDIUMINT UNSIGNED,
    i INT,
    iu INT UNSIGNED,
    bi BIGINT,
    bu BIGINT UNSIGNED,
    price DECIMAL(12,2),
    big DECIMAL(30,0),
    f FLOAT,
    d DOUBLE,
    bit1 BIT(1),
    bits BIT(8),
    y YEAR,
    created DATETIME(6),
    stamp TIMESTAMP(3) NULL,
    day DATE,
    at TIME(6),
    doc JSON,
    name VARCHAR(20) NOT NULL DEFAULT '',
    body TEXT,
    size ENUM('s','m','l'),
    tags SET('a','b','c'),
    bin BINARY(4),
    vbin VARBINARY(10),
    blob_ BLOB,
    shape GEOMETRY
)
"""
EXPECTED_SCHEMA: dict[str, dict[str, Any]] = {
    "id": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "flag": {"type": ["boolean", "null"]},
    "ti": {"type": ["integer", "null"], "minimum": -128, "maximum": 127},
    "tu": {"type": ["integer", "null"], "minimum": 0, "maximum": 255},
    "si": {"type": ["integer", "null"], "minimum": -32768, "maximum": 32767},
    "mu": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**24 - 1},
    "i": {"type": ["integer", "null"], "minimum": -(2**31), "maximum": 2**31 - 1},
    "iu": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**32 - 1},
    "bi": {"type": ["integer", "null"], "minimum": -(2**63), "maximum": 2**63 - 1},
    "bu": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**64 - 1},
    "price": {"type": ["number", "null"], "multipleOf": 0.01, "x-sql-datatype": "decimal(12,2)"},
    "big": {"type": ["number", "null"], "multipleOf": 1, "x-sql-datatype": "decimal(30,0)"},
    "f": {"type": ["number", "null"]},
    "d": {"type": ["number", "null"]},
    "bit1": {"type": ["boolean", "null"]},
    "bits": {"type": ["integer", "null"], "minimum": 0, "maximum": 255},
    "y": {"type": ["integer", "null"]},
    "created": {"type": ["string", "null"], "format": "date-time"},
    "stamp": {"type": ["string", "null"], "format": "date-time"},
    "day": {"type": ["string", "null"], "format": "date"},
    "at": {"type": ["string", "null"], "format": "time"},
    "doc": {},
    "name": {"type": "string", "maxLength": 20},
    "body": {"type": ["string", "null"]},
    "size": {"type": ["string", "null"]},
    "tags": {"type": ["string", "null"]},
    "bin": {"type": ["string", "null"], "contentEncoding": "base64"},
    "vbin": {"type": ["string", "null"], "contentEncoding": "base64"},
    "blob_": {"type": ["string", "null"], "contentEncoding": "base64"},
    "shape": {"type": ["string", "null"], "contentEncoding": "base64"},
}
EXPECTED_ARROW = {
    "id": pa.int32(),
    "flag": pa.bool_(),
    "ti": pa.int8(),
    "tu": pa.uint8(),
    "si": pa.int16(),
    "mu": pa.uint32(),
    "i": pa.int32(),
    "iu": pa.uint32(),
    "bi": pa.int64(),
    "bu": pa.uint64(),
    "price": pa.decimal128(12, 2),
    "big": pa.decimal128(30, 0),
    "f": pa.float32(),
    "d": pa.float64(),
    "bit1": pa.bool_(),
    "bits": pa.uint8(),
    "y": pa.int16(),
    "created": pa.timestamp("us"),
    "stamp": pa.timestamp("us", tz="UTC"),
    "day": pa.date32(),
    "at": pa.time64("us"),
    "doc": pa.string(),
    "name": pa.string(),
    "body": pa.string(),
    "size": pa.string(),
    "tags": pa.string(),
    "bin": pa.binary(),
    "vbin": pa.binary(),
    "blob_": pa.binary(),
    "shape": pa.binary(),
}
TYPES_ROWS = [
    # the extremes of every type
    "(1, 1, -128, 255, -32768, 16777215, -2147483648, 4294967295, -9223372036854775808, "
    "18446744073709551615, -9999999999.99, 123456789012345678901234567890, 1.5, 0.1 + 0.2, b'1', "
    "b'11111111', 2155, '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999', '1000-01-01', "
    "'23:59:59.999999', '{\"a\": [1, {\"b\": null}], \"c\": \"é\"}', 'héllo 😀', REPEAT('long ', 5000), "
    "'l', 'a,c', X'00FF0A00', X'', UNHEX(REPEAT('00FF7F80', 64)), ST_GeomFromText('POINT(1 2)'))",
    # NULL wherever it can be
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "NULL, NULL, NULL, NULL, NULL, '', NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    # zeros and small values
    "(3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.01, 0, -0.25, -1e300, b'0', b'00000000', 1901, "
    "'1000-01-01 00:00:00', '1970-01-01 00:00:01', '2024-02-29', '00:00:00', '[]', 'x', '', 's', '', "
    "X'00000000', X'00', X'', ST_GeomFromText('LINESTRING(0 0, 1 1)'))",
]


# -- the server and the tap ---------------------------------------------------------------------


def _server_up() -> bool:
    try:
        pymysql.connect(**SERVER, connect_timeout=3).close()
        return True
    except pymysql.err.MySQLError:
        return False


@pytest.fixture(scope="session")
def mysql_server() -> dict[str, Any]:
    """The local MariaDB/MySQL at 127.0.0.1:3306 (root, no password); started if it is down."""
    if not _server_up() and Path("/usr/sbin/mariadbd").exists() and shutil.which("start-stop-daemon"):
        subprocess.run(
            ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"],
            capture_output=True, check=False,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not _server_up() and time.monotonic() < deadline:
            time.sleep(0.5)
    if not _server_up():
        if IN_CI:
            pytest.fail("MariaDB/MySQL at 127.0.0.1:3306 is not answering (CI must not skip)")
        pytest.skip("MariaDB/MySQL at 127.0.0.1:3306 is not answering")
    return dict(SERVER)


@pytest.fixture(scope="module")
def database(mysql_server: dict[str, Any]) -> Iterator[str]:
    """A database of its own for this module's tests, dropped afterwards."""
    name = f"elt_test_{uuid.uuid4().hex[:10]}"
    execute(f"CREATE DATABASE `{name}`")
    yield name
    execute(f"DROP DATABASE IF EXISTS `{name}`")


def execute(*statements: str, database: str | None = None) -> list[tuple[Any, ...]]:
    """Run statements on the test server; the rows of the last one."""
    with pymysql.connect(**SERVER, database=database, autocommit=True) as connection:
        cursor = connection.cursor()
        cursor.execute("SET time_zone = '+00:00'")
        for statement in statements:
            cursor.execute(statement)
        return list(cursor.fetchall())


@pytest.fixture(scope="module")
def types_table(database: str) -> str:
    """`all_types`: one column of every type, three rows of extreme, NULL and zero values."""
    execute(TYPES_TABLE, f"INSERT INTO all_types VALUES {', '.join(TYPES_ROWS)}", database=database)
    execute("CREATE VIEW all_types_view AS SELECT id, price FROM all_types", database=database)
    return f"{database}-all_types"


@dataclass
class Sync:
    """What one run of the tap wrote."""

    messages: list[dict[str, Any]]

    def records(self, stream: str) -> list[dict[str, Any]]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream]

    @property
    def state(self) -> dict[str, Any]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"][-1]


def config_for(database: str, **extra: Any) -> dict[str, Any]:
    return {**SERVER, "filter_dbs": database, **extra}


def catalog_for(config: dict[str, Any], stream: str, **metadata: Any) -> dict[str, Any]:
    """The tap's catalog with only `stream` selected, and `metadata` set on it, as `elt sync` does."""
    discovered = TapMySQL(config=config).catalog_dict
    return select_catalog(discovered, [f"{stream}.*"], metadata={stream: metadata} if metadata else None)


def sync(config: dict[str, Any], catalog: dict[str, Any], state: dict[str, Any] | None = None) -> Sync:
    """Run a sync in-process; numbers are read back as Decimal, digit for digit."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        TapMySQL(config=config, catalog=catalog, state=state).sync_all()
    return Sync([json.loads(line, parse_float=Decimal) for line in out.getvalue().splitlines()])


def source_rows(database: str, table: str) -> dict[int, dict[str, Any]]:
    """The table's rows as PyMySQL reads them, by id: what the tap's values are compared with."""
    with pymysql.connect(**SERVER, database=database, cursorclass=pymysql.cursors.DictCursor) as conn:
        cursor = conn.cursor()
        cursor.execute("SET time_zone = '+00:00'")
        cursor.execute(f"SELECT * FROM `{table}`")
        return {row["id"]: row for row in cursor.fetchall()}


def as_time(value: dt.timedelta) -> dt.time:
    return (dt.datetime.min + value).time()


def expected_json(name: str, value: Any) -> Any:
    """A source value in the form a RECORD carries it (numbers as Decimal, as `sync` reads them)."""
    if value is None:
        return None
    if name in ("flag",):
        return bool(value)
    if name == "bit1":
        return value != b"\x00"
    if name == "bits":
        return int.from_bytes(value, "big")
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=UTC).isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return as_time(value).isoformat(timespec="microseconds")
    if name == "doc":
        return json.loads(value, parse_float=Decimal)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def expected_arrow(name: str, value: Any) -> Any:
    """A source value as the Parquet file holds it (read back with `to_pylist`)."""
    if value is None:
        return None
    if name in ("flag", "bit1", "bits"):
        return expected_json(name, value)
    if name == "f":
        return pa.array([value], pa.float32())[0].as_py()
    if name == "stamp":
        return value.replace(tzinfo=UTC)
    if isinstance(value, dt.timedelta):
        return as_time(value)
    return value


# -- discovery ----------------------------------------------------------------------------------


def test_discovery_gives_every_column_its_exact_type(database: str, types_table: str) -> None:
    catalog = TapMySQL(config=config_for(database)).catalog_dict
    streams = {entry["tap_stream_id"]: entry for entry in catalog["streams"]}

    assert set(streams) == {f"{database}-all_types", f"{database}-all_types_view"}
    entry = streams[types_table]
    assert entry["schema"]["properties"] == EXPECTED_SCHEMA
    assert list(entry["schema"]["properties"]) == list(EXPECTED_SCHEMA)  # the table's column order
    assert entry["key_properties"] == ["id"]
    assert (entry["database_name"], entry["table_name"], entry["is_view"]) == (database, "all_types", False)
    metadata = {tuple(item["breadcrumb"]): item["metadata"] for item in entry["metadata"]}
    root = metadata[()]
    assert root["replication-method"] == "FULL_TABLE"
    assert root["table-key-properties"] == ["id"]
    assert root["valid-replication-keys"] == [
        "id", "ti", "tu", "si", "mu", "i", "iu", "bi", "bu", "price", "big", "f", "d", "y",
        "created", "stamp", "day", "at", "name",
    ]  # fmt: skip
    assert (root["database-name"], root["is-view"]) == (database, False)
    assert metadata[("properties", "price")]["sql-datatype"] == "decimal(12,2)"
    assert metadata[("properties", "flag")]["sql-datatype"] == "tinyint(1)"
    assert metadata[("properties", "id")]["inclusion"] == "automatic"

    view = streams[f"{database}-all_types_view"]
    assert view["is_view"] is True and view["key_properties"] == []
    assert view["schema"]["properties"]["price"] == EXPECTED_SCHEMA["price"]


def test_filter_dbs_and_filter_schemas_name_the_databases_read() -> None:
    assert selected_databases({"filter_dbs": "shop, crm,"}) == ["shop", "crm"]
    assert selected_databases({"filter_dbs": ["shop"], "filter_schemas": ["crm", "shop"]}) == ["shop", "crm"]
    assert selected_databases({}) == []


# -- full table ---------------------------------------------------------------------------------


def test_full_table_sync_round_trips_every_value(database: str, types_table: str) -> None:
    config = config_for(database)
    result = sync(config, catalog_for(config, types_table))

    records = {record["id"]: record for record in result.records(types_table)}
    source = source_rows(database, "all_types")
    assert len(records) == len(source) == 3
    for key, row in source.items():
        for name, value in row.items():
            assert records[key][name] == expected_json(name, value), (key, name)
    schema = next(m for m in result.messages if m["type"] == "SCHEMA")
    assert schema["key_properties"] == ["id"]
    assert list(schema["schema"]["properties"]) == list(EXPECTED_SCHEMA)


def test_deselected_columns_are_not_read(database: str, types_table: str) -> None:
    config = config_for(database)
    catalog = select_catalog(TapMySQL(config=config).catalog_dict, [f"{types_table}.price"])

    records = sync(config, catalog).records(types_table)

    assert sorted(records, key=lambda r: r["id"]) == [
        {"id": 1, "price": Decimal("-9999999999.99")},
        {"id": 2, "price": None},
        {"id": 3, "price": Decimal("0.01")},
    ]


def test_zero_dates_are_read_as_null(database: str) -> None:
    execute(
        "SET SESSION sql_mode = ''",
        "CREATE TABLE zero_dates (id INT PRIMARY KEY, day DATE NOT NULL, at DATETIME NOT NULL)",
        "INSERT INTO zero_dates VALUES (1, '0000-00-00', '0000-00-00 00:00:00'), (2, '2024-05-06', "
        "'2024-05-06 07:08:09')",
        database=database,
    )
    config = config_for(database)
    stream = f"{database}-zero_dates"

    records = sync(config, catalog_for(config, stream)).records(stream)

    assert records == [
        {"id": 1, "day": None, "at": None},
        {"id": 2, "day": "2024-05-06", "at": "2024-05-06T07:08:09.000000+00:00"},
    ]


def test_a_time_outside_a_day_stops_the_sync_naming_the_column(database: str) -> None:
    execute(
        "CREATE TABLE durations (id INT PRIMARY KEY, took TIME)",
        "INSERT INTO durations VALUES (1, '100:00:00')",
        database=database,
    )
    config = config_for(database)
    stream = f"{database}-durations"

    with pytest.raises(FatalSyncError, match=r"column 'took' \(time\): 100:00:00 is not a time of day"):
        sync(config, catalog_for(config, stream))


def test_an_unreachable_server_is_reported_with_its_address() -> None:
    config = {"host": "127.0.0.1", "port": 1, "user": "root"}
    with pytest.raises(TapStreamConnectionFailure, match=r"cannot connect to root@127\.0\.0\.1:1"):
        TapMySQL(config=config).catalog_dict  # noqa: B018


# -- incremental --------------------------------------------------------------------------------


def test_incremental_sync_reads_new_rows_and_late_rows_at_the_bookmark(database: str) -> None:
    execute(
        "CREATE TABLE events (id INT PRIMARY KEY, updated_at DATETIME(6) NOT NULL, note VARCHAR(20))",
        "INSERT INTO events VALUES (1, '2024-01-01 10:00:00', 'a'), (2, '2024-01-01 11:00:00', 'b'), "
        "(3, '2024-01-01 12:00:00.5', 'c'), (4, '2024-01-01 12:00:00.5', 'd')",
        database=database,
    )
    config = config_for(database)
    stream = f"{database}-events"
    catalog = catalog_for(
        config, stream, **{"replication-method": "INCREMENTAL", "replication-key": "updated_at"}
    )

    first = sync(config, catalog)
    assert [r["id"] for r in first.records(stream)] == [1, 2, 3, 4]
    bookmark = first.state["bookmarks"][stream]
    assert bookmark["replication_key"] == "updated_at"
    assert bookmark["replication_key_value"] == "2024-01-01T12:00:00.500000+00:00"

    # a row committed late with the bookmark's value, and a newer one; an old row changes unseen
    execute(
        "INSERT INTO events VALUES (5, '2024-01-01 12:00:00.5', 'late'), (6, '2024-01-02 00:00:00', 'new')",
        "UPDATE events SET note = 'unseen' WHERE id = 1",
        database=database,
    )
    second = sync(config, catalog, state=first.state)
    assert sorted(r["id"] for r in second.records(stream)) == [3, 4, 5, 6]  # at the bookmark, and after
    assert second.state["bookmarks"][stream]["replication_key_value"] == "2024-01-02T00:00:00.000000+00:00"

    third = sync(config, catalog, state=second.state)
    assert [r["id"] for r in third.records(stream)] == [6]  # only the rows at the bookmark again
    assert third.state["bookmarks"][stream] == second.state["bookmarks"][stream]


def test_incremental_by_a_decimal_key_keeps_the_bookmark_exact(database: str) -> None:
    execute(
        "CREATE TABLE ledger (id INT PRIMARY KEY, seq DECIMAL(20,2) NOT NULL)",
        "INSERT INTO ledger VALUES (1, 123456789012345678.01), (2, 123456789012345678.02)",
        database=database,
    )
    config = config_for(database)
    stream = f"{database}-ledger"
    catalog = catalog_for(config, stream, **{"replication-method": "INCREMENTAL", "replication-key": "seq"})

    first = sync(config, catalog)
    # the state goes through JSON between runs; a float would round the bookmark
    state = json.loads(json.dumps(first.state))
    second = sync(config, catalog, state=state)

    assert first.state["bookmarks"][stream]["replication_key_value"] == "123456789012345678.02"
    assert [r["id"] for r in second.records(stream)] == [2]


def test_an_unsortable_replication_key_is_refused_with_the_valid_ones(
    database: str, types_table: str
) -> None:
    config = config_for(database)
    catalog = catalog_for(
        config, types_table, **{"replication-method": "INCREMENTAL", "replication-key": "doc"}
    )

    with pytest.raises(InvalidReplicationKeyException, match="set `replication-key` to one of: id, ti"):
        sync(config, catalog)


def test_log_based_replication_is_refused(database: str, types_table: str) -> None:
    config = config_for(database)
    catalog = catalog_for(config, types_table, **{"replication-method": "LOG_BASED"})

    with pytest.raises(FatalSyncError, match="replication method LOG_BASED is not supported"):
        sync(config, catalog)


# -- the fast path ------------------------------------------------------------------------------


def test_batch_config_writes_parquet_with_exact_types_and_state_after_each_file(
    database: str, types_table: str, tmp_path: Path
) -> None:
    batch_config = {
        "encoding": {"format": "parquet", "compression": "none"},
        "storage": {"root": tmp_path.as_uri(), "prefix": ""},
        "batch_size": 2,
    }
    config = config_for(database, batch_config=batch_config)
    catalog = catalog_for(
        config, types_table, **{"replication-method": "INCREMENTAL", "replication-key": "id"}
    )

    result = sync(config, catalog)

    kinds = [m["type"] for m in result.messages]
    assert kinds == ["SCHEMA", "BATCH", "STATE", "BATCH", "STATE", "STATE"]
    batches = [m for m in result.messages if m["type"] == "BATCH"]
    states = [m["value"]["bookmarks"][types_table] for m in result.messages if m["type"] == "STATE"]
    # each STATE after a BATCH covers exactly the rows of the files announced so far
    assert [s["replication_key_value"] for s in states] == [2, 3, 3]
    assert batches[0]["encoding"] == {"format": "parquet", "compression": "none"}
    files = [Path(m["manifest"][0].removeprefix("file://")) for m in batches]
    tables = [pq.read_table(path) for path in files]
    assert [table.num_rows for table in tables] == [2, 1]
    table = pa.concat_tables(tables)
    assert {field.name: field.type for field in table.schema} == EXPECTED_ARROW
    assert table.schema.names == list(EXPECTED_SCHEMA)  # the SCHEMA message's order
    assert table.schema.field("doc").metadata == {b"elt.json": b"1"}
    source = source_rows(database, "all_types")
    for row in table.to_pylist():
        for name, value in row.items():
            assert value == expected_arrow(name, source[row["id"]][name]), (row["id"], name)


def test_batches_hold_the_rows_the_record_path_emits(database: str, tmp_path: Path) -> None:
    execute(
        "CREATE TABLE orders (id INT PRIMARY KEY, updated_at TIMESTAMP(6) NOT NULL, amount DECIMAL(9,2))",
        "INSERT INTO orders SELECT seq, TIMESTAMP('2024-01-01') + INTERVAL (seq DIV 3) MINUTE, seq / 8 "
        "FROM seq_1_to_1000",
        database=database,
    )
    config = config_for(database)
    stream = f"{database}-orders"
    catalog = catalog_for(
        config, stream, **{"replication-method": "INCREMENTAL", "replication-key": "updated_at"}
    )
    batch_config = {
        "encoding": {"format": "parquet"},
        "storage": {"root": tmp_path.as_uri()},
        "batch_size": 300,
    }

    records = sync(config, catalog)
    batches = sync({**config, "batch_config": batch_config}, catalog)

    rows = pa.concat_tables(pq.read_table(path) for path in sorted(tmp_path.glob("*.parquet"))).to_pylist()
    assert len(rows) == len(records.records(stream)) == 1000
    as_json = [
        {
            "id": row["id"],
            "updated_at": row["updated_at"].isoformat(timespec="microseconds"),
            "amount": row["amount"],
        }
        for row in rows
    ]
    assert as_json == records.records(stream)
    assert batches.state == records.state


def test_stream_maps_keep_the_stream_on_the_record_path(
    database: str, types_table: str, tmp_path: Path
) -> None:
    batch_config = {"encoding": {"format": "parquet"}, "storage": {"root": tmp_path.as_uri()}}
    config = config_for(database, batch_config=batch_config)
    config["stream_maps"] = {types_table: {"name": "md5(name)"}}
    catalog = select_catalog(TapMySQL(config=config).catalog_dict, [f"{types_table}.name"])

    result = sync(config, catalog)

    assert not list(tmp_path.iterdir())
    names = {record["id"]: record["name"] for record in result.records(types_table)}
    assert names[3] == hashlib.md5(b"x").hexdigest()


# -- end to end ---------------------------------------------------------------------------------


@pytest.fixture
def tap_executable(tmp_path: Path) -> str | None:
    """None when `tap-mysql` is installed next to elt; else a script running `python -m taps.tap_mysql`."""
    if (BIN / "tap-mysql").exists():
        return None
    script = tmp_path / "bin" / "tap-mysql"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\nexec "{BIN / "python"}" -m taps.tap_mysql "$@"\n')
    script.chmod(0o755)
    return str(script)


def test_elt_sync_into_duckdb_loads_new_rows_and_late_ties_once(
    database: str, tmp_path: Path, tap_executable: str | None
) -> None:
    execute(
        "CREATE TABLE customers (id INT PRIMARY KEY, updated_at DATETIME NOT NULL, name VARCHAR(40))",
        "INSERT INTO customers SELECT seq, '2024-01-01' + INTERVAL (seq DIV 10) DAY, CONCAT('c', seq) "
        "FROM seq_1_to_50",
        database=database,
    )
    stream = f"{database}-customers"
    project = tmp_path / "project"
    project.mkdir()
    extractor: dict[str, Any] = {
        "name": "tap-mysql",
        "config": {**SERVER, "filter_dbs": database},
        "select": [f"{stream}.*"],
        "metadata": {stream: {"replication-method": "INCREMENTAL", "replication-key": "updated_at"}},
    }
    if tap_executable:
        extractor["executable"] = tap_executable
    loader = {"name": "target-duckdb", "config": {"path": "warehouse.duckdb"}}
    plugins = {"extractors": [extractor], "loaders": [loader]}
    (project / "elt.yml").write_text(yaml.safe_dump({"version": 1, "plugins": plugins}, sort_keys=False))
    table = f"tap_mysql.{stream.replace('-', '_')}"

    run_elt("sync", "tap-mysql", "target-duckdb", cwd=project, timeout=120)
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as db:
        assert db.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchone() == (50, 50)

    # new rows, and a late row with the bookmark's value (id 50 has the greatest updated_at)
    execute(
        "INSERT INTO customers SELECT seq, '2024-02-01', CONCAT('new', seq) FROM seq_51_to_60",
        "INSERT INTO customers VALUES (61, '2024-01-06', 'late tie')",
        database=database,
    )
    run_elt("sync", "tap-mysql", "target-duckdb", cwd=project, timeout=120)
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as db:
        assert db.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchone() == (61, 61)
        assert db.execute(f"SELECT name FROM {table} WHERE id = 61").fetchone() == ("late tie",)


def test_batches_end_at_batch_size_bytes_as_well_as_rows(database: str, tmp_path: Path) -> None:
    execute(
        "CREATE TABLE docs (id INT PRIMARY KEY, body TEXT)",
        "INSERT INTO docs SELECT seq, REPEAT('x', 1000) FROM seq_1_to_3000",
        database=database,
    )
    batch_config = {"encoding": {"format": "parquet"}, "storage": {"root": tmp_path.as_uri()}}
    config = {**config_for(database, batch_config={**batch_config, "batch_size": 100_000})}
    config["batch_size_bytes"] = 100_000  # about 100 rows of 1 kB
    catalog = catalog_for(config, f"{database}-docs")

    result = sync(config, catalog)

    files = [Path(m["manifest"][0].removeprefix("file://")) for m in result.messages if m["type"] == "BATCH"]
    rows = [pq.read_table(f).num_rows for f in files]
    assert sum(rows) == 3000
    assert rows[0] == 1000  # the first batch measures how wide the rows are
    assert len(rows) >= 20 and max(rows[1:]) <= 110
