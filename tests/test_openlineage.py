"""OpenLineage RunEvents of syncs and dbt models (elt/lineage/openlineage.py, docs/openlineage.md): the sample
project synced and built through the CLI, with its events read from the file transport or received by an
HTTP server in the test."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from elt.lineage.model import AGGREGATE, COPY, FILTER_JOIN, TRANSFORM, Column, ColumnRef, Node
from tests.conftest import run_elt

FILE_BLOCK = """
openlineage:
  namespace: my-shop
  transport: {type: file, path: .elt/openlineage.jsonl}
"""
SYNC_JOB = "sync.tap-files-target-duckdb"
MODELS = ("stg_orders", "stg_order_items", "stg_payments", "fct_orders", "dim_customers", "daily_revenue")

# The parts of the OpenLineage 2-0-2 spec (https://openlineage.io/spec/2-0-2/OpenLineage.json) and of the
# ColumnLineageDatasetFacet 1-2-0 that a consumer relies on.
FACET: dict[str, Any] = {"type": "object", "required": ["_producer", "_schemaURL"]}
FACETS: dict[str, Any] = {"type": "object", "additionalProperties": {"$ref": "#/$defs/facet"}}
DATASET: dict[str, Any] = {
    "type": "object",
    "required": ["namespace", "name"],
    "properties": {
        "namespace": {"type": "string", "minLength": 1},
        "name": {"type": "string", "minLength": 1},
        "facets": FACETS,
        "inputFacets": FACETS,
        "outputFacets": FACETS,
    },
}
INPUT_FIELD: dict[str, Any] = {
    "type": "object",
    "required": ["namespace", "name", "field"],
    "properties": {
        "transformations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"enum": ["DIRECT", "INDIRECT"]}},
            },
        }
    },
}
RUN_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["eventType", "eventTime", "producer", "schemaURL", "run", "job"],
    "properties": {
        "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
        "eventTime": {"type": "string", "format": "date-time"},
        "producer": {"type": "string", "minLength": 1},
        "schemaURL": {"const": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"},
        "run": {
            "type": "object",
            "required": ["runId"],
            "properties": {"runId": {"type": "string", "format": "uuid"}, "facets": FACETS},
        },
        "job": {
            "type": "object",
            "required": ["namespace", "name"],
            "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}, "facets": FACETS},
        },
        "inputs": {"type": "array", "items": DATASET},
        "outputs": {
            "type": "array",
            "items": {
                **DATASET,
                "properties": {
                    **DATASET["properties"],
                    "facets": {
                        **FACETS,
                        "properties": {
                            "columnLineage": {
                                "type": "object",
                                "required": ["fields"],
                                "properties": {
                                    "fields": {
                                        "type": "object",
                                        "additionalProperties": {
                                            "type": "object",
                                            "required": ["inputFields"],
                                            "properties": {
                                                "inputFields": {"type": "array", "items": INPUT_FIELD}
                                            },
                                        },
                                    }
                                },
                            }
                        },
                    },
                },
            },
        },
    },
    "$defs": {"facet": FACET},
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample project with `openlineage:` writing to a file, synced and built once."""
    from elt.scaffold import create_project

    project = tmp_path_factory.mktemp("openlineage") / "shop"
    create_project(project)
    with (project / "elt.yml").open("a") as config:
        config.write(FILE_BLOCK)
    run_elt("sync", "tap-files", "target-duckdb", cwd=project)
    run_elt("build", cwd=project)
    return project


class Collector:
    """An OpenLineage server on 127.0.0.1: keeps each POST's path, headers and JSON body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        return [body for _, _, body in self.requests]


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.server.shutdown()
    server.server.server_close()


def read_events(project: Path) -> list[dict[str, Any]]:
    path = project / ".elt" / "openlineage.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def runs_of(events: list[dict[str, Any]], job: str) -> list[tuple[str, str]]:
    """(eventType, runId) of each event of `job`, in order."""
    return [(e["eventType"], e["run"]["runId"]) for e in events if e["job"]["name"] == job]


def last_event(events: list[dict[str, Any]], job: str, state: str) -> dict[str, Any]:
    return [e for e in events if e["job"]["name"] == job and e["eventType"] == state][-1]


def model(name: str) -> str:
    return f"model.elt_demo.{name}"


@contextmanager
def openlineage_block(project: Path, block: str) -> Iterator[None]:
    """elt.yml with `block` in place of the file transport's, for the length of a test."""
    config = project / "elt.yml"
    original = config.read_text()
    config.write_text(original.replace(FILE_BLOCK, textwrap.dedent(block)))
    try:
        yield
    finally:
        config.write_text(original)


def facet_producers(value: Any) -> Iterator[str]:
    """The `_producer` of every facet in an event."""
    if isinstance(value, dict):
        if "_producer" in value:
            yield value["_producer"]
        for item in value.values():
            yield from facet_producers(item)
    elif isinstance(value, list):
        for item in value:
            yield from facet_producers(item)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the file transport ----------------------------------------------------------------------------------


def test_sync_and_each_model_send_start_then_complete_of_one_run(shop: Path) -> None:
    events = read_events(shop)

    for job in (SYNC_JOB, *(model(m) for m in MODELS), "seed.elt_demo.order_statuses"):
        [(start, run_id), (end, end_run_id)] = runs_of(events, job)
        assert (start, end) == ("START", "COMPLETE"), job
        assert run_id == end_run_id, job
    assert not [e for e in events if e["job"]["name"].startswith("test.")]  # tests build no dataset
    assert {e["job"]["namespace"] for e in events} == {"my-shop"}
    assert len({e["run"]["runId"] for e in events}) == len(events) // 2


def test_every_event_follows_the_openlineage_spec(shop: Path) -> None:
    validator = jsonschema.Draft202012Validator(
        RUN_EVENT, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )

    for event in read_events(shop):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(event)]
        assert not errors, (event["job"]["name"], event["eventType"], errors)
        assert uuid.UUID(event["run"]["runId"]).version == 7
        assert datetime.fromisoformat(event["eventTime"]).tzinfo is not None
        assert event["producer"].startswith("https://")
        assert set(facet_producers(event)) == {event["producer"]}


def test_sync_completes_with_each_table_its_schema_column_lineage_and_rows(shop: Path) -> None:
    start = last_event(read_events(shop), SYNC_JOB, "START")
    complete = last_event(read_events(shop), SYNC_JOB, "COMPLETE")
    warehouse = f"duckdb://{shop.resolve() / '.elt' / 'warehouse.duckdb'}"

    streams = {"customers", "products", "orders", "order_items", "payments"}
    read = {(d["namespace"], d["name"]) for d in complete["inputs"]}
    written = {(d["namespace"], d["name"]) for d in start["outputs"]}
    assert read == {("tap://tap-files", s) for s in streams}
    assert written == {(warehouse, f"tap_files.{s}") for s in streams}
    orders = next(d for d in complete["outputs"] if d["name"] == "tap_files.orders")
    csv_rows = sum(1 for _ in (shop / "data" / "orders.csv").open()) - 1
    assert orders["outputFacets"]["outputStatistics"]["rowCount"] == csv_rows
    columns = {f["name"]: f["type"] for f in orders["facets"]["schema"]["fields"]}
    assert columns["order_id"] == "BIGINT" and columns["updated_at"] == "TIMESTAMPTZ"
    assert orders["facets"]["columnLineage"]["fields"]["order_id"]["inputFields"] == [
        {
            "namespace": "tap://tap-files",
            "name": "orders",
            "field": "order_id",
            "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}],
        }
    ]
    stream = next(d for d in complete["inputs"] if d["name"] == "orders")
    assert {f["name"]: f["type"] for f in stream["facets"]["schema"]["fields"]}["updated_at"] == "date-time"


def test_fct_orders_completes_with_its_schema_and_column_lineage(shop: Path) -> None:
    events = read_events(shop)
    complete = last_event(events, model("fct_orders"), "COMPLETE")
    warehouse = f"duckdb://{shop.resolve() / '.elt' / 'warehouse.duckdb'}"

    parents = {"stg_orders", "stg_order_items", "stg_payments", "order_statuses"}
    assert {d["name"] for d in complete["inputs"]} == {f"analytics.{p}" for p in parents}
    [output] = complete["outputs"]
    assert (output["namespace"], output["name"]) == (warehouse, "analytics.fct_orders")
    columns = [f["name"] for f in output["facets"]["schema"]["fields"]]
    assert columns[:3] == ["order_id", "customer_id", "order_status"]
    assert {"order_total", "amount_paid", "is_revenue"} <= set(columns)
    lineage = output["facets"]["columnLineage"]["fields"]
    assert {
        "namespace": warehouse,
        "name": "analytics.stg_order_items",
        "field": "line_total",
        "transformations": [{"type": "DIRECT", "subtype": "AGGREGATION"}],
    } in lineage["order_total"]["inputFields"]
    assert {
        "namespace": warehouse,
        "name": "analytics.stg_orders",
        "field": "order_id",
        "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}],
    } in lineage["order_id"]["inputFields"]
    job_facets = complete["job"]["facets"]
    assert job_facets["jobType"] == {**job_facets["jobType"], "integration": "DBT", "jobType": "MODEL"}
    assert "analytics" in job_facets["sql"]["query"] and job_facets["sql"]["dialect"] == "duckdb"


def test_datasets_connect_the_sync_to_the_models_that_read_its_tables(shop: Path) -> None:
    events = read_events(shop)
    written = {(d["namespace"], d["name"]) for d in last_event(events, SYNC_JOB, "COMPLETE")["outputs"]}
    staged = last_event(events, model("stg_order_items"), "START")

    assert {(d["namespace"], d["name"]) for d in staged["inputs"]} <= written
    table = last_event(events, model("dim_customers"), "COMPLETE")["outputs"][0]
    [(rows,)] = _query(shop, "select count(*) from analytics.dim_customers")
    assert table["outputFacets"]["outputStatistics"]["rowCount"] == rows


def test_a_failing_model_sends_fail_with_dbt_error(shop: Path) -> None:
    broken = shop / "models" / "models" / "marts" / "broken_orders.sql"
    broken.write_text("select no_such_column from {{ ref('stg_orders') }}\n")
    try:
        proc = run_elt("dbt", "run", "--select", "broken_orders", cwd=shop, check=False)
    finally:
        broken.unlink()

    assert proc.returncode == 1
    events = read_events(shop)
    [(start, run_id), (end, end_run_id)] = runs_of(events, model("broken_orders"))
    assert (start, end) == ("START", "FAIL") and run_id == end_run_id
    fail = last_event(events, model("broken_orders"), "FAIL")
    error = fail["run"]["facets"]["errorMessage"]
    assert "no_such_column" in error["message"] and error["programmingLanguage"] == "SQL"
    assert [d["name"] for d in fail["inputs"]] == ["analytics.stg_orders"]
    assert "OpenLineage" not in proc.stdout + proc.stderr


def test_a_failing_sync_sends_start_and_fail_with_the_error(shop: Path) -> None:
    data = shop / "data" / "payments.jsonl"
    block = """
        openlineage:
          transport: {type: file, path: .elt/failed-sync.jsonl}
        """
    with openlineage_block(shop, block):
        data.rename(data.with_suffix(".moved"))
        try:
            proc = run_elt("sync", "tap-files", "target-duckdb", cwd=shop, check=False)
        finally:
            data.with_suffix(".moved").rename(data)

    assert proc.returncode == 1
    events = [json.loads(line) for line in (shop / ".elt" / "failed-sync.jsonl").read_text().splitlines()]
    [(start, run_id), (end, end_run_id)] = runs_of(events, SYNC_JOB)
    assert (start, end) == ("START", "FAIL") and run_id == end_run_id
    error = events[-1]["run"]["facets"]["errorMessage"]
    assert "payments.jsonl" in error["message"] and error["programmingLanguage"] == "python"


# -- the HTTP transport ----------------------------------------------------------------------------------


def test_http_transport_sends_events_with_the_api_key_only_in_the_authorization_header(
    shop: Path, collector: Collector
) -> None:
    secret = "ol-key-" + uuid.uuid4().hex
    block = f"""
        openlineage:
          transport: {{type: http, url: "{collector.url}", api_key: "${{OL_TEST_API_KEY}}", timeout: 5}}
        """
    env = {"OL_TEST_API_KEY": secret}
    with openlineage_block(shop, block):
        sync = run_elt("sync", "tap-files", "target-duckdb", cwd=shop, env=env)

    events = collector.events()
    assert [state for state, _ in runs_of(events, SYNC_JOB)] == ["START", "COMPLETE"]
    assert {e["job"]["namespace"] for e in events} == {"elt-demo"}  # the project_id
    assert {path for path, _, _ in collector.requests} == {"/api/v1/lineage"}
    assert {headers["Authorization"] for _, headers, _ in collector.requests} == {f"Bearer {secret}"}
    assert not [body for _, _, body in collector.requests if secret in json.dumps(body)]
    assert secret not in sync.stdout + sync.stderr
    leaked = [p for p in (shop / ".elt").rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaked


def test_openlineage_url_alone_sends_to_that_server(shop: Path, collector: Collector) -> None:
    with openlineage_block(shop, ""):
        run_elt("sync", "tap-files", "target-duckdb", cwd=shop, env={"OPENLINEAGE_URL": collector.url})

    assert [state for state, _ in runs_of(collector.events(), SYNC_JOB)] == ["START", "COMPLETE"]


def test_an_unreachable_server_is_one_warning_not_a_failure(shop: Path) -> None:
    block = f"""
        openlineage:
          transport: {{type: http, url: "http://127.0.0.1:{free_port()}", timeout: 1}}
        """
    with openlineage_block(shop, block):
        proc = run_elt("sync", "tap-files", "target-duckdb", "--format", "json", cwd=shop)

    assert json.loads(proc.stdout)["state_id"]
    warnings = [line for line in proc.stderr.splitlines() if "OpenLineage" in line]
    assert len(warnings) == 1, proc.stderr
    assert "START event of sync.tap-files-target-duckdb could not be sent" in warnings[0]
    assert "later events of this run are not sent" in warnings[0]


# -- no configuration ------------------------------------------------------------------------------------


def test_without_openlineage_syncs_and_models_do_not_import_the_client(shop: Path) -> None:
    script = """
        import sys
        from elt.dbt import run_dbt
        from elt.project import load_project
        from elt.sync import run_sync

        project = load_project()
        run_sync(project, "tap-files", "target-duckdb")
        assert run_dbt(project, ["run", "--select", "stg_orders"]).success
        print(sorted(m for m in sys.modules if m.startswith("openlineage")))
    """
    before = len(read_events(shop))
    with openlineage_block(shop, ""):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENLINEAGE")}
        command = [sys.executable, "-c", textwrap.dedent(script)]
        proc = subprocess.run(command, cwd=shop, env=env, capture_output=True, text=True, check=False)

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert len(read_events(shop)) == before


def test_schema_names_a_wrong_transport(shop: Path) -> None:
    block = """
        openlineage:
          transport: {type: kafka, url: marquez:5000}
        """
    with openlineage_block(shop, block):
        proc = run_elt("validate", cwd=shop, check=False)

    assert proc.returncode == 2
    expected = "expected one of 'file', 'http', 'console', got string 'kafka'"
    assert f"key 'openlineage.transport.type': {expected}" in proc.stderr
    assert "key 'openlineage.transport.url': expected an http:// or https:// URL" in proc.stderr


# -- names -----------------------------------------------------------------------------------------------


def test_tables_are_named_as_openlineage_names_them(write_project: Callable[[str], Path]) -> None:
    from elt.lineage.openlineage import dbt_warehouse, target_table
    from elt.plugins import find_plugin
    from elt.project import load_project

    root = write_project("""
        version: 1
        plugins:
          extractors:
            - {name: tap-files, config: {files: []}}
          loaders:
            - name: target-postgres
              config: {host: 127.0.0.1, port: 5433, database: shop, user: loader}
            - name: target-duckdb
              config: {path: wh.duckdb, schema_mapping: {public: {target_schema: raw}}}
            - {name: target-jsonl, pip_url: target-jsonl}
          utilities:
            - name: dbt
              config: {target: postgres, host: 127.0.0.1, port: 5433, dbname: shop}
        """)
    project = load_project(root)
    schema = {
        "properties": {"Order_ID": {"type": "integer"}, "placed": {"type": "string", "format": "date-time"}}
    }

    def table(target: str, config: dict[str, Any]) -> tuple[str, str, list[tuple[str, str | None, str]]]:
        found = target_table(
            project, find_plugin(project, target, "loaders"), config, "public-Orders", schema
        )
        return found.namespace, found.name, list(found.columns)

    postgres = {"host": "127.0.0.1", "port": 5433, "database": "shop", "default_target_schema": "raw"}
    assert table("target-postgres", postgres) == (
        "postgres://localhost:5433", "shop.raw.public_orders",
        [("order_id", "BIGINT", "Order_ID"), ("placed", "TIMESTAMPTZ", "placed")],
    )  # fmt: skip
    duckdb = {"path": "wh.duckdb", "schema_mapping": {"public": {"target_schema": "raw"}}}
    assert table("target-duckdb", duckdb) == (
        f"duckdb://{root.resolve() / 'wh.duckdb'}", "raw.orders",
        [("Order_ID", "BIGINT", "Order_ID"), ("placed", "TIMESTAMPTZ", "placed")],
    )  # fmt: skip
    jsonl = table("target-jsonl", {"default_target_schema": "raw"})
    assert jsonl[:2] == ("target://target-jsonl", "raw.public-Orders")
    assert jsonl[2][1] == ("placed", "date-time", "placed")
    warehouse = dbt_warehouse(project)
    assert (warehouse.namespace, warehouse.name("analytics.fct")) == (
        "postgres://localhost:5433",
        "shop.analytics.fct",
    )


# -- column lineage from a lineage graph -------------------------------------------------------------------


def test_column_lineage_facet_maps_each_kind_of_derivation() -> None:
    from openlineage.client.serde import Serde

    from elt.lineage.openlineage import column_lineage_facet

    fct = Node(
        id="model.p.fct",
        type="model",
        name="fct",
        relation="analytics.fct",
        columns=(
            Column("order_id", upstream=(ColumnRef("model.p.orders", "id", COPY),)),
            Column("total", upstream=(ColumnRef("model.p.items", "price", AGGREGATE),)),
            Column("day", upstream=(ColumnRef("model.p.orders", "ordered_at", TRANSFORM),)),
            Column("note", upstream=(ColumnRef("block:x.py:f", "note", COPY),)),  # not locatable
            Column("constant"),
        ),
        indirect=(ColumnRef("model.p.orders", "status", FILTER_JOIN),),
    )
    places = {"model.p.orders": ("duckdb:///w.duckdb", "analytics.orders"),
              "model.p.items": ("duckdb:///w.duckdb", "analytics.items")}  # fmt: skip

    facet = Serde.to_dict(column_lineage_facet(fct, places.get))

    def inputs(column: str) -> list[tuple[str, str, str, str | None]]:
        return [
            (f["name"], f["field"], f["transformations"][0]["type"], f["transformations"][0].get("subtype"))
            for f in facet["fields"][column]["inputFields"]
        ]

    status = ("analytics.orders", "status", "INDIRECT", None)
    assert inputs("order_id") == [("analytics.orders", "id", "DIRECT", "IDENTITY"), status]
    assert inputs("total") == [("analytics.items", "price", "DIRECT", "AGGREGATION"), status]
    assert inputs("day") == [("analytics.orders", "ordered_at", "DIRECT", "TRANSFORMATION"), status]
    assert inputs("note") == inputs("constant") == [status]  # what decides the rows decides every column
    assert facet["_schemaURL"].endswith("ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet")


def test_column_lineage_facet_is_none_without_upstream_columns() -> None:
    from elt.lineage.openlineage import column_lineage_facet

    seed = Node(id="seed.p.s", type="seed", name="s", relation="analytics.s", columns=(Column("a"),))

    assert column_lineage_facet(seed, lambda _: ("duckdb:///w.duckdb", "x")) is None


def _query(project: Path, sql: str) -> list[tuple[Any, ...]]:
    import duckdb

    with duckdb.connect(str(project / ".elt" / "warehouse.duckdb"), read_only=True) as db:
        return db.execute(sql).fetchall()
