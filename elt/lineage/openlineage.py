"""OpenLineage RunEvents of syncs and dbt models, sent to a file, the console or an HTTP endpoint.

    openlineage:
      namespace: my-shop                                    # default: project_id, else the folder's name
      transport: {type: file, path: .elt/openlineage.jsonl}  # or http (url, endpoint, api_key), console

A sync is the job `sync.<tap>-<target>`: START once its catalog is selected, reading each selected stream
(`tap://<tap>`) and writing its table; COMPLETE after its state is saved, each table with its schema, its
columns' lineage from the stream and the rows written; FAIL with the error. Each dbt model, seed and
snapshot that a `run`, `build`, `seed`, `snapshot` or `retry` executes is the job of its unique id: START
when dbt starts it, its parents as inputs; COMPLETE (schema, column lineage from `load_lineage`, rows) or
FAIL (dbt's error) once the command has ended, because the lineage graph is read from the manifest the
command writes at its end. docs/openlineage.md names every job and dataset.

Without `openlineage:` (and without OPENLINEAGE_URL) `sync_events` and `dbt_events` return objects that do
nothing, and openlineage-python is not imported. Lineage never fails a run: the first event that cannot be
sent is reported as a warning and the later events of that sync or dbt command are dropped; an event that
cannot be built, or a lineage graph that cannot be read, is reported once and the events go out without it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from elt import __version__
from elt.errors import EltError, ProjectError
from elt.lineage.model import AGGREGATE, COPY, TRANSFORM, LineageGraph, Node
from elt.logs import Redactor
from elt.project import Project

if TYPE_CHECKING:
    from openlineage.client.event_v2 import InputDataset, OutputDataset, RunEvent

    from elt.dbt import NodeResult
    from elt.logs import Reporter
    from elt.plugins import Plugin
    from elt.sync import SyncResult

TRANSPORTS = ("file", "http", "console")
DEFAULT_PATH = ".elt/openlineage.jsonl"
DEFAULT_ENDPOINT = "api/v1/lineage"
DEFAULT_TIMEOUT = 5.0
# urllib3's Retry for the HTTP transport: two more tries, not the client's five (9 s of backoff), as a run
# waits for them.
HTTP_RETRY = {
    "total": 2, "connect": 2, "read": 2, "backoff_factor": 0.3,
    "status_forcelist": [500, 502, 503, 504], "allowed_methods": ["HEAD", "POST"],
}  # fmt: skip
PRODUCER = f"https://pypi.org/project/elt/{__version__}/"  # a URI naming the code that made the events
# dbt commands whose nodes change the warehouse; `compile`, `docs generate` and `show` start nodes too.
DBT_COMMANDS = frozenset({"run", "build", "seed", "snapshot", "retry"})
DBT_JOB_TYPES = {"model": "MODEL", "seed": "SEED", "snapshot": "SNAPSHOT"}
DBT_DONE = frozenset({"success", "pass", "warn"})
# How a column derives from an upstream column (elt.lineage.model) as an OpenLineage transformation.
DIRECT_SUBTYPES = {COPY: "IDENTITY", TRANSFORM: "TRANSFORMATION", AGGREGATE: "AGGREGATION"}


@dataclass(frozen=True)
class OpenLineageConfig:
    """Where events go (`openlineage:` in elt.yml, or the OPENLINEAGE_* variables) and the job namespace."""

    namespace: str
    transport: str = "file"  # file | http | console
    path: Path | None = None  # file: one event per line, appended
    url: str | None = None  # http: the server, `endpoint` relative to it
    endpoint: str = DEFAULT_ENDPOINT
    api_key: str | None = field(default=None, repr=False)  # http: sent as `Authorization: Bearer KEY`
    timeout: float = DEFAULT_TIMEOUT

    def destination(self) -> str:
        """Where the events go, for messages (no credentials)."""
        if self.transport == "file":
            return str(self.path)
        if self.transport == "console":
            return "the console (stderr)"
        parts = urlsplit(self.url or "")
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}/{self.endpoint.lstrip('/')}"


def openlineage_config(project: Project) -> OpenLineageConfig | None:
    """The project's `openlineage:` settings; an HTTP transport to OPENLINEAGE_URL when there are none.

    None when neither is set, or when OPENLINEAGE_DISABLED is true. Raises ProjectError naming the key
    when a `${VAR}` of the block has no value.
    """
    variables = project.variables
    if variables.get("OPENLINEAGE_DISABLED", "").strip().lower() in ("1", "true", "yes"):
        return None
    default_namespace = str(project.data.get("project_id") or project.root.name)
    block = project.data.get("openlineage")
    if block is None:
        url = variables.get("OPENLINEAGE_URL")
        if not url:
            return None
        return OpenLineageConfig(
            namespace=variables.get("OPENLINEAGE_NAMESPACE") or default_namespace,
            transport="http",
            url=url,
            endpoint=variables.get("OPENLINEAGE_ENDPOINT") or DEFAULT_ENDPOINT,
            api_key=variables.get("OPENLINEAGE_API_KEY") or None,
        )
    for miss in project.missing:
        if miss.path == "openlineage" or miss.path.startswith("openlineage."):
            raise ProjectError(
                f"{project.where(miss.path)}: key '{miss.path}': environment variable "
                f"'{miss.variable}' is not set",
                hint=f"set it, add it to .env, or give a default: ${{{miss.variable}:-value}}",
            )
    from elt.secrets import resolve_secrets  # `api_key: ${secret:…}`, resolved only when events are sent

    transport = dict(resolve_secrets(project, block.get("transport") or {}, "openlineage.transport"))
    kind = str(transport.get("type") or "file")
    path = Path(str(transport.get("path") or DEFAULT_PATH))
    return OpenLineageConfig(
        namespace=str(block.get("namespace") or default_namespace),
        transport=kind,
        path=(path if path.is_absolute() else project.root / path) if kind == "file" else None,
        url=str(transport["url"]) if transport.get("url") else None,
        endpoint=str(transport.get("endpoint") or DEFAULT_ENDPOINT),
        api_key=str(transport["api_key"]) if transport.get("api_key") else None,
        timeout=float(transport.get("timeout") or DEFAULT_TIMEOUT),
    )


# -- sending ---------------------------------------------------------------------------------------------


class Emitter:
    """Sends events through the configured transport, one at a time (dbt calls back from its threads).

    The first event that cannot be sent is warned of and ends sending: a lineage server that is down
    would otherwise cost every later event its timeout. Each kind of problem is warned of once.
    """

    def __init__(self, config: OpenLineageConfig, warn: Callable[[str], None], redact: Redactor) -> None:
        from openlineage.client.event_v2 import set_producer

        set_producer(PRODUCER)  # the producer of the facets built from now on: the client keeps it globally
        self.config = config
        self.redact = Redactor(redact.secrets)
        secrets = {config.api_key or "", urlsplit(config.url or "").password or ""}
        self.redact.add(s for s in secrets if s)
        self._warn = warn
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._send: Callable[[RunEvent], None] | None = None
        self._close: Callable[[], Any] | None = None
        self._stopped = False

    def emit(self, event: RunEvent) -> None:
        with self._lock:
            if self._stopped:
                return
            try:
                if self._send is None:
                    self._send = self._open()
                self._send(event)
            except Exception as error:  # any failure of the transport: never the run's
                self._stopped = True
                state = getattr(event.eventType, "value", event.eventType)
                self.warn(
                    "send",
                    f"OpenLineage: the {state} event of {event.job.name} could not be sent to "
                    f"{self.config.destination()} ({type(error).__name__}: {error}); "
                    "later events of this run are not sent",
                )

    def warn(self, kind: str, message: str) -> None:
        """Report `message` unless a problem of the same kind was reported already."""
        if kind not in self._warned:
            self._warned.add(kind)
            self._warn(self.redact(message))

    def close(self) -> None:
        with self._lock:
            if self._close is not None:
                self._close()
                self._close = None
            self._send = None

    def _open(self) -> Callable[[RunEvent], None]:
        from openlineage.client.serde import Serde

        config = self.config
        if config.transport == "http":
            return self._open_http()
        if config.transport == "console":

            def to_console(event: RunEvent) -> None:
                sys.stderr.write(Serde.to_json(event) + "\n")
                sys.stderr.flush()

            return to_console
        path = config.path
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)

        def to_file(event: RunEvent) -> None:
            # One write of the whole line on an O_APPEND file: lines of steps running at the same time
            # in other processes do not interleave.
            data = (Serde.to_json(event) + "\n").encode()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

        return to_file

    def _open_http(self) -> Callable[[RunEvent], None]:
        from openlineage.client.transport.http import (
            ApiKeyTokenProvider,
            HttpConfig,
            HttpTransport,
            TokenProvider,
        )

        config = self.config
        auth = ApiKeyTokenProvider({"api_key": config.api_key}) if config.api_key else TokenProvider({})
        transport = HttpTransport(
            HttpConfig(
                url=str(config.url),
                endpoint=config.endpoint,
                timeout=config.timeout,
                auth=auth,
                retry=HTTP_RETRY,
            )
        )
        self._close = getattr(transport, "close", None)  # openlineage-python < 1.3x has none

        def to_server(event: RunEvent) -> None:
            transport.emit(event)  # raises on a connection error and on an HTTP error status

        return to_server


def _emitter(project: Project, warn: Callable[[str], None], redact: Redactor) -> Emitter | None:
    try:
        config = openlineage_config(project)
    except EltError as error:
        warn(f"OpenLineage: no events are sent: {error}")
        return None
    return None if config is None else Emitter(config, warn, redact)


@contextmanager
def _guard(emitter: Emitter, what: str) -> Iterator[None]:
    """Report an error of building events instead of raising it into the sync or dbt."""
    try:
        yield
    except Exception as error:  # lineage must never fail the run it describes
        emitter.warn("build", f"OpenLineage: {what} failed ({type(error).__name__}: {error})")


# -- syncs -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A table a sync writes: its dataset, and per column (name, type, the stream property it holds)."""

    namespace: str
    name: str
    columns: tuple[tuple[str, str | None, str], ...]


@dataclass(frozen=True)
class _Stream:
    name: str
    properties: dict[str, Any]  # the selected properties' JSON Schemas
    table: Table


def sync_events(project: Project, tap: Plugin, target: Plugin, reporter: Reporter) -> SyncEvents:
    """The events of one sync of `tap` into `target`; warnings go to `reporter`, masked as it masks."""
    emitter = _emitter(
        project, lambda message: reporter.event("openlineage_warning", message), reporter.redact
    )
    return SyncEvents(emitter, project, tap, target)


class SyncEvents:
    """START, COMPLETE and FAIL of one sync; each does nothing when OpenLineage is not configured."""

    def __init__(self, emitter: Emitter | None, project: Project, tap: Plugin, target: Plugin) -> None:
        self.emitter = emitter
        self.project = project
        self.tap = tap
        self.target = target
        self.job = f"sync.{tap.name}-{target.name}"
        self.run_id = ""
        self.streams: list[_Stream] = []

    def start(self, catalog: dict[str, Any], target_config: dict[str, Any]) -> None:
        """The sync reads the selected streams of `catalog` into the tables of `target_config`."""
        if self.emitter is None:
            return
        with _guard(self.emitter, f"the START event of {self.job}"):
            self.streams = _selected_streams(self.project, self.target, target_config, catalog)
        self._start()

    def complete(self, result: SyncResult) -> None:
        """The sync succeeded and its state is saved: each table with its schema, lineage and rows."""
        emitter = self.emitter
        if emitter is None:
            return
        with _guard(emitter, f"the COMPLETE event of {self.job}"):
            outputs = []
            for stream in self.streams:
                stats = result.streams.get(stream.name)
                outputs.append(self._table(stream, rows=stats.rows if stats else 0, facets=True))
            emitter.emit(self._event("COMPLETE", self._inputs(), outputs))
        emitter.close()

    def fail(self, error: BaseException) -> None:
        """The sync failed (FAIL) or was stopped (ABORT, on an interrupt), with the error."""
        emitter = self.emitter
        if emitter is None:
            return
        if not self.run_id:
            self._start()
        with _guard(emitter, f"the FAIL event of {self.job}"):
            state = "FAIL" if isinstance(error, Exception) else "ABORT"
            outputs = [self._table(s) for s in self.streams]
            facets = {"errorMessage": _error_facet(error, emitter.redact, "python")}
            emitter.emit(self._event(state, self._inputs(), outputs, run_facets=facets))
        emitter.close()

    def _start(self) -> None:
        assert self.emitter is not None
        with _guard(self.emitter, f"the START event of {self.job}"):
            self.run_id = _new_run_id()
            self.emitter.emit(self._event("START", self._inputs(), [self._table(s) for s in self.streams]))

    def _event(
        self,
        state: str,
        inputs: list[InputDataset],
        outputs: list[OutputDataset],
        run_facets: dict[str, Any] | None = None,
    ) -> RunEvent:
        assert self.emitter is not None
        from openlineage.client.facet_v2 import job_type_job

        job_type = job_type_job.JobTypeJobFacet(processingType="BATCH", integration="ELT", jobType="SYNC")
        return _run_event(
            state, self.run_id, self.emitter.config.namespace, self.job, {"jobType": job_type},
            run_facets or {}, inputs, outputs,
        )  # fmt: skip

    def _inputs(self) -> list[InputDataset]:
        from openlineage.client.event_v2 import InputDataset

        namespace = tap_namespace(self.tap.name)
        return [
            InputDataset(
                namespace, s.name, facets={"schema": _json_schema_facet(s.properties)}, inputFacets=None
            )
            for s in self.streams
        ]

    def _table(self, stream: _Stream, *, rows: int | None = None, facets: bool = False) -> OutputDataset:
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import output_statistics_output_dataset as statistics

        table = stream.table
        dataset_facets: dict[str, Any] = {}
        if facets:
            dataset_facets["schema"] = _schema_facet((name, kind, None) for name, kind, _ in table.columns)
            lineage = _copy_lineage_facet(table, tap_namespace(self.tap.name), stream.name)
            if lineage is not None:
                dataset_facets["columnLineage"] = lineage
        output_facets: dict[str, Any] = {}
        if rows is not None:
            output_facets["outputStatistics"] = statistics.OutputStatisticsOutputDatasetFacet(rowCount=rows)
        return OutputDataset(
            table.namespace, table.name, facets=dataset_facets or None, outputFacets=output_facets or None
        )


def tap_namespace(tap: str) -> str:
    """The dataset namespace of a tap's streams."""
    return f"tap://{tap}"


def _selected_streams(
    project: Project, target: Plugin, target_config: dict[str, Any], catalog: dict[str, Any]
) -> list[_Stream]:
    from elt.singer import selection_report

    entries = {e.get("tap_stream_id") or e.get("stream"): e for e in catalog.get("streams", [])}
    streams = []
    for selection in selection_report(catalog):
        if not selection.selected:
            continue
        schema = dict(entries[selection.stream].get("schema") or {})
        props = schema.get("properties") or {}
        chosen = {p.name for p in selection.properties if p.status != "excluded"}
        schema["properties"] = {name: prop for name, prop in props.items() if name in chosen}
        table = target_table(project, target, target_config, selection.stream, schema)
        streams.append(_Stream(selection.stream, schema["properties"], table))
    return streams


def target_table(
    project: Project, target: Plugin, config: dict[str, Any], stream: str, schema: dict[str, Any]
) -> Table:
    """The table `target` writes a stream into, named as OpenLineage names it (see Warehouse).

    The built-in targets say where, under which name and with which columns; any other target's table is
    `target://<target>` / `<default_target_schema>.<stream>`, a column per property.
    """
    if target.builtin == "target-duckdb":
        from targets.target_duckdb import settings as duckdb_settings
        from targets.target_duckdb import types as duckdb_types

        loader = duckdb_settings.LoaderSettings.from_config(duckdb_settings.normalize_config(config))
        path = loader.path if loader.path.is_absolute() else project.root / loader.path
        warehouse = Warehouse(f"duckdb://{os.path.abspath(path)}")
        table_schema, table = loader.target_table(stream)
        return Table(
            warehouse.namespace,
            warehouse.name(f"{table_schema}.{table}"),
            tuple((c.name, c.type, c.name) for c in duckdb_types.columns_of(schema)),
        )
    if target.builtin == "target-postgres":
        from psycopg.conninfo import conninfo_to_dict

        from targets.target_postgres import settings as pg_settings
        from targets.target_postgres import types as pg_types

        pg_loader = pg_settings.LoaderSettings.from_config(pg_settings.normalize_config(config))
        params = conninfo_to_dict(pg_loader.conninfo)
        env = {**os.environ, **project.env(), **target.env}  # libpq's defaults, as the target gets them
        warehouse = postgres_warehouse(
            str(params.get("host") or env.get("PGHOST") or ""),
            str(params.get("port") or env.get("PGPORT") or 5432),
            str(
                params.get("dbname") or env.get("PGDATABASE") or params.get("user") or env.get("PGUSER") or ""
            ),
        )
        table_schema, part = pg_loader.target_schema(stream)
        return Table(
            warehouse.namespace,
            warehouse.name(f"{table_schema}.{pg_types.stream_table_name(part)}"),
            tuple((c.name, c.type, c.field) for c in pg_types.columns_of(schema)),
        )
    prefix = config.get("default_target_schema")
    return Table(
        f"target://{target.name}",
        f"{prefix}.{stream}" if prefix else stream,
        tuple((name, _json_type(prop), name) for name, prop in (schema.get("properties") or {}).items()),
    )


# -- dbt -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Warehouse:
    """Where tables live, as OpenLineage names them: `duckdb://<file>` with `schema.table`, or
    `postgres://host:port` with `database.schema.table` (OpenLineage's naming for PostgreSQL)."""

    namespace: str
    database: str | None = None

    def name(self, relation: str) -> str:
        """The dataset name of `schema.table`."""
        return f"{self.database}.{relation}" if self.database else relation


def postgres_warehouse(host: str, port: str, database: str) -> Warehouse:
    """A PostgreSQL server's warehouse; the local server is `localhost` however it is reached (a loopback
    address, a Unix socket, libpq's default), so that a target and dbt name its tables alike."""
    if host in ("", "127.0.0.1", "::1") or host.startswith("/"):
        host = "localhost"
    return Warehouse(f"postgres://{host}:{port}", database)


def dbt_warehouse(project: Project) -> Warehouse:
    """The warehouse dbt builds in, in the environment in force."""
    from elt.dbt import dbt_env

    env = dbt_env(project)
    if env["ELT_DBT_TARGET"] == "postgres":
        return postgres_warehouse(env["ELT_PG_HOST"], env["ELT_PG_PORT"], env["ELT_PG_DBNAME"])
    return Warehouse(f"duckdb://{os.path.abspath(env['ELT_WAREHOUSE_PATH'])}")


def dbt_events(project: Project, args: list[str], manifest: Path, notes: list[str]) -> DbtEvents:
    """The events of the nodes of one dbt command (`args`); warnings are added to `notes`.

    `manifest` is where the command writes its manifest: dbt writes it once the project is parsed, before
    the first node starts, and again at the end with the compiled SQL.
    """
    emitter = None
    if args and args[0] in DBT_COMMANDS:
        from elt.dbt import dbt_settings
        from elt.plugins import secret_values

        emitter = _emitter(project, notes.append, Redactor(secret_values(dbt_settings(project))))
    return DbtEvents(emitter, project, manifest)


@dataclass
class _NodeRun:
    run_id: str
    resource_type: str
    output: tuple[str, str] | None  # (namespace, name) of the relation it builds
    inputs: list[tuple[str, str]]
    ended_at: str | None = None


class DbtEvents:
    """START of each dbt node as dbt starts it; COMPLETE / FAIL / ABORT of each when the command ended.

    Does nothing when OpenLineage is not configured or the command builds nothing.
    """

    def __init__(self, emitter: Emitter | None, project: Project, manifest: Path) -> None:
        self.emitter = emitter
        self.project = project
        self.manifest_path = manifest
        self.runs: dict[str, _NodeRun] = {}
        self._manifest: dict[str, Any] | None = None
        self._warehouse: Warehouse | None = None
        self._lock = threading.Lock()

    def on_dbt_event(self, event: Any) -> None:
        """dbt's callback: NodeStart and NodeFinished of models, seeds and snapshots."""
        emitter = self.emitter
        if emitter is None or event.info.name not in ("NodeStart", "NodeFinished"):
            return
        info = event.data.node_info
        if info.resource_type not in DBT_JOB_TYPES:
            return
        if event.info.name == "NodeFinished":
            with self._lock:
                if info.unique_id in self.runs:
                    self.runs[info.unique_id].ended_at = _now()
            return
        with _guard(emitter, f"the START event of {info.unique_id}"):
            with self._lock:
                relation = info.node_relation
                warehouse = self.warehouse()
                output = None
                if relation is not None and relation.alias:
                    output = (warehouse.namespace, warehouse.name(f"{relation.schema}.{relation.alias}"))
                run = _NodeRun(_new_run_id(), info.resource_type, output, self._parents(info.unique_id))
                self.runs[info.unique_id] = run
            emitter.emit(self._event("START", info.unique_id, run))

    def finish(self, nodes: list[NodeResult], failure: str | None = None) -> None:
        """The command ended: each started node's outcome, with the lineage graph's schema and columns.

        `failure` is why dbt stopped when it could not finish (nodes without a result fail with it).
        """
        emitter = self.emitter
        if emitter is None or not self.runs:
            return
        results = {n.unique_id: n for n in nodes}
        graph = None
        if any(r.status in DBT_DONE for uid, r in results.items() if uid in self.runs):
            graph = self._graph(emitter)
        for uid, run in self.runs.items():
            with _guard(emitter, f"the end event of {uid}"):
                emitter.emit(self._end_event(uid, run, results.get(uid), graph, failure))
        emitter.close()

    def warehouse(self) -> Warehouse:
        if self._warehouse is None:
            self._warehouse = dbt_warehouse(self.project)
        return self._warehouse

    def _end_event(
        self,
        uid: str,
        run: _NodeRun,
        result: NodeResult | None,
        graph: LineageGraph | None,
        failure: str | None,
    ) -> RunEvent:
        from openlineage.client.facet_v2 import error_message_run, sql_job

        assert self.emitter is not None
        if result is not None and result.status in DBT_DONE:
            node = _graph_node(graph, uid)
            job_facets: dict[str, Any] = {}
            if node is not None and node.sql:
                job_facets["sql"] = sql_job.SQLJobFacet(query=node.sql, dialect=self._dialect())
            return self._event("COMPLETE", uid, run, result=result, graph=graph, job_facets=job_facets)
        if result is not None and result.status == "skipped":
            return self._event("ABORT", uid, run)
        message = (result.message if result is not None else None) or failure or "dbt stopped"
        error = error_message_run.ErrorMessageRunFacet(
            message=self.emitter.redact(message), programmingLanguage="SQL"
        )
        return self._event("FAIL", uid, run, run_facets={"errorMessage": error})

    def _event(
        self,
        state: str,
        uid: str,
        run: _NodeRun,
        *,
        result: NodeResult | None = None,
        graph: LineageGraph | None = None,
        job_facets: dict[str, Any] | None = None,
        run_facets: dict[str, Any] | None = None,
    ) -> RunEvent:
        from openlineage.client.event_v2 import InputDataset, OutputDataset
        from openlineage.client.facet_v2 import job_type_job
        from openlineage.client.facet_v2 import output_statistics_output_dataset as statistics

        assert self.emitter is not None
        job_type = job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="DBT", jobType=DBT_JOB_TYPES[run.resource_type]
        )
        outputs = []
        if run.output is not None:
            dataset_facets: dict[str, Any] = {}
            output_facets: dict[str, Any] = {}
            if result is not None:
                schema = self._schema(uid, graph)
                if schema is not None:
                    dataset_facets["schema"] = schema
                node = _graph_node(graph, uid)
                if graph is not None and node is not None:
                    lineage = column_lineage_facet(node, _graph_locator(graph, self.warehouse()))
                    if lineage is not None:
                        dataset_facets["columnLineage"] = lineage
                if result.rows_affected is not None:
                    output_facets["outputStatistics"] = statistics.OutputStatisticsOutputDatasetFacet(
                        rowCount=result.rows_affected
                    )
            outputs.append(
                OutputDataset(*run.output, facets=dataset_facets or None, outputFacets=output_facets or None)
            )
        inputs = [InputDataset(ns, name, facets=None, inputFacets=None) for ns, name in run.inputs]
        job = {"jobType": job_type, **(job_facets or {})}
        return _run_event(
            state, run.run_id, self.emitter.config.namespace, uid, job, run_facets or {}, inputs, outputs,
            when=run.ended_at if state != "START" else None,
        )  # fmt: skip

    def _schema(self, uid: str, graph: LineageGraph | None) -> Any:
        node = _graph_node(graph, uid)
        if node is not None and node.columns:
            return _schema_facet((c.name, c.data_type, c.description) for c in node.columns)
        # without the graph: the columns the project's YAML documents
        declared = ((self._manifest or {}).get("nodes") or {}).get(uid, {}).get("columns") or {}
        if not declared:
            return None
        return _schema_facet(
            (str(c.get("name") or name), c.get("data_type"), c.get("description") or None)
            for name, c in declared.items()
        )

    def _graph(self, emitter: Emitter) -> LineageGraph | None:
        from elt.lineage import load_lineage

        try:
            return load_lineage(self.project, compile=False)  # the command just wrote the manifest
        except Exception as error:  # lineage must never fail the run it describes
            emitter.warn(
                "graph",
                f"OpenLineage: the lineage graph could not be read ({type(error).__name__}: {error}); "
                "the events go out without schema and column lineage from it",
            )
            return None

    def _dialect(self) -> str:
        return self.warehouse().namespace.split("://", 1)[0]

    def _parents(self, uid: str) -> list[tuple[str, str]]:
        """The relations a node reads: its parents in the manifest, through ephemeral models."""
        if self._manifest is None:
            try:
                self._manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._manifest = {}
        manifest = self._manifest or {}
        nodes, sources = manifest.get("nodes") or {}, manifest.get("sources") or {}
        warehouse = self.warehouse()
        found: list[tuple[str, str]] = []
        seen: set[str] = set()

        def visit(parent: str) -> None:
            if parent in seen:
                return
            seen.add(parent)
            data = nodes.get(parent) or sources.get(parent)
            if data is None:
                return
            if (data.get("config") or {}).get("materialized") == "ephemeral":
                for grand in (data.get("depends_on") or {}).get("nodes") or []:
                    visit(grand)
                return
            name = data.get("alias") or data.get("identifier") or data.get("name")
            found.append((warehouse.namespace, warehouse.name(f"{data.get('schema')}.{name}")))

        for parent in ((nodes.get(uid) or {}).get("depends_on") or {}).get("nodes") or []:
            visit(parent)
        return found


# -- facets ----------------------------------------------------------------------------------------------


def column_lineage_facet(node: Node, locate: Callable[[str], tuple[str, str] | None]) -> Any:
    """The columnLineage facet of `node`'s output, or None when no column has a known upstream.

    Each column's upstream columns are DIRECT transformations (copy: IDENTITY, transform: TRANSFORMATION,
    aggregate: AGGREGATION); the columns that decide which rows the node has (`node.indirect`) are an
    INDIRECT transformation of every column. `locate` gives the (namespace, name) of a node id; columns
    of nodes it cannot name are left out.
    """
    from openlineage.client.facet_v2 import column_lineage_dataset as cl

    def field(ref_node: str, column: str, kind: str) -> cl.InputField | None:
        where = locate(ref_node)
        if where is None:
            return None
        subtype = DIRECT_SUBTYPES.get(kind)
        transformation = (
            cl.Transformation(type="DIRECT", subtype=subtype)
            if subtype
            else cl.Transformation(type="INDIRECT", description=kind)  # filter-join: no finer subtype
        )
        return cl.InputField(
            namespace=where[0], name=where[1], field=column, transformations=[transformation]
        )

    indirect = [f for f in (field(r.node, r.column, r.kind) for r in node.indirect) if f is not None]
    fields = {}
    for column in node.columns:
        direct = [f for f in (field(r.node, r.column, r.kind) for r in column.upstream) if f is not None]
        inputs = _unique(direct + indirect)
        if inputs:
            fields[column.name] = cl.Fields(inputFields=inputs)
    return cl.ColumnLineageDatasetFacet(fields=fields) if fields else None


def _copy_lineage_facet(table: Table, namespace: str, stream: str) -> Any:
    """A table's columns as IDENTITY copies of its stream's properties."""
    from openlineage.client.facet_v2 import column_lineage_dataset as cl

    fields = {
        column: cl.Fields(
            inputFields=[
                cl.InputField(
                    namespace=namespace,
                    name=stream,
                    field=prop,
                    transformations=[cl.Transformation(type="DIRECT", subtype="IDENTITY")],
                )  # fmt: skip
            ]
        )
        for column, _, prop in table.columns
    }
    return cl.ColumnLineageDatasetFacet(fields=fields) if fields else None


def _unique(fields: list[Any]) -> list[Any]:
    seen: set[tuple[Any, ...]] = set()
    kept = []
    for f in fields:
        t = f.transformations[0]
        key = (f.namespace, f.name, f.field, t.type, t.subtype)
        if key not in seen:
            seen.add(key)
            kept.append(f)
    return kept


def _graph_node(graph: LineageGraph | None, uid: str) -> Node | None:
    if graph is None:
        return None
    return next((n for n in graph.nodes if n.id == uid), None)


def _graph_locator(graph: LineageGraph, warehouse: Warehouse) -> Callable[[str], tuple[str, str] | None]:
    """(namespace, name) of a node id of the graph: a relation in the warehouse, or a tap's stream."""
    by_id = {n.id: n for n in graph.nodes}

    def locate(node_id: str) -> tuple[str, str] | None:
        node = by_id.get(node_id)
        if node is None:
            return None
        if node.type == "stream" and node.meta.get("tap") and node.meta.get("stream"):
            return tap_namespace(str(node.meta["tap"])), str(node.meta["stream"])
        if node.relation:
            return warehouse.namespace, warehouse.name(node.relation)
        return None

    return locate


def _schema_facet(columns: Iterable[tuple[str, str | None, str | None]]) -> Any:
    """The schema facet of (name, type, description) columns, in order."""
    from openlineage.client.facet_v2 import schema_dataset

    return schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(
                name=name, type=kind or None, description=description or None, fields=None
            )
            for name, kind, description in columns
        ]
    )


def _json_schema_facet(properties: dict[str, Any]) -> Any:
    """The schema facet of a stream: its properties with their JSON types, objects' properties nested."""
    from openlineage.client.facet_v2 import schema_dataset

    def fields(props: dict[str, Any]) -> list[schema_dataset.SchemaDatasetFacetFields]:
        return [
            schema_dataset.SchemaDatasetFacetFields(
                name=name,
                type=_json_type(prop),
                description=(prop or {}).get("description"),
                fields=fields((prop or {}).get("properties") or {}) or None,
            )
            for name, prop in props.items()
        ]

    return schema_dataset.SchemaDatasetFacet(fields=fields(properties))


def _json_type(prop: dict[str, Any] | None) -> str | None:
    """A property's JSON type for people: its `format` (date-time, …) if any, else its non-null types."""
    prop = prop or {}
    if prop.get("format"):
        return str(prop["format"])
    alternatives = prop.get("anyOf") or prop.get("oneOf")
    if alternatives:
        found = [_json_type(alt) for alt in alternatives if alt.get("type") not in ("null", ["null"])]
        return "|".join(n for n in found if n) or None
    declared = prop.get("type")
    names = [declared] if isinstance(declared, str) else list(declared or [])
    return "|".join(n for n in names if n != "null") or None


def _error_facet(error: BaseException, redact: Redactor, language: str) -> Any:
    from openlineage.client.facet_v2 import error_message_run

    # elt's own errors are written for people; anything else gets its traceback
    trace = None if isinstance(error, EltError) else "".join(traceback.format_exception(error))
    return error_message_run.ErrorMessageRunFacet(
        message=redact(str(error) or type(error).__name__),
        programmingLanguage=language,
        stackTrace=redact(trace) if trace else None,
    )


def _run_event(
    state: str,
    run_id: str,
    namespace: str,
    job: str,
    job_facets: dict[str, Any],
    run_facets: dict[str, Any],
    inputs: list[InputDataset],
    outputs: list[OutputDataset],
    when: str | None = None,
) -> RunEvent:
    from openlineage.client.constants import __version__ as client_version
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import processing_engine_run

    engine = processing_engine_run.ProcessingEngineRunFacet(
        version=__version__, name="elt", openlineageAdapterVersion=client_version
    )
    return RunEvent(
        eventType=RunState(state),
        eventTime=when or _now(),
        run=Run(runId=run_id, facets={"processing_engine": engine, **run_facets}),
        job=Job(namespace=namespace, name=job, facets=job_facets),
        inputs=inputs,
        outputs=outputs,
        producer=PRODUCER,
    )


def _new_run_id() -> str:
    from openlineage.client.uuid import generate_new_uuid

    return str(generate_new_uuid())  # a UUIDv7, as the spec recommends: sorts by start time


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
