"""dbt, elt's SQL layer: run dbt commands in-process with profiles rendered from the environment.

The project's `profiles/profiles.yml` reads `ELT_*` variables; `dbt_env` computes them from the `dbt`
utility's config in the environment in force (DuckDB by default, on the same warehouse file the DuckDB
target writes). `run_dbt` invokes `dbtRunner` and returns one result per node.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elt.errors import EltError, PluginError, RunError
from elt.plugins import declared_plugins, find_plugin
from elt.project import Project

DEFAULT_WAREHOUSE = ".elt/warehouse.duckdb"


@dataclass(frozen=True)
class NodeResult:
    """One dbt node's outcome."""

    unique_id: str
    name: str
    resource_type: str
    status: str  # success | error | fail | warn | pass | skipped | ...
    seconds: float
    message: str | None = None
    rows_affected: int | None = None
    path: str | None = None  # the node's file in the dbt project
    compiled_path: str | None = None


@dataclass(frozen=True)
class DbtResult:
    command: list[str]
    success: bool
    seconds: float
    nodes: list[NodeResult] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # what elt did around dbt, for the user to read

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "success": self.success,
            "seconds": round(self.seconds, 3),
            "nodes": [n.__dict__ for n in self.nodes],
            "error": self.error,
            "notes": self.notes,
        }


def dbt_settings(project: Project) -> dict[str, Any]:
    """The `dbt` utility's effective config ({} when the project does not declare one)."""
    if "dbt" in declared_plugins(project):
        return dict(find_plugin(project, "dbt", "utilities").config)
    return {}


def warehouse_path(project: Project) -> Path:
    """The DuckDB warehouse file: the dbt config's `path`, else the DuckDB target's, else the default."""
    settings = dbt_settings(project)
    path = settings.get("path")
    if not path:
        for name, (ptype, _, _) in declared_plugins(project).items():
            plugin = find_plugin(project, name, ptype)
            if ptype == "loaders" and plugin.builtin == "target-duckdb":
                path = plugin.config.get("path") or plugin.config.get("filepath")
                if path:
                    break
    resolved = Path(path or DEFAULT_WAREHOUSE)
    return resolved if resolved.is_absolute() else project.root / resolved


def dbt_env(project: Project) -> dict[str, str]:
    """The variables `profiles/profiles.yml` reads, for the environment in force."""
    settings = dbt_settings(project)
    env = {
        "ELT_DBT_TARGET": str(settings.get("target", "duckdb")),
        "ELT_WAREHOUSE_PATH": str(warehouse_path(project)),
        "ELT_DBT_SCHEMA": str(settings.get("schema", "analytics")),
        "ELT_DBT_THREADS": str(settings.get("threads", os.cpu_count() or 1)),
        "ELT_PG_HOST": str(settings.get("host", "127.0.0.1")),
        "ELT_PG_PORT": str(settings.get("port", 5432)),
        "ELT_PG_USER": str(settings.get("user", "postgres")),
        "ELT_PG_PASSWORD": str(settings.get("password", "")),
        "ELT_PG_DBNAME": str(settings.get("dbname", settings.get("database", "test"))),
    }
    return env


def dbt_dirs(project: Project) -> tuple[Path, Path]:
    """(project_dir, profiles_dir) of the dbt project."""
    settings = dbt_settings(project)
    project_dir = project.root / str(settings.get("project_dir", "models"))
    profiles_dir = project.root / str(settings.get("profiles_dir", "profiles"))
    if not (project_dir / "dbt_project.yml").is_file():
        raise PluginError(
            f"no dbt project at {project_dir} (dbt_project.yml is missing)",
            hint="set `project_dir` in the config of the `dbt` utility in elt.yml",
        )
    return project_dir, profiles_dir


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_dbt(
    project: Project,
    args: list[str],
    on_node: Callable[[NodeResult], None] | None = None,
    *,
    quiet: bool = True,
) -> DbtResult:
    """Run `dbt ARGS` for the project; `on_node` hears of each node as it finishes.

    `quiet` keeps dbt's own console output to errors (elt renders the nodes); `elt dbt` passes
    dbt's output through instead.

    Returns the result even when nodes failed (`success` False); raises RunError when dbt could not run
    at all (bad profile, parse error), with dbt's message.
    """
    from dbt.cli.main import dbtRunner

    project_dir, profiles_dir = dbt_dirs(project)
    notes: list[str] = []
    args = changed_build_args(project, args, notes)
    if args and args[0] not in NO_SOURCES_COMMANDS:
        from elt.blocks import write_block_sources
        from elt.dbt_sources import write_generated_sources

        write_generated_sources(project, project_dir)  # what the syncs loaded
        write_block_sources(project)  # what Python blocks write
    full = list(args)
    if quiet and not {"-q", "--quiet", "--log-level"} & set(full):
        full.insert(0, "--quiet")
    if "--project-dir" not in full:
        full += ["--project-dir", str(project_dir)]
    if "--profiles-dir" not in full:
        full += ["--profiles-dir", str(profiles_dir)]
    env = {**project.env(), **dbt_env(project)}
    warehouse = Path(env["ELT_WAREHOUSE_PATH"])
    if env["ELT_DBT_TARGET"] == "duckdb":
        warehouse.parent.mkdir(parents=True, exist_ok=True)
    from elt.lineage.openlineage import dbt_events

    # OpenLineage events of the nodes; does nothing unless configured
    events = dbt_events(project, args, manifest_path(project_dir, args), notes)

    def callback(event: Any) -> None:
        events.on_dbt_event(event)
        if on_node is None or event.info.name != "NodeFinished":
            return
        result = event.data.run_result
        info = event.data.node_info
        rows = None if info.unique_id.startswith("test.") else _rows_affected(result.adapter_response)
        on_node(
            NodeResult(
                unique_id=info.unique_id,
                name=info.node_name,
                resource_type=info.unique_id.split(".", 1)[0],
                status=str(result.status),
                seconds=float(result.execution_time or 0.0),
                message=result.message or None,
                rows_affected=rows,
                path=info.node_path or None,
            )
        )

    started = time.monotonic()
    with _environ(env):
        try:
            outcome = dbtRunner(callbacks=[callback]).invoke(full)
        finally:
            _release_duckdb()
    seconds = time.monotonic() - started
    if outcome.exception is not None:
        events.finish([], failure=str(outcome.exception))
        raise RunError(f"dbt {' '.join(args)} could not run: {outcome.exception}")
    nodes = _node_results(outcome.result, project_dir)
    if env["ELT_DBT_TARGET"] == "duckdb":
        nodes = _count_duckdb_tables(outcome.result, nodes, warehouse)
    events.finish(nodes)
    error = None
    if not outcome.success:
        bad = [n for n in nodes if n.status in ("error", "fail", "runtime error")]
        error = "; ".join(_describe_failure(n) for n in bad[:3]) or "dbt reported a failure"
        if len(bad) > 3:
            error += f"; and {len(bad) - 3} more failed node(s)"
    if outcome.success and args[0] == "build" and _builds_everything_selected(args):
        save_build_state(project, project_dir, args)
    return DbtResult(
        command=["dbt", *args], success=bool(outcome.success), seconds=seconds, nodes=nodes,
        error=error, notes=notes,
    )  # fmt: skip


# dbt commands that do not parse the project's models, so need no generated sources.
NO_SOURCES_COMMANDS = frozenset({"deps", "clean", "debug", "init", "--version", "--help", "-h"})
CHANGED_FLAG = "--changed"
_SELECTION_FLAGS = frozenset({"--select", "-s", "--models", "-m", "--exclude", "--selector"})


def build_state_dir(project: Project) -> Path:
    """Where the manifest of the last successful full build is kept, per environment."""
    return project.root / ".elt" / "dbt-state" / (project.environment or "default")


def changed_build_args(project: Project, args: list[str], notes: list[str]) -> list[str]:
    """`build --changed ARGS` as dbt arguments: `state:modified+` against the saved manifest.

    Without a saved manifest (no successful build yet) everything is built, and `notes` says so.
    Other commands' arguments are returned as they are.
    """
    if not args or args[0] != "build" or CHANGED_FLAG not in args:
        return list(args)
    rest = [a for a in args[1:] if a != CHANGED_FLAG]
    if _SELECTION_FLAGS & {a.split("=", 1)[0] for a in rest}:
        raise EltError(
            "--changed chooses the models itself (state:modified+); it cannot be combined with "
            "--select, --exclude or --selector",
            hint="drop --changed, or the selection",
        )
    state = build_state_dir(project)
    if not (state / "manifest.json").is_file():
        notes.append(
            f"--changed: no successful build saved in {_relative(project, state)} yet, so everything is built"
        )
        return ["build", *rest]
    notes.append(f"--changed: building what changed since the build saved in {_relative(project, state)}")
    return ["build", "--select", "state:modified+", "--state", str(state), *rest]


def manifest_path(project_dir: Path, args: list[str]) -> Path:
    """Where dbt writes the manifest of a command run with `args` (its target path's manifest.json)."""
    target_path = _option(args, "--target-path") or str(
        dbt_project_config(project_dir).get("target-path") or "target"
    )
    target = Path(target_path) if Path(target_path).is_absolute() else project_dir / target_path
    return target / "manifest.json"


def save_build_state(project: Project, project_dir: Path, args: list[str]) -> Path | None:
    """Keep the manifest of a successful build for the next `build --changed`; None when there is none."""
    manifest = manifest_path(project_dir, args)
    if not manifest.is_file():
        return None
    state = build_state_dir(project)
    state.mkdir(parents=True, exist_ok=True)
    saved = state / "manifest.json"
    partial = saved.with_suffix(".json.partial")
    shutil.copyfile(manifest, partial)
    partial.replace(saved)
    return saved


def _builds_everything_selected(args: list[str]) -> bool:
    # A build of part of the project must not become the reference for --changed: models it left out
    # would count as built. `build --changed` built all that changed, so it may.
    if "state:modified+" in args:
        return True
    return not _SELECTION_FLAGS & {a.split("=", 1)[0] for a in args[1:]}


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def dbt_project_config(project_dir: Path) -> dict[str, Any]:
    """The dbt project's `dbt_project.yml` as a mapping ({} when unreadable: dbt reports why)."""
    import yaml

    try:
        data = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _relative(project: Project, path: Path) -> str:
    try:
        return str(path.relative_to(project.root))
    except ValueError:
        return str(path)


def _rows_affected(response: Any) -> int | None:
    """dbt's adapter_response rows_affected, where the adapter reports one (-1 and absent: unknown)."""
    if response is None:
        return None
    rows = (
        response.get("rows_affected")
        if isinstance(response, dict)
        else getattr(response, "rows_affected", None)
    )
    if rows is None and not isinstance(response, dict):
        with contextlib.suppress(Exception):  # a protobuf Struct from dbt's events
            rows = dict(response).get("rows_affected")
    if isinstance(rows, float) and rows.is_integer():
        rows = int(rows)
    return rows if isinstance(rows, int) and rows >= 0 else None


def _release_duckdb() -> None:
    """Close dbt-duckdb's process-wide database handle.

    dbt-duckdb keeps the warehouse file open after a command for the life of the process; a sync that
    runs next in a subprocess (the target) could not open it.
    """
    import sys

    module = sys.modules.get("dbt.adapters.duckdb.connections")
    if module is None:
        return
    manager = module.DuckDBConnectionManager
    with manager._LOCK:
        if manager._ENV is not None:
            manager._ENV.close()
            manager._ENV = None


def _describe_failure(node: NodeResult) -> str:
    where = f" ({node.path}" + (f", compiled SQL: {node.compiled_path}" if node.compiled_path else "")
    return f"{node.resource_type} '{node.name}' {node.status}{where}): {node.message}"


def _node_results(result: Any, project_dir: Path) -> list[NodeResult]:
    nodes: list[NodeResult] = []
    for item in getattr(result, "results", None) or []:
        node = getattr(item, "node", None)
        if node is None:
            continue
        # A test's response counts the one row of its failure count, not data it changed.
        is_test = str(node.resource_type) == "test"
        rows = None if is_test else _rows_affected(getattr(item, "adapter_response", None))
        compiled = getattr(node, "compiled_path", None)
        nodes.append(
            NodeResult(
                unique_id=node.unique_id,
                name=node.name,
                resource_type=str(node.resource_type),
                status=str(item.status),
                seconds=float(item.execution_time or 0.0),
                message=item.message or None,
                rows_affected=rows,
                path=getattr(node, "original_file_path", None),
                compiled_path=str(project_dir / compiled) if compiled else None,
            )
        )
    return nodes


def _count_duckdb_tables(result: Any, nodes: list[NodeResult], warehouse: Path) -> list[NodeResult]:
    """Table models with their row count as rows affected: dbt-duckdb reports none, and a table model
    writes every row it holds. Incremental models and views stay unknown."""
    tables = {
        item.node.unique_id: item.node.relation_name
        for item in getattr(result, "results", None) or []
        if getattr(item, "node", None) is not None
        and str(item.node.resource_type) == "model"
        and getattr(item.node.config, "materialized", None) == "table"
        and getattr(item.node, "relation_name", None)
    }
    wanted = [n for n in nodes if n.unique_id in tables and n.status == "success" and n.rows_affected is None]
    if not wanted or not warehouse.is_file():
        return nodes
    import dataclasses

    import duckdb

    counts: dict[str, int] = {}
    with contextlib.suppress(duckdb.Error), duckdb.connect(str(warehouse), read_only=True) as con:
        for n in wanted:
            row = con.execute(f"select count(*) from {tables[n.unique_id]}").fetchone()
            counts[n.unique_id] = int(row[0]) if row else 0
    return [
        dataclasses.replace(n, rows_affected=counts[n.unique_id]) if n.unique_id in counts else n
        for n in nodes
    ]
