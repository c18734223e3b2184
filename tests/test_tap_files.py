"""Specification of the built-in tap `tap-files`: discovery, full and incremental syncs, errors."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from singer_sdk.exceptions import ConfigValidationError

from taps.tap_files.readers import FileReadError
from taps.tap_files.streams import FileStream
from taps.tap_files.tap import TapFiles

TAP = Path(sys.executable).with_name("tap-files")
T0 = 1_700_000_000_000_000_000  # a modification time, in nanoseconds


# -- helpers ------------------------------------------------------------------------------------


@dataclass
class Sync:
    """What one run of the tap wrote: records per stream, and the last STATE."""

    messages: list[dict[str, Any]]

    def records(self, stream: str) -> list[dict[str, Any]]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream]

    def keys(self, stream: str, key: str = "id") -> set[Any]:
        return {record[key] for record in self.records(stream)}

    @property
    def record_count(self) -> int:
        return sum(1 for m in self.messages if m["type"] == "RECORD")

    @property
    def state(self) -> dict[str, Any]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"][-1]

    def schema(self, stream: str) -> dict[str, Any]:
        return next(m for m in self.messages if m["type"] == "SCHEMA" and m["stream"] == stream)


def sync(
    config: dict[str, Any],
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
) -> Sync:
    """Run a sync in-process and parse the Singer messages it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        TapFiles(config=config, state=state, catalog=catalog).sync_all()
    return Sync([json.loads(line) for line in out.getvalue().splitlines()])


@pytest.fixture(scope="session")
def cli(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Run the installed `tap-files` console script; returns the completed process."""
    # Each run imports singer-sdk and pyarrow afresh; caching their bytecode in pytest's cache
    # keeps the runs fast even where PYTHONDONTWRITEBYTECODE is set.
    cache = getattr(request.config, "cache", None)
    pycache = cache.mkdir("pycache") if cache else tmp_path_factory.mktemp("pycache")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)

    def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(TAP), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
        )

    yield run


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config))
    return path


def write(path: Path, text: str, *, mtime_ns: int | None = None, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def csv_rows(*rows: str) -> str:
    return "\n".join(rows) + "\n"


def properties(schema_message: dict[str, Any]) -> dict[str, Any]:
    return dict(schema_message["schema"]["properties"])


# -- discovery ----------------------------------------------------------------------------------


def test_discovery_infers_types_from_csv(tmp_path: Path, cli: Any) -> None:
    write(
        tmp_path / "data" / "orders.csv",
        csv_rows(
            "order_id,amount,ordered_at,day,active,note,empty",
            "1,10.5,2024-01-01 10:00:00,2024-01-01,true,first,",
            '2,20,2024-01-02T10:00:00+02:00,2024-01-02,false,"second, quoted",',
            "3,,2024-01-03T10:00:00.123456789Z,,,,",
        ),
    )
    config = write_config(
        tmp_path / "config.json",
        {"files": [{"entity": "orders", "path": "data/orders.csv", "keys": ["order_id"]}]},
    )

    done = cli(tmp_path, "--config", str(config), "--discover")

    assert done.returncode == 0, done.stderr
    (stream,) = json.loads(done.stdout)["streams"]
    assert stream["tap_stream_id"] == "orders"
    assert stream["key_properties"] == ["order_id"]
    assert stream["schema"]["properties"] == {
        "order_id": {"type": ["integer", "null"]},
        "amount": {"type": ["number", "null"]},
        "ordered_at": {"type": ["string", "null"], "format": "date-time"},
        "day": {"type": ["string", "null"], "format": "date"},
        "active": {"type": ["boolean", "null"]},
        "note": {"type": ["string", "null"]},
        "empty": {"type": ["string", "null"]},
    }


def test_files_of_one_entry_merge_into_one_schema(tmp_path: Path) -> None:
    write(tmp_path / "parts" / "a.csv", csv_rows("id,v,flag,only_a", "1,1,true,x", "2,2,false,y"))
    write(tmp_path / "parts" / "b.csv", csv_rows("id,v,flag", "3,2.5,7"))
    write(tmp_path / "parts" / "nested" / "c.jsonl", '{"id": 4, "v": 4, "flag": "no"}\n')

    result = sync({"files": [{"entity": "parts", "path": str(tmp_path / "parts"), "keys": ["id"]}]})

    assert properties(result.schema("parts")) == {
        "id": {"type": ["integer", "null"]},
        "v": {"type": ["number", "null"]},
        "flag": {"type": ["string", "null"]},
        "only_a": {"type": ["string", "null"]},
    }
    records = result.records("parts")
    assert len(records) == 4
    assert result.keys("parts") == {1, 2, 3, 4}
    assert [(r["v"], r["flag"], r["only_a"]) for r in records] == [
        (1.0, "true", "x"),
        (2.0, "false", "y"),
        (2.5, "7", None),
        (4.0, "no", None),
    ]


def test_declared_types_override_inference(tmp_path: Path) -> None:
    write(
        tmp_path / "people.csv",
        csv_rows(
            "id,zip,seen_at,score,profile",
            '1,007,2024-03-01 08:00:00,3,"{""tags"": [""a""]}"',
            "2,010,2024-03-02T08:00:00+01:00,4,",
        ),
    )
    schema = {
        "zip": "string",
        "seen_at": "date-time",
        "score": {"type": "number"},
        "profile": "json",
    }

    result = sync({"files": [{"entity": "people", "path": str(tmp_path / "people.csv"), "schema": schema}]})

    props = properties(result.schema("people"))
    assert props["zip"] == {"type": ["string", "null"]}
    assert props["score"] == {"type": ["number", "null"]}
    assert props["profile"] == {}
    records = result.records("people")
    assert len(records) == 2
    assert result.keys("people") == {1, 2}
    assert [r["zip"] for r in records] == ["007", "010"]
    assert [r["seen_at"] for r in records] == [
        "2024-03-01T08:00:00.000000+00:00",
        "2024-03-02T07:00:00.000000+00:00",
    ]
    assert [r["score"] for r in records] == [3.0, 4.0]
    assert [r["profile"] for r in records] == [{"tags": ["a"]}, None]


def test_catalog_schema_drives_types_and_selection(tmp_path: Path) -> None:
    write(tmp_path / "orders.csv", csv_rows("id,amount,note", "1,10.50,a", "2,20,b"))
    config = {"files": [{"entity": "orders", "path": str(tmp_path / "orders.csv")}]}
    catalog = TapFiles(config=config).catalog_dict
    (stream,) = catalog["streams"]
    stream["schema"]["properties"]["amount"] = {"type": ["string", "null"]}
    for entry in stream["metadata"]:
        if entry["breadcrumb"] == ["properties", "note"]:
            entry["metadata"]["selected"] = False

    result = sync(config, catalog=catalog)

    assert result.record_count == 2
    assert result.keys("orders") == {1, 2}
    assert result.records("orders") == [{"id": 1, "amount": "10.50"}, {"id": 2, "amount": "20"}]


# -- full sync ----------------------------------------------------------------------------------


def test_parquet_and_jsonl(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "price": pa.array(["1.10", "2.20", None], pa.string()).cast(pa.decimal128(5, 2)),
            "at": pa.array([T0, T0 + 1_500, None], pa.timestamp("ns", tz="Europe/Paris")),
            "tags": pa.array([["a"], [], None], pa.list_(pa.string())),
        }
    )
    pq.write_table(table, tmp_path / "items.parquet")
    write(
        tmp_path / "events.jsonl",
        '{"id": 1, "on": "2024-01-01", "at": "2024-01-01T10:00:00", "meta": {"n": 1}}\n'
        '{"id": 2, "on": "2024-01-02", "at": "2024-01-01T10:00:00.5+01:00", "meta": {"n": 2}}\n'
        '{"id": 3, "on": null, "at": null, "meta": null}\n',
    )
    config = {
        "files": [
            {"entity": "items", "path": str(tmp_path / "items.parquet"), "keys": ["id"]},
            {"entity": "events", "path": str(tmp_path / "events.jsonl"), "keys": ["id"]},
        ]
    }

    result = sync(config)

    assert properties(result.schema("items")) == {
        "id": {"type": ["integer", "null"]},
        "price": {"type": ["number", "null"]},
        "at": {"type": ["string", "null"], "format": "date-time"},
        "tags": {"type": ["array", "null"], "items": {"type": ["string", "null"]}},
    }
    items = result.records("items")
    assert len(items) == 3
    assert result.keys("items") == {1, 2, 3}
    assert items[1] == {
        "id": 2,
        "price": 2.2,
        "at": "2023-11-14T22:13:20.000001+00:00",
        "tags": [],
    }
    assert properties(result.schema("events")) == {
        "id": {"type": ["integer", "null"]},
        "on": {"type": ["string", "null"], "format": "date"},
        "at": {"type": ["string", "null"], "format": "date-time"},
        "meta": {"type": ["object", "null"], "properties": {"n": {"type": ["integer", "null"]}}},
    }
    events = result.records("events")
    assert len(events) == 3
    assert result.keys("events") == {1, 2, 3}
    assert [(e["on"], e["at"], e["meta"]) for e in events] == [
        ("2024-01-01", "2024-01-01T10:00:00.000000+00:00", {"n": 1}),
        ("2024-01-02", "2024-01-01T09:00:00.500000+00:00", {"n": 2}),
        (None, None, None),
    ]


def test_empty_files_and_marker_files_in_a_directory_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "out" / "part-0.csv", csv_rows("id", "1", "2"))
    write(tmp_path / "out" / "part-1.csv", "")
    write(tmp_path / "out" / "_SUCCESS", "")
    write(tmp_path / "out" / ".part-0.csv.crc", "binary junk")

    result = sync({"files": [{"entity": "out", "path": str(tmp_path / "out")}]})

    assert result.record_count == 2
    assert result.keys("out") == {1, 2}


def test_tsv_and_gzipped_files_are_read(tmp_path: Path) -> None:
    write(tmp_path / "a.tsv", csv_rows("id\tname", "1\tAnn, Jr.", "2\tBob"))
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(csv_rows("id,name", "3,Cy").encode()))
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(b'{"id": 4, "name": "Di"}\n'))

    result = sync({"files": [{"entity": "people", "path": str(tmp_path / "[abc].*")}]})

    assert result.record_count == 4
    assert result.keys("people") == {1, 2, 3, 4}
    assert [r["name"] for r in result.records("people")] == ["Ann, Jr.", "Bob", "Cy", "Di"]


def test_latin1_encoding(tmp_path: Path) -> None:
    path = write(tmp_path / "names.csv", csv_rows("id,name", "1,Zoë", "2,Ångström"), encoding="latin-1")

    result = sync({"files": [{"entity": "names", "path": str(path), "encoding": "latin-1"}]})

    assert result.record_count == 2
    assert result.keys("names") == {1, 2}
    assert [r["name"] for r in result.records("names")] == ["Zoë", "Ångström"]
    with pytest.raises(FileReadError, match=r"stream 'names'.*names\.csv.*set `encoding`"):
        sync({"files": [{"entity": "names", "path": str(path)}]})


def test_tap_csv_config_shape_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "leads" / "2024.csv", csv_rows("Id;Name", "1;Ann", "2;Bob"), mtime_ns=T0)
    write(tmp_path / "leads" / "old" / "2023.csv", csv_rows("Id;Name", "3;Cy"), mtime_ns=T0)
    definition = [{"entity": "leads", "path": "leads", "keys": ["Id"], "delimiter": ";"}]
    write(tmp_path / "files_def.json", json.dumps(definition))

    result = sync({"csv_files_definition": "files_def.json", "add_metadata_columns": True})

    assert result.schema("leads")["key_properties"] == ["Id"]
    records = result.records("leads")
    assert len(records) == 3
    assert result.keys("leads", "Id") == {1, 2, 3}
    assert [(r["_sdc_source_file"], r["_sdc_source_lineno"]) for r in records] == [
        ("leads/2024.csv", 2),
        ("leads/2024.csv", 3),
        ("leads/old/2023.csv", 2),
    ]
    assert {r["_sdc_source_file_mtime"] for r in records} == {"2023-11-14T22:13:20.000000000+00:00"}


def test_cli_sync_writes_state_that_a_rerun_takes_with_state_flag(tmp_path: Path, cli: Any) -> None:
    write(
        tmp_path / "orders.csv",
        csv_rows("id,updated_at", "1,2024-01-01", "2,2024-01-03", "3,2024-01-03", "4,2024-01-02"),
    )
    entry = {
        "entity": "orders",
        "path": "orders.csv",
        "keys": ["id"],
        "replication_key": "updated_at",
    }
    config = write_config(tmp_path / "config.json", {"files": [entry]})

    first = cli(tmp_path, "--config", str(config))

    assert first.returncode == 0, first.stderr
    run = Sync([json.loads(line) for line in first.stdout.splitlines()])
    assert run.record_count == 4
    assert run.keys("orders") == {1, 2, 3, 4}
    assert [r["updated_at"] for r in run.records("orders")] == [
        "2024-01-01",
        "2024-01-02",
        "2024-01-03",
        "2024-01-03",
    ]
    assert run.state == {
        "bookmarks": {
            "orders": {
                "replication_key": "updated_at",
                "replication_key_value": "2024-01-03",
                "keys_at_bookmark": [[2], [3]],
            }
        }
    }
    state = write_config(tmp_path / "state.json", run.state)

    rerun = cli(tmp_path, "--config", str(config), "--state", str(state))

    assert rerun.returncode == 0, rerun.stderr
    messages = [json.loads(line) for line in rerun.stdout.splitlines()]
    assert Sync(messages).record_count == 0
    assert Sync(messages).state == run.state


# -- incremental --------------------------------------------------------------------------------


def orders_entry(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    entry = {
        "entity": "orders",
        "path": str(tmp_path / "orders_*.csv"),
        "keys": ["id"],
        "replication_key": "updated_at",
    }
    return {**entry, **extra}


def test_incremental_sync_emits_only_new_rows(tmp_path: Path) -> None:
    write(
        tmp_path / "orders_1.csv",
        csv_rows("id,updated_at", *(f"{i},2024-01-0{i} 12:00:00" for i in range(1, 6))),
    )
    config = {"files": [orders_entry(tmp_path)]}
    first = sync(config)
    assert first.record_count == 5
    assert first.keys("orders") == {1, 2, 3, 4, 5}
    write(
        tmp_path / "orders_2.csv",
        csv_rows(
            "id,updated_at",
            "7,2024-01-07 12:00:00",
            "6,2024-01-06 12:00:00",
            "2,2024-01-08 12:00:00",  # an order changed later
            "8,2024-01-03 12:00:00",  # below the bookmark: arrived too late for this key
        ),
    )

    second = sync(config, first.state)

    records = second.records("orders")
    assert len(records) == 3
    assert second.keys("orders") == {2, 6, 7}
    assert [r["id"] for r in records] == [6, 7, 2]
    bookmark = second.state["bookmarks"]["orders"]
    assert bookmark["replication_key_value"] == "2024-01-08T12:00:00.000000+00:00"
    assert bookmark["keys_at_bookmark"] == [[2]]


def test_rerun_without_new_data_emits_no_records(tmp_path: Path) -> None:
    write(
        tmp_path / "orders_1.csv",
        csv_rows("id,updated_at", "1,5", "2,9", "3,9", "4,"),
    )
    for entry in (orders_entry(tmp_path), orders_entry(tmp_path, keys=[])):
        first = sync({"files": [entry]})
        assert first.record_count == 4
        assert first.keys("orders") == {1, 2, 3, 4}

        rerun = sync({"files": [entry]}, first.state)

        assert rerun.record_count == 0
        assert rerun.state == first.state


def test_tie_at_bookmark_arriving_later_is_not_lost(tmp_path: Path) -> None:
    write(
        tmp_path / "orders_1.csv",
        csv_rows(
            "id,updated_at",
            "1,2024-05-01T09:00:00Z",
            "2,2024-05-01T10:00:00Z",
            "3,2024-05-01T10:00:00Z",
        ),
    )
    config = {"files": [orders_entry(tmp_path)]}
    first = sync(config)
    assert first.record_count == 3
    assert first.keys("orders") == {1, 2, 3}
    assert first.state["bookmarks"]["orders"]["keys_at_bookmark"] == [[2], [3]]
    write(
        tmp_path / "orders_2.csv",
        csv_rows("id,updated_at", "4,2024-05-01T12:00:00+02:00", "5,2024-05-01T09:00:00Z"),
    )

    second = sync(config, first.state)

    assert second.record_count == 1
    assert second.keys("orders") == {4}
    bookmark = second.state["bookmarks"]["orders"]
    assert bookmark["replication_key_value"] == "2024-05-01T10:00:00.000000+00:00"
    assert bookmark["keys_at_bookmark"] == [[2], [3], [4]]
    assert sync(config, second.state).record_count == 0


def test_resuming_from_a_mid_sync_state_emits_exactly_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "orders_1.csv", csv_rows("id,updated_at", "1,1", "2,2", "3,2", "4,3", "5,4"))
    monkeypatch.setattr(FileStream, "STATE_MSG_FREQUENCY", 2)
    config = {"files": [orders_entry(tmp_path)]}
    full = sync(config)
    assert full.keys("orders") == {1, 2, 3, 4, 5}
    first_state = next(m["value"] for m in full.messages if m["type"] == "STATE")
    assert first_state["bookmarks"]["orders"]["replication_key_value"] == 2
    assert first_state["bookmarks"]["orders"]["keys_at_bookmark"] == [[2]]

    resumed = sync(config, first_state)

    assert resumed.record_count == 3
    assert resumed.keys("orders") == {3, 4, 5}


def test_rows_at_the_bookmark_are_not_emitted_again_without_keys(tmp_path: Path) -> None:
    write(tmp_path / "orders_1.csv", csv_rows("id,updated_at", "1,10", "2,20"))
    config = {"files": [orders_entry(tmp_path, keys=[])]}
    first = sync(config)
    assert first.keys("orders") == {1, 2}
    assert "keys_at_bookmark" not in first.state["bookmarks"]["orders"]
    write(tmp_path / "orders_2.csv", csv_rows("id,updated_at", "3,20", "4,21"))

    second = sync(config, first.state)

    assert second.record_count == 1
    assert second.keys("orders") == {4}


def test_rows_with_a_null_replication_value_are_emitted_on_full_sync_only(tmp_path: Path) -> None:
    write(tmp_path / "orders_1.csv", csv_rows("id,updated_at", "1,", "2,2024-01-02", "3,"))
    config = {"files": [orders_entry(tmp_path)]}
    first = sync(config)
    assert first.record_count == 3
    assert first.keys("orders") == {1, 2, 3}
    write(tmp_path / "orders_2.csv", csv_rows("id,updated_at", "4,", "5,2024-01-03"))

    second = sync(config, first.state)

    assert second.record_count == 1
    assert second.keys("orders") == {5}


def test_bookmark_written_by_hand_in_another_timestamp_format_is_accepted(tmp_path: Path) -> None:
    write(
        tmp_path / "orders_1.csv",
        csv_rows("id,updated_at", "1,2024-05-01 09:00:00", "2,2024-05-01 10:00:00", "3,2024-05-02"),
    )
    state = {
        "bookmarks": {
            "orders": {
                "replication_key": "updated_at",
                "replication_key_value": "2024-05-01T12:00:00+02:00",
                "keys_at_bookmark": [[9]],
            }
        }
    }

    result = sync({"files": [orders_entry(tmp_path)]}, state)

    assert result.record_count == 2
    assert result.keys("orders") == {2, 3}


def test_mtime_mode_reads_only_changed_files(tmp_path: Path) -> None:
    folder = tmp_path / "drops"
    write(folder / "a.csv", csv_rows("id,v", "1,a", "2,a"), mtime_ns=T0)
    write(folder / "b.csv", csv_rows("id,v", "3,b"), mtime_ns=T0 + 1)
    entry = {"entity": "drops", "path": str(folder), "keys": ["id"]}
    config = {"files": [{**entry, "replication_key": "_sdc_source_file_mtime"}]}
    first = sync(config)
    assert first.record_count == 3
    assert first.keys("drops") == {1, 2, 3}
    assert first.state["bookmarks"]["drops"] == {
        "replication_key": "_sdc_source_file_mtime",
        "replication_key_value": "2023-11-14T22:13:20.000000001+00:00",
        "files_at_bookmark": [str(folder / "b.csv")],
    }
    write(folder / "a.csv", csv_rows("id,v", "1,a2", "2,a2", "4,a2"), mtime_ns=T0 + 5)
    write(folder / "c.csv", csv_rows("id,v", "5,c"), mtime_ns=T0 + 7)

    second = sync(config, first.state)

    records = second.records("drops")
    assert len(records) == 4
    assert second.keys("drops") == {1, 2, 4, 5}
    assert [r["v"] for r in records] == ["a2", "a2", "a2", "c"]
    assert [r["_sdc_source_file_mtime"] for r in records] == [
        *["2023-11-14T22:13:20.000000005+00:00"] * 3,
        "2023-11-14T22:13:20.000000007+00:00",
    ]
    write(folder / "d.csv", csv_rows("id,v", "6,d"), mtime_ns=T0 + 7)  # same mtime as bookmark

    third = sync(config, second.state)

    assert third.record_count == 1
    assert third.keys("drops") == {6}
    assert sync(config, third.state).record_count == 0


# -- errors -------------------------------------------------------------------------------------


def test_missing_path_error_names_entity_and_path(tmp_path: Path, cli: Any) -> None:
    entry = {"entity": "orders", "path": "nowhere/orders_*.csv"}
    config = write_config(tmp_path / "config.json", {"files": [entry]})

    with pytest.raises(ConfigValidationError, match=r"stream 'orders'.*nowhere/orders_\*\.csv"):
        TapFiles(config={"files": [entry]})
    done = cli(tmp_path, "--config", str(config))

    assert done.returncode != 0
    assert "stream 'orders'" in done.stderr
    assert "nowhere/orders_*.csv" in done.stderr
    assert "Traceback" not in done.stderr


def test_unparseable_value_error_names_entity_file_and_line(tmp_path: Path, cli: Any) -> None:
    path = write(tmp_path / "orders.csv", csv_rows("id,amount", "1,5", "2,6", "3,six"))
    entry = {"entity": "orders", "path": "orders.csv", "schema": {"amount": "integer"}}
    expected = "stream 'orders': orders.csv, line 4: column 'amount' expects integer, found 'six'"

    with pytest.raises(FileReadError) as raised:
        sync({"files": [{**entry, "path": str(path)}]})
    done = cli(tmp_path, "--config", str(write_config(tmp_path / "c.json", {"files": [entry]})))

    assert expected.replace("orders.csv", str(path), 1) in str(raised.value)
    assert done.returncode == 1
    assert expected in done.stderr


def test_unparseable_timestamp_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", csv_rows("id,at", "1,2024-01-01", "2,soon"))
    entry = {"entity": "e", "path": str(path), "schema": {"at": "date-time"}}

    with pytest.raises(FileReadError, match=r"e\.csv, line 3: column 'at' expects date-time, found 'soon'"):
        sync({"files": [entry]})


def test_jsonl_key_changing_type_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path / "e.jsonl", '{"id": 1}\n{"id": "two"}\n')

    with pytest.raises(FileReadError, match=r"stream 'e'.*e\.jsonl.*key 'id' holds number values"):
        sync({"files": [{"entity": "e", "path": str(path)}]})


def test_key_that_is_not_a_column_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", csv_rows("id,at", "1,2024-01-01"))
    entry = {"entity": "e", "path": str(path), "replication_key": "updated_at"}

    with pytest.raises(ConfigValidationError, match=r"stream 'e'.*'updated_at' is not a column"):
        sync({"files": [entry]})


# -- volume (its speed is bench/'s to measure, not a test's) ---------------------------------------------


def test_hundred_thousand_rows_are_each_read_once(tmp_path: Path) -> None:
    count = 100_000
    moments = [dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i) for i in range(count)]
    rows = pa.table(
        {
            "id": pa.array(range(count)),
            "amount": pa.array([i * 0.5 for i in range(count)]),
            "name": pa.array([f"name {i}" for i in range(count)]),
            "updated_at": pa.array(moments, pa.timestamp("us", tz="UTC")),
        }
    )
    pa_csv.write_csv(rows, tmp_path / "big.csv")
    entry = {
        "entity": "big",
        "path": str(tmp_path / "big.csv"),
        "keys": ["id"],
        "replication_key": "updated_at",
    }
    stream = TapFiles(config={"files": [entry]}).streams["big"]

    ids = [record["id"] for record in stream.get_records(None)]
    assert len(ids) == count and set(ids) == set(range(count))


def test_batches_end_at_batch_size_bytes_as_well_as_rows(tmp_path: Path) -> None:
    text = "x" * 1000
    path = write(tmp_path / "docs.csv", csv_rows("id,body", *(f"{i},{text}" for i in range(1, 2001))))
    batch_config = {"encoding": {"format": "parquet"}, "storage": {"root": (tmp_path / "out").as_uri()}}
    config = {
        "files": [{"entity": "docs", "path": str(path), "keys": ["id"]}],
        "batch_config": {**batch_config, "batch_size": 100_000},
        "batch_size_bytes": 100_000,  # about 100 rows of 1 kB
    }

    result = sync(config)

    files = [Path(m["manifest"][0].removeprefix("file://")) for m in result.messages if m["type"] == "BATCH"]
    tables = [pq.read_table(f) for f in files]
    assert sum(t.num_rows for t in tables) == 2000
    assert len(tables) >= 15  # not one file of 2,000 rows
    assert all(t.num_rows <= 110 for t in tables)
