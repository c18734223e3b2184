"""The record path of the built-in targets: RECORD lines kept as they came and parsed a batch at a time
(targets/record_lines.py), specified end to end on real DuckDB files and the local PostgreSQL server.

Each test says which way its batches went: "in bulk" (Arrow parsed the lines) or "record by record"
(the batch needed the per-record path, which the sink logs). Either way the values and errors are those
of the per-record path.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from singer_sdk.singerlib.json import serialize_json

from elt.errors import EltError
from targets.record_lines import message_runs, read_blocks
from targets.target_duckdb.target import TargetDuckDB
from targets.target_postgres.target import TargetPostgres

UTC = dt.UTC
RECORD_BY_RECORD = "record by record"

EVENTS = {
    "id": {"type": "integer"},
    "amount": {"type": ["number", "null"]},
    "label": {"type": ["string", "null"]},
    "active": {"type": ["boolean", "null"]},
    "at": {"type": ["string", "null"], "format": "date-time"},
    "attrs": {"type": ["object", "null"]},
    "tags": {"type": ["array", "null"], "items": {"type": "string"}},
}


def schema(stream: str, properties: dict[str, Any], keys: list[str] | None = None) -> str:
    message = {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"properties": properties},
        "key_properties": keys or [],
    }
    return json.dumps(message) + "\n"


def compact(stream: str, values: dict[str, Any], time_extracted: str | None = None) -> str:
    """A RECORD line as singer-sdk taps write it: no spaces, Decimals digit for digit."""
    message: dict[str, Any] = {"type": "RECORD", "stream": stream, "record": values}
    if time_extracted:
        message["time_extracted"] = time_extracted
    return serialize_json(message) + "\n"


def spaced(stream: str, values: dict[str, Any]) -> str:
    """A RECORD line as singer-python writes it: `{"type": "RECORD", "stream": ...}`."""
    return json.dumps({"type": "RECORD", "stream": stream, "record": values}) + "\n"


def state(value: dict[str, Any]) -> str:
    return json.dumps({"type": "STATE", "value": value}) + "\n"


def states(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def went_record_by_record(caplog: pytest.LogCaptureFixture) -> bool:
    return any(RECORD_BY_RECORD in record.getMessage() for record in caplog.records)


@pytest.fixture(autouse=True)
def _logs_and_signal_handlers(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    # A target made in this process installs singer-sdk's SIGINT/SIGTERM handlers.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


# --- target-duckdb -------------------------------------------------------------------------------


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.duckdb"


@pytest.fixture
def duckdb_target(warehouse: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., list[dict]]:
    """Run TargetDuckDB in this process on input lines; returns the STATE messages it wrote."""

    def run(text: str, **config: Any) -> list[dict]:
        target = TargetDuckDB(config={"path": str(warehouse), **config})
        target.listen(io.StringIO(text))
        return states(capsys.readouterr().out)

    return run


def query(database: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).fetchall()


def test_duckdb_loads_compact_and_spaced_lines_in_bulk_with_exact_values(
    duckdb_target, warehouse: Path, caplog
) -> None:
    text = schema("events", EVENTS, ["id"])
    text += compact(
        "events",
        {
            "id": 1,
            "amount": Decimal("0.30000000000000004"),
            "label": "first",
            "active": True,
            "at": "2024-05-01T12:00:00+02:00",
            "attrs": {"price": Decimal("1.50"), "big": Decimal("12345678901234567890.123456789")},
            "tags": ["a", "é"],
        },
        "2024-05-02T00:00:00+00:00",
    )
    text += spaced("events", {"id": 2, "amount": 7, "label": None, "active": None, "at": None, "attrs": None})
    text += spaced("events", {"id": 3, "amount": None, "at": "2024-05-01 23:30:00-01:00", "tags": []})

    duckdb_target(text)

    assert not went_record_by_record(caplog)
    rows = query(
        warehouse,
        'SELECT id, amount, label, active, "at", attrs::VARCHAR, tags::VARCHAR, _elt_synced_at '
        "FROM main.events ORDER BY id",
    )
    first, second, third = rows
    assert first[:7] == (
        1,
        0.30000000000000004,
        "first",
        True,
        dt.datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        '{"price":1.50,"big":12345678901234567890.123456789}',
        '["a","é"]',
    )
    assert first[7] == dt.datetime(2024, 5, 2, tzinfo=UTC)
    assert second[:7] == (2, 7.0, None, None, None, None, None)
    assert second[7] is not None  # no time_extracted: when the target read the record
    assert third[:7] == (3, None, None, None, dt.datetime(2024, 5, 2, 0, 30, tzinfo=UTC), None, "[]")


def test_duckdb_bad_value_fails_its_batch_naming_stream_column_value_and_record(
    duckdb_target, warehouse: Path, caplog
) -> None:
    text = schema("events", EVENTS, ["id"]) + compact("events", {"id": 1}) + compact("events", {"id": "two"})

    with pytest.raises(EltError) as failure:
        duckdb_target(text)

    message = str(failure.value)
    assert "stream 'events', column 'id'" in message
    assert "'two'" in message
    assert "BIGINT" in message
    assert "record 2 of the batch" in message
    assert "nothing of this batch was written" in message
    assert not warehouse.exists() or query(warehouse, "SELECT count(*) FROM information_schema.tables") == [
        (0,)
    ]


def test_duckdb_bad_timestamp_is_named_by_the_warehouse_cast(duckdb_target, warehouse: Path) -> None:
    text = schema("events", EVENTS) + compact("events", {"id": 1, "at": "2024-05-01T10:00:00Z"})
    text += compact("events", {"id": 2, "at": "yesterday"})

    with pytest.raises(
        EltError, match=r"column 'at': cannot load 'yesterday'.*TIMESTAMPTZ.*record 2 of the batch"
    ):
        duckdb_target(text)


def test_duckdb_integer_written_as_a_decimal_goes_record_by_record(
    duckdb_target, warehouse: Path, caplog
) -> None:
    # Arrow reads no 3.0 into an integer column; the per-record path takes the whole number.
    text = schema("events", EVENTS) + compact("events", {"id": Decimal("3.0")}) + compact("events", {"id": 4})

    duckdb_target(text)

    assert went_record_by_record(caplog)
    assert query(warehouse, "SELECT id FROM main.events ORDER BY id") == [(3,), (4,)]


def test_duckdb_fields_not_in_the_schema_are_warned_about_and_not_loaded(
    duckdb_target, warehouse: Path, caplog
) -> None:
    text = schema("events", {"id": {"type": "integer"}})
    text += compact("events", {"id": 1, "extra": {"deep": [1, "x"]}, "_sdc_deleted_at": None})
    text += compact("events", {"id": 2, "extra": 5, "later": True})

    duckdb_target(text)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("field 'extra' is not in its schema" in w for w in warnings)
    assert any("field 'later' is not in its schema" in w for w in warnings)
    assert not any("_sdc_deleted_at" in w for w in warnings)
    assert query(
        warehouse, "SELECT * EXCLUDE (_elt_loaded_at, _elt_synced_at) FROM main.events ORDER BY id"
    ) == [
        (1,),
        (2,),
    ]


def test_duckdb_schema_change_mid_stream_loads_the_rows_before_it_first(
    duckdb_target, warehouse: Path
) -> None:
    text = schema("events", {"id": {"type": "integer"}, "v": {"type": "string"}}, ["id"])
    text += compact("events", {"id": 1, "v": "old"}) + compact("events", {"id": 2, "v": "old"})
    text += schema(
        "events", {"id": {"type": "integer"}, "v": {"type": "string"}, "n": {"type": "integer"}}, ["id"]
    )
    text += compact("events", {"id": 2, "v": "new", "n": 20}) + compact(
        "events", {"id": 3, "v": "new", "n": 30}
    )

    duckdb_target(text)

    assert query(warehouse, "SELECT id, v, n FROM main.events ORDER BY id") == [
        (1, "old", None),
        (2, "new", 20),
        (3, "new", 30),
    ]


def test_duckdb_state_goes_out_only_after_the_rows_before_it_are_committed(
    warehouse: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = TargetDuckDB(config={"path": str(warehouse), "batch_size_rows": 3})
    text = schema("events", {"id": {"type": "integer"}})
    text += compact("events", {"id": 1}) + compact("events", {"id": 2}) + state({"after": 2})
    text += compact("events", {"id": 3})  # fills the batch: rows 1-3 are committed, then STATE "after 2"
    text += compact("events", {"id": 4}) + state({"after": 4})  # row 4 is not loaded yet

    target.process_lines(io.StringIO(text))

    assert states(capsys.readouterr().out) == [{"after": 2}]
    with target.connection.cursor() as cursor:
        assert cursor.execute("SELECT count(*) FROM main.events").fetchall() == [(3,)]
    target.process_endofpipe()
    assert states(capsys.readouterr().out) == [{"after": 4}]
    assert query(warehouse, "SELECT count(*) FROM main.events") == [(4,)]


def test_duckdb_batches_are_cut_at_batch_size_rows(duckdb_target, warehouse: Path, caplog) -> None:
    text = schema("events", {"id": {"type": "integer"}})
    text += "".join(compact("events", {"id": i}) for i in range(2500))

    duckdb_target(text, batch_size_rows=1000)

    loaded = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Loaded ")]
    assert [message.split()[1] for message in loaded] == ["1000", "1000", "500"]
    assert query(warehouse, "SELECT count(*), count(DISTINCT id) FROM main.events") == [(2500, 2500)]


def test_duckdb_validate_records_rejects_a_bad_record(duckdb_target) -> None:
    text = schema("events", {"id": {"type": "integer"}, "code": {"type": "string", "maxLength": 3}})
    text += compact("events", {"id": 1, "code": "abc"}) + compact("events", {"id": 2, "code": "abcd"})

    with pytest.raises(EltError, match=r"stream 'events': record 2 of the stream does not match its schema"):
        duckdb_target(text, validate_records=True)


def test_duckdb_stream_maps_keep_the_record_by_record_path(duckdb_target, warehouse: Path) -> None:
    text = schema("events", {"id": {"type": "integer"}, "secret": {"type": "string"}})
    text += compact("events", {"id": 1, "secret": "x"})

    duckdb_target(text, stream_maps={"events": {"secret": None}})

    assert query(
        warehouse, "SELECT column_name FROM information_schema.columns WHERE table_name = 'events'"
    ) == [
        ("id",),
        ("_elt_loaded_at",),
        ("_elt_synced_at",),
    ]


def test_duckdb_other_key_orders_and_a_long_line_are_loaded_too(
    duckdb_target, warehouse: Path, caplog
) -> None:
    long_label = "x" * 3_000_000  # longer than one block of Arrow's parse
    text = schema("events", EVENTS)
    text += json.dumps({"stream": "events", "record": {"id": 1}, "type": "RECORD"}) + "\n"
    text += compact("events", {"id": 2, "label": long_label})

    duckdb_target(text)

    assert not went_record_by_record(caplog)
    assert query(warehouse, "SELECT id, length(label) FROM main.events ORDER BY id") == [
        (1, None),
        (2, 3_000_000),
    ]


def test_duckdb_bulk_path_of_scalar_columns_does_not_import_pandas(tmp_path: Path) -> None:
    # pa.array(), pa.scalar() and to_numpy() import pandas: 0.2 s and 35 MB of a target's run. (Values
    # decoded by Python, of JSON columns, are converted with pa.array() as records' are.)
    messages = tmp_path / "messages.jsonl"
    scalars = {name: EVENTS[name] for name in ("id", "amount", "label", "active", "at")}
    text = schema("events", scalars, ["id"])
    text += "".join(compact("events", {"id": i, "amount": Decimal("1.25"), "label": "x"}) for i in range(500))
    messages.write_text(text)
    script = (
        "import sys; from targets.target_duckdb.target import TargetDuckDB; "
        f"TargetDuckDB(config={{'path': {str(tmp_path / 'w.duckdb')!r}}}).listen(open({str(messages)!r})); "
        "print('pandas' in sys.modules)"
    )

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"
    assert query(tmp_path / "w.duckdb", "SELECT count(*) FROM main.events") == [(500,)]


# --- the reader ----------------------------------------------------------------------------------


def test_input_runs_keep_every_line_in_order_whatever_the_block_size() -> None:
    lines = [
        compact("a", {"id": 1}),
        compact("a", {"id": 2}),
        state({"x": 1}),
        spaced("b", {"id": 3}),
        compact("a", {"id": 4}),
        '{"type":"RECORD","stream":"we\\"ird","record":{}}\n',
        compact("a", {"id": 5}).rstrip("\n"),  # the last line has no newline
    ]
    data = "".join(lines).encode()

    for size in (5, 64, 1 << 20):
        runs = list(message_runs(read_blocks(io.BytesIO(data), size)))

        assert b"".join(run.data for run in runs) == data + b"\n"
        assert [run.stream for run in runs for _ in range(run.rows)] == ["a", "a", None, "b", "a", None, "a"]
        assert all(run.rows == 1 for run in runs if run.stream is None)
    whole = list(message_runs(read_blocks(io.StringIO(data.decode()))))
    others = [run.lines() for run in whole if run.stream is None]
    assert others == [[lines[2].encode()], [lines[5].encode()]]


# --- target-postgres -----------------------------------------------------------------------------


@pytest.fixture
def pg_config(postgres_dsn: str, pg_schema: str) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": 5432,
        "user": "postgres",
        "database": "test",
        "default_target_schema": pg_schema,
    }


@pytest.fixture
def postgres_target(
    pg_config: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> Callable[..., list[dict]]:
    """Run TargetPostgres in this process on input lines; returns the STATE messages it wrote."""

    def run(text: str, **overrides: Any) -> list[dict]:
        target = TargetPostgres(config={**pg_config, **overrides})
        target.listen(io.StringIO(text))
        return states(capsys.readouterr().out)

    return run


@pytest.fixture
def pg_query(postgres_dsn: str, pg_schema: str) -> Callable[[str], list[tuple]]:
    def run(sql: str) -> list[tuple]:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            return conn.execute(sql.replace("{s}", pg_schema)).fetchall()

    return run


@pytest.mark.postgres
def test_postgres_loads_lines_in_bulk_with_the_digits_the_tap_wrote(
    postgres_target, pg_query, caplog
) -> None:
    text = schema("events", EVENTS, ["id"])
    text += compact(
        "events",
        {
            "id": 1,
            "amount": Decimal("1408.90"),
            "label": "first",
            "active": False,
            "at": "2024-05-01T12:00:00+02:00",
            "attrs": {"price": Decimal("1.50")},
            "tags": ["a"],
        },
        "2024-05-02T00:00:00+00:00",
    )
    text += spaced("events", {"id": 2, "amount": 2.5, "label": None, "at": None})
    text += compact("events", {"id": 3, "amount": Decimal("-1E+2")})
    text += compact("events", {"id": 4, "amount": Decimal("12345678901234567890.123456789")})

    postgres_target(text)

    assert not went_record_by_record(caplog)
    assert pg_query(
        'SELECT id, amount::text, label, active, "at", attrs::text, tags::text FROM {s}.events ORDER BY id'
    ) == [
        (
            1,
            "1408.90",
            "first",
            False,
            dt.datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
            '{"price": 1.50}',
            '["a"]',
        ),
        (2, "2.5", None, None, None, None, None),
        (3, "-100", None, None, None, None, None),
        (4, "12345678901234567890.123456789", None, None, None, None, None),
    ]
    assert pg_query("SELECT _elt_synced_at FROM {s}.events WHERE id = 1") == [
        (dt.datetime(2024, 5, 2, tzinfo=UTC),)
    ]


@pytest.mark.postgres
def test_postgres_numbers_next_to_json_columns_keep_their_digits_in_bulk(
    postgres_target, pg_query, caplog
) -> None:
    properties = {"id": {"type": "integer"}, "amount": {"type": "number"}, "detail": {"type": "object"}}
    text = schema("events", properties)
    text += compact("events", {"id": 1, "amount": Decimal("2.50"), "detail": {"amount": Decimal("9.0")}})

    postgres_target(text)

    assert not went_record_by_record(caplog)
    assert pg_query("SELECT amount::text, detail::text FROM {s}.events") == [("2.50", '{"amount": 9.0}')]


@pytest.mark.postgres
def test_postgres_numeric_key_repeated_in_an_unknown_object_goes_record_by_record(
    postgres_target, pg_query, caplog
) -> None:
    # The number after `"amount":` cannot be told from the nested one by its text alone.
    text = schema("events", {"id": {"type": "integer"}, "amount": {"type": "number"}})
    text += compact("events", {"id": 1, "detail": {"amount": 9}, "amount": Decimal("2.50")})

    postgres_target(text)

    assert went_record_by_record(caplog)
    assert pg_query("SELECT id, amount::text FROM {s}.events") == [(1, "2.50")]


@pytest.mark.postgres
def test_postgres_bad_value_fails_its_batch_naming_stream_column_value_and_record(
    postgres_target, pg_query
) -> None:
    text = schema("events", EVENTS) + compact("events", {"id": 1, "active": True})
    text += compact("events", {"id": 2, "active": "yes"})

    with pytest.raises(EltError) as failure:
        postgres_target(text)

    message = str(failure.value)
    assert "stream 'events', column 'active'" in message
    assert "'yes'" in message
    assert "BOOLEAN" in message
    assert "record 2 of the batch" in message
    assert pg_query("SELECT count(*) FROM pg_tables WHERE schemaname = '{s}'") == [(0,)]


@pytest.mark.postgres
def test_postgres_state_goes_out_only_after_the_rows_before_it_are_committed(
    pg_config: dict[str, Any], pg_query, capsys: pytest.CaptureFixture[str]
) -> None:
    target = TargetPostgres(config={**pg_config, "batch_size_rows": 2})
    text = schema("events", {"id": {"type": "integer"}}, ["id"])
    text += compact("events", {"id": 1}) + state({"after": 1}) + compact("events", {"id": 2})
    text += compact("events", {"id": 3}) + state({"after": 3})

    target.process_lines(io.StringIO(text))

    assert states(capsys.readouterr().out) == [{"after": 1}]
    assert pg_query("SELECT count(*) FROM {s}.events") == [(2,)]
    target.process_endofpipe()
    assert states(capsys.readouterr().out) == [{"after": 3}]
    assert pg_query("SELECT count(*) FROM {s}.events") == [(3,)]
