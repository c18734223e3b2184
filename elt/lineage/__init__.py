"""Lineage: one graph from source streams through raw tables, dbt nodes, Python blocks and exports,
down to columns, with the last runs of each node.

    graph = load_lineage(project)              # cached in .elt/lineage/graph.json
    upstream_columns(graph, "fct_orders.order_total")

`load_lineage` compiles the dbt project first when its manifest is missing or older than its files
(`compile=False` uses what is there), rebuilds the graph only when an input changed (manifest, dbt
catalog, warehouse columns, elt.yml, blocks, synced streams), and adds the latest runs each time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from elt import systemdb
from elt.errors import EltError
from elt.lineage.model import LineageGraph, Node, RunInfo
from elt.project import Project

if TYPE_CHECKING:
    from elt.lineage.build import Inputs

__all__ = ["LineageGraph", "Node", "load_lineage", "lineage_cache_path"]

GRAPH_FORMAT = 2  # bump when the graph's shape or the tracing changes, so caches are rebuilt
RUNS_PER_NODE = 5
RUNS_SCANNED = 200
DBT_SUFFIXES = (".sql", ".yml", ".yaml", ".csv", ".py", ".md", ".jinja")
SKIPPED_DIRS = {"target", "logs", "dbt_packages", "dbt_modules", "__pycache__"}  # dbt's output, packages


def lineage_cache_path(project: Project) -> Path:
    return project.system_dir / "lineage" / f"graph-{project.environment or 'default'}.json"


def load_lineage(project: Project, *, rebuild: bool = False, compile: bool = True) -> LineageGraph:
    """The project's lineage graph, from the cache when none of its inputs changed, with recent runs."""
    from datetime import UTC, datetime

    compiled: list[str] = []  # said on each call; the notes of building are kept with the graph
    manifest_path = _manifest_path(project)
    if compile and manifest_path is not None:
        _compile_if_stale(project, manifest_path, compiled)
    inputs_key, cheap_inputs = _fingerprint_inputs(project, manifest_path)
    fingerprint = hashlib.sha256(inputs_key.encode()).hexdigest()[:20]
    cache = lineage_cache_path(project)
    graph: LineageGraph | None = None
    if not rebuild and cache.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            cached = LineageGraph.from_json(json.loads(cache.read_text(encoding="utf-8")))
            if cached.fingerprint == fingerprint:
                graph = cached
    if graph is None:
        from elt.lineage.build import build_graph  # sqlglot and networkx: only when building

        inputs = _read_inputs(project, manifest_path, cheap_inputs, [])
        graph = build_graph(project, inputs, fingerprint, datetime.now(UTC).isoformat(timespec="seconds"))
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".tmp")
        partial.write_text(json.dumps(graph.to_json(), separators=(",", ":")), encoding="utf-8")
        partial.replace(cache)
    return _with_runs(project, replace(graph, notes=tuple(compiled) + graph.notes))


# -- inputs ----------------------------------------------------------------------------------------------


def _manifest_path(project: Project) -> Path | None:
    """target/manifest.json of the project's dbt project; None when the project has no dbt project."""
    from elt.dbt import dbt_dirs, dbt_project_config

    try:
        project_dir, _ = dbt_dirs(project)
    except EltError:
        return None
    target = Path(str(dbt_project_config(project_dir).get("target-path") or "target"))
    return (target if target.is_absolute() else project_dir / target) / "manifest.json"


def _compile_if_stale(project: Project, manifest: Path, notes: list[str]) -> None:
    """Run `dbt compile` when the manifest is missing, lacks compiled SQL or is older than the project."""
    from elt.dbt import run_dbt

    reason = None
    if not manifest.is_file():
        reason = "there is no dbt manifest yet"
    else:
        built = manifest.stat().st_mtime
        project_dir = manifest.parent.parent
        newest = max((p.stat().st_mtime for p in _dbt_files(project_dir)), default=0.0)
        if newest > built:
            reason = "dbt project files changed since the manifest was written"
        elif not _has_compiled_code(manifest):
            reason = "the dbt manifest has no compiled SQL"
    if reason is None:
        return
    try:
        result = run_dbt(project, ["compile", "--log-level", "none"])  # its errors become the note
    except EltError as error:
        reason = str(error).split("could not run: ", 1)[-1]
        notes.append(f"dbt compile failed ({reason}); lineage uses the manifest as it is")
        return
    if result.success:
        notes.append(f"compiled the dbt project first: {reason}")
    else:
        notes.append(f"dbt compile failed ({result.error}); lineage uses the manifest as it is")


def _dbt_files(project_dir: Path) -> Iterator[Path]:
    """The files of a dbt project that change what it compiles to, wherever its paths point."""
    for folder, dirs, files in os.walk(project_dir):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")]
        for name in files:
            if name.endswith(DBT_SUFFIXES):
                yield Path(folder) / name


def _has_compiled_code(manifest: Path) -> bool:
    """Whether the manifest holds compiled SQL for its SQL models (a `dbt parse` manifest does not)."""
    from elt.lineage.build import read_json

    data = read_json(manifest)
    models = [n for n in (data.get("nodes") or {}).values() if n.get("resource_type") == "model"]
    return not models or any(n.get("compiled_code") for n in models)


def _fingerprint_inputs(project: Project, manifest: Path | None) -> tuple[str, dict[str, Any]]:
    """A key that changes when any input of the graph changes, and the inputs read to make it."""
    warehouse, notes = _warehouse_columns(project)
    pairs, streams = _synced_streams(project)
    parts: list[Any] = [
        GRAPH_FORMAT,
        project.environment,
        json.dumps(project.data, sort_keys=True, default=str),
    ]
    if manifest is not None:
        for name in ("manifest.json", "catalog.json", "sources.json"):
            with contextlib.suppress(OSError):
                stat = (manifest.parent / name).stat()
                parts.append((name, stat.st_mtime_ns, stat.st_size))
    blocks = project.root / "blocks"
    if blocks.is_dir():
        parts.extend((str(p), p.stat().st_mtime_ns) for p in sorted(blocks.rglob("*.py")))
    parts.append(sorted((list(k), v) for k, v in warehouse.items()))
    parts.append(pairs)
    parts.append(sorted((list(k), sorted(v)) for k, v in streams.items()))
    key = json.dumps(parts, default=str)
    return key, {"warehouse": warehouse, "pairs": pairs, "streams": streams, "notes": notes}


def _read_inputs(project: Project, manifest: Path | None, cheap: dict[str, Any], notes: list[str]) -> Inputs:
    from elt.dbt import dbt_env
    from elt.lineage.build import Inputs, read_json

    manifest_data = read_json(manifest) if manifest is not None else {}
    if manifest is not None and not manifest_data:
        notes.append(f"no dbt manifest at {manifest}: dbt nodes are missing; run `elt build`")
    target = manifest.parent if manifest is not None else None
    freshness: dict[str, dict[str, Any]] = {}
    if target is not None:
        for result in read_json(target / "sources.json").get("results") or []:
            freshness[result.get("unique_id")] = {
                k: result.get(k)
                for k in ("status", "max_loaded_at", "snapshotted_at", "max_loaded_at_time_ago_in_s")
            }
    dialect = dbt_env(project)["ELT_DBT_TARGET"] if manifest is not None else "duckdb"
    adapter = (manifest_data.get("metadata") or {}).get("adapter_type")
    return Inputs(
        manifest=manifest_data,
        catalog=read_json(target / "catalog.json") if target is not None else {},
        freshness=freshness,
        warehouse=cheap["warehouse"],
        dialect=str(adapter or dialect),
        pairs=cheap["pairs"],
        streams=cheap["streams"],
        notes=notes + cheap["notes"],
    )


def _warehouse_columns(
    project: Project,
) -> tuple[dict[tuple[str, str, str], list[tuple[str, str]]], list[str]]:
    """Columns of every table of the warehouse; {} with a note when it cannot be read."""
    from elt.dbt import dbt_env
    from elt.dbt_sources import warehouse_columns

    try:
        return warehouse_columns(dbt_env(project)), []
    except EltError as error:
        return {}, [f"the warehouse's columns could not be read: {error}"]
    except Exception as error:  # a DuckDB file locked by a running sync, a dropped connection
        return {}, [f"the warehouse's columns could not be read: {type(error).__name__}: {error}"]


def _synced_streams(project: Project) -> tuple[list[tuple[str, str]], dict[tuple[str, str], set[str]]]:
    """(tap, target) pairs the project syncs (pipelines, schedules, run history) and the streams each
    pair synced according to the run history."""
    pairs: list[tuple[str, str]] = []

    def add(tap: str, target: str) -> None:
        if (tap, target) not in pairs:
            pairs.append((tap, target))

    for pipeline in (project.data.get("pipelines") or {}).values():
        for step in (pipeline or {}).get("steps") or []:
            if isinstance(step, dict) and isinstance(step.get("sync"), str):
                names = step["sync"].split()
                if len(names) >= 2:
                    add(names[0], names[-1])
    for schedule in project.data.get("schedules") or []:
        if isinstance(schedule, dict) and schedule.get("extractor") and schedule.get("loader"):
            add(str(schedule["extractor"]), str(schedule["loader"]))
    streams: dict[tuple[str, str], set[str]] = {}
    for tap, target, synced in _sync_history(project):
        add(tap, target)
        streams.setdefault((tap, target), set()).update(synced)
    return pairs, streams


def _history(db: systemdb.Location) -> Any:
    """The run history, read only (a SQLite file opened read-only; PostgreSQL as it is)."""
    if systemdb.is_postgres(db):
        return systemdb.connect(db)
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def _sync_history(project: Project) -> Iterator[tuple[str, str, list[str]]]:
    db = project.system_db
    if not systemdb.exists(db):
        return
    with (
        contextlib.closing(_history(db)) as conn,
        contextlib.suppress(sqlite3.Error, psycopg.Error),
    ):
        for name, summary in conn.execute(
            "SELECT name, summary FROM runs WHERE kind = 'sync' AND status = 'success'"
            " ORDER BY started_at DESC LIMIT ?",
            (RUNS_SCANNED,),
        ):
            names = str(name).split()
            data = _json(summary)
            if len(names) >= 2:
                yield names[0], names[-1], list(data.get("streams") or {})
        for (summary,) in conn.execute(
            "SELECT summary FROM steps WHERE kind = 'sync' AND status = 'success'"
            " ORDER BY started_at DESC LIMIT ?",
            (RUNS_SCANNED,),
        ):
            data = _json(summary)
            if data.get("tap") and data.get("target"):
                yield str(data["tap"]), str(data["target"]), list(data.get("streams") or {})


# -- runs ------------------------------------------------------------------------------------------------


def _with_runs(project: Project, graph: LineageGraph) -> LineageGraph:
    """The graph with each node's latest runs (most recent first) from the run history."""
    runs = node_runs(project)
    if not runs:
        return graph
    nodes = tuple(replace(n, runs=tuple(runs.get(n.id, ()))) if n.id in runs else n for n in graph.nodes)
    return replace(graph, nodes=nodes)


def node_runs(project: Project) -> dict[str, list[RunInfo]]:
    """Node id → its latest runs: dbt nodes from dbt steps and builds, streams from syncs."""
    db = project.system_db
    found: dict[str, list[RunInfo]] = {}
    if not systemdb.exists(db):
        return found

    def add(node_id: str, info: RunInfo) -> None:
        entries = found.setdefault(node_id, [])
        if len(entries) < RUNS_PER_NODE:
            entries.append(info)

    query = """
        SELECT run_id, started_at, kind, name, status, seconds, summary, error, 0 AS is_step FROM runs
        WHERE kind = 'sync'
        UNION ALL
        SELECT run_id, started_at, kind, name, status, seconds, summary, error, 1 FROM steps
        WHERE kind IN ('dbt', 'sync')
        ORDER BY started_at DESC LIMIT ?
    """
    with contextlib.closing(_history(db)) as conn:
        try:
            rows = conn.execute(query, (RUNS_SCANNED,)).fetchall()
        except (sqlite3.Error, psycopg.Error):
            return found
    for run_id, started_at, kind, name, status, seconds, summary, error, is_step in rows:
        data = _json(summary)
        if kind == "dbt":
            for uid, node in (data.get("nodes") or {}).items():
                add(uid, RunInfo(
                    run_id=run_id, started_at=started_at or "", status=str(node.get("status")),
                    seconds=node.get("seconds"), rows=node.get("rows_affected"),
                    message=node.get("message"),
                ))  # fmt: skip
            continue
        names = str(name).split()
        tap = data.get("tap") if is_step else (names[0] if names else None)
        streams = data.get("streams") or {}
        if not tap:
            continue
        for stream, stats in streams.items():
            add(f"stream:{tap}.{stream}", RunInfo(
                run_id=run_id, started_at=started_at or "", status=status,
                seconds=seconds, rows=(stats or {}).get("rows"), message=error,
            ))  # fmt: skip
    return found


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
