"""The columnar fast path: Parquet files announced by BATCH messages, loaded with exact types."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import BIN

SCHEMA = {
    "type": "SCHEMA",
    "stream": "public-events",
    "key_properties": ["id"],
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "amount": {"type": ["number", "null"]},
            "created_at": {"type": ["string", "null"], "format": "date-time"},
            "payload": {"type": ["object", "null"]},
            "note": {"type": ["string", "null"]},
        },
    },
}


def events_table(ids: range) -> pa.Table:
    json_field = pa.field("payload", pa.string(), metadata={"elt.json": "1"})
    base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return pa.Table.from_arrays(
        [
            pa.array(list(ids), pa.int64()),
            pa.array([Decimal(i) / 100 for i in ids], pa.decimal128(12, 2)),
            pa.array([base + dt.timedelta(seconds=i) for i in ids], pa.timestamp("us", tz="UTC")),
            pa.array([json.dumps({"n": i}) for i in ids], pa.string()),
            pa.array([f"event {i}" for i in ids], pa.string()),
        ],
        schema=pa.schema(
            [
                pa.field("id", pa.int64()),
                pa.field("amount", pa.decimal128(12, 2)),
                pa.field("created_at", pa.timestamp("us", tz="UTC")),
                json_field,
                pa.field("note", pa.string()),
            ]
        ),
    )


def batch_message(path: Path) -> dict[str, object]:
    return {
        "type": "BATCH",
        "stream": "public-events",
        "encoding": {"format": "parquet", "compression": "zstd"},
        "manifest": [path.as_uri()],
    }


def test_parquet_batches_load_with_exact_types_and_state_after_commit(tmp_path: Path) -> None:
    first, second = tmp_path / "b1.parquet", tmp_path / "b2.parquet"
    pq.write_table(events_table(range(1, 50_001)), first, compression="zstd")
    # the second batch repeats ids 49_001..50_000 with new notes: upsert keeps the later ones
    repeat = events_table(range(49_001, 60_001))
    repeat = repeat.set_column(4, "note", pa.array([f"again {i}" for i in range(49_001, 60_001)]))
    pq.write_table(repeat, second, compression="zstd")
    messages = [
        SCHEMA,
        batch_message(first),
        {"type": "STATE", "value": {"bookmarks": {"public-events": {"id": 50_000}}}},
        batch_message(second),
        {"type": "STATE", "value": {"bookmarks": {"public-events": {"id": 60_000}}}},
    ]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"path": str(tmp_path / "w.duckdb"), "default_target_schema": "raw"}))
    proc = subprocess.run(
        [str(BIN / "target-duckdb"), "--config", str(config)],
        input="".join(json.dumps(m) + "\n" for m in messages),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    states = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]  # bare state values
    assert states[-1] == {"bookmarks": {"public-events": {"id": 60_000}}}
    assert not first.exists() and not second.exists()  # deleted once committed
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as db:
        types = dict(
            db.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'raw' and table_name = 'public_events'"
            ).fetchall()
        )
        rows, keys, total, again = db.execute(
            "select count(*), count(distinct id), sum(amount), count(*) filter (where note like 'again%') "
            "from raw.public_events"
        ).fetchone()
        payload = db.execute("select payload->>'n' from raw.public_events where id = 7").fetchone()
    assert types["amount"] == "DECIMAL(12,2)"
    assert types["created_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["payload"] == "JSON"
    assert types["id"] == "BIGINT"
    assert (rows, keys) == (60_000, 60_000)
    assert total == sum(Decimal(i) / 100 for i in range(1, 60_001))
    assert again == 11_000
    assert payload == ("7",)


def test_fast_path_and_record_path_load_the_same_tables(sample_project: Path) -> None:
    """The sample shop synced both ways: same rows, same column types, same bookmarks."""
    from tests.conftest import run_elt

    results = {}
    for fast in ("1", "parquet", "0"):
        env = {"ELT_FAST_PATH": fast, "ELT_WAREHOUSE": f".elt/w{fast}.duckdb"}
        proc = run_elt("sync", "tap-files", "target-duckdb", "--format", "json", cwd=sample_project, env=env)
        results[fast] = json.loads(proc.stdout)
        state = run_elt("state", "get", "dev:tap-files-to-target-duckdb", cwd=sample_project).stdout
        results[fast]["state"] = json.loads(state)
        run_elt("state", "clear", "dev:tap-files-to-target-duckdb", "--force", cwd=sample_project)
    assert results["1"]["streams"] == results["parquet"]["streams"] == results["0"]["streams"]
    assert results["1"]["state"] == results["parquet"]["state"] == results["0"]["state"]
    with duckdb.connect(str(sample_project / ".elt" / "w1.duckdb"), read_only=True) as db:
        db.execute(f"attach '{sample_project / '.elt' / 'w0.duckdb'}' as record_path (read_only)")
        db.execute(f"attach '{sample_project / '.elt' / 'wparquet.duckdb'}' as wparquet (read_only)")
        tables = [r[0] for r in db.execute(
            "select table_name from information_schema.tables where table_schema = 'tap_files' "
            "and table_catalog = current_database()"
        ).fetchall()]  # fmt: skip
        assert sorted(tables) == ["customers", "order_items", "orders", "payments", "products"]
        for table in tables:
            columns_sql = (
                "select column_name, data_type from information_schema.columns where table_catalog = '{db}' "
                f"and table_schema = 'tap_files' and table_name = '{table}' "
                "and column_name not like '\\_elt\\_%' escape '\\' order by ordinal_position"
            )
            fast_columns = db.execute(columns_sql.format(db="w1")).fetchall()
            record_columns = db.execute(columns_sql.format(db="record_path")).fetchall()
            assert fast_columns == record_columns, table
            assert db.execute(columns_sql.format(db="wparquet")).fetchall() == fast_columns, table
            names = ", ".join(f'"{name}"' for name, _ in fast_columns)
            pairs = [(a, b) for a in ("w1", "wparquet") for b in ("record_path",)]
            for left, right in [*pairs, *((b, a) for a, b in pairs)]:
                (missing,) = db.execute(
                    f"select count(*) from (select {names} from {left}.tap_files.{table} "
                    f"except all select {names} from {right}.tap_files.{table})"
                ).fetchone()
                assert missing == 0, (table, left)


# -- in-process: tap and target inside elt --------------------------------------------------------


def _in_process_project(tmp_path: Path, rows: list[str], loader: str = "{path: warehouse.duckdb}") -> Path:
    (tmp_path / "events.csv").write_text("id,amount\n" + "".join(f"{row}\n" for row in rows))
    (tmp_path / "elt.yml").write_text(
        "version: 1\nplugins:\n  extractors:\n    - name: tap-files\n      config:\n"
        "        files: [{entity: events, path: events.csv, keys: [id], replication_key: id,"
        " schema: {amount: integer}}]\n"
        f"  loaders:\n    - name: target-duckdb\n      config: {loader}\n"
    )
    return tmp_path


def test_in_process_sync_reports_rows_and_runs_in_one_process(tmp_path: Path) -> None:
    from tests.conftest import run_elt

    project = _in_process_project(tmp_path, [f"{i},{i * 2}" for i in range(1, 1001)])
    proc = run_elt("sync", "tap-files", "target-duckdb", "--format", "json", cwd=project)

    assert "Arrow batches, tap and target in one process" in proc.stderr
    assert json.loads(proc.stdout)["streams"] == {"events": {"rows": 1000}}
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as db:
        assert db.execute("select count(*), sum(amount) from tap_files.events").fetchone() == (1000, 1001000)
        # exact Arrow types arrive as they are: the schema's integer is a BIGINT column
        assert db.execute(
            "select data_type from information_schema.columns where table_name = 'events' "
            "and column_name = 'amount'"
        ).fetchone() == ("BIGINT",)
    log = next((project / ".elt" / "logs").rglob("*.log")).read_text()
    assert "target-duckdb | INFO | Loaded 1000 rows of 'events'" in log  # connector logs go to the log file
    assert "Loaded" not in proc.stderr


def test_in_process_tap_failure_names_the_tap_file_and_line(tmp_path: Path) -> None:
    from tests.conftest import run_elt

    project = _in_process_project(tmp_path, ["1,5", "2,6", "3,six"])
    proc = run_elt("sync", "tap-files", "target-duckdb", cwd=project, check=False)

    assert proc.returncode == 1
    assert "tap-files failed" in proc.stderr
    assert "line 4: column 'amount' expects integer, found 'six'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (project / "warehouse.duckdb").exists()


def test_in_process_target_failure_names_the_target(tmp_path: Path) -> None:
    from tests.conftest import run_elt

    (tmp_path / "warehouse.duckdb").mkdir()  # a folder where the database file should be
    project = _in_process_project(tmp_path, ["1,5", "2,6"])
    proc = run_elt("sync", "tap-files", "target-duckdb", cwd=project, check=False)

    assert proc.returncode == 1
    assert "target-duckdb failed: cannot open DuckDB file" in proc.stderr
    assert "Traceback" not in proc.stderr
