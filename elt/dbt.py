"""dbt, elt's SQL layer: run dbt commands in-process with profiles rendered from the environment.

The project's `profiles/profiles.yml` reads `ELT_*` variables; `dbt_env` computes them from the `dbt`
utility's config in the environment in force (DuckDB by default, on the same warehouse file the DuckDB
target writes). `run_dbt` invokes `dbtRunner` and returns one result per node.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elt.errors import PluginError, RunError
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

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "success": self.success,
            "seconds": round(self.seconds, 3),
            "nodes": [n.__dict__ for n in self.nodes],
            "error": self.error,
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

    def callback(event: Any) -> None:
        if on_node is None or event.info.name != "NodeFinished":
            return
        result = event.data.run_result
        info = event.data.node_info
        on_node(
            NodeResult(
                unique_id=info.unique_id,
                name=info.node_name,
                resource_type=info.unique_id.split(".", 1)[0],
                status=str(result.status),
                seconds=float(result.execution_time or 0.0),
                message=result.message or None,
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
        raise RunError(f"dbt {' '.join(args)} could not run: {outcome.exception}")
    nodes = _node_results(outcome.result, project_dir)
    error = None
    if not outcome.success:
        bad = [n for n in nodes if n.status in ("error", "fail", "runtime error")]
        error = "; ".join(_describe_failure(n) for n in bad[:3]) or "dbt reported a failure"
        if len(bad) > 3:
            error += f"; and {len(bad) - 3} more failed node(s)"
    return DbtResult(
        command=["dbt", *args], success=bool(outcome.success), seconds=seconds, nodes=nodes,
        error=error,
    )  # fmt: skip


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
        response = getattr(item, "adapter_response", None) or {}
        rows = response.get("rows_affected") if isinstance(response, dict) else None
        compiled = getattr(node, "compiled_path", None)
        nodes.append(
            NodeResult(
                unique_id=node.unique_id,
                name=node.name,
                resource_type=str(node.resource_type),
                status=str(item.status),
                seconds=float(item.execution_time or 0.0),
                message=item.message or None,
                rows_affected=rows if isinstance(rows, int) and rows >= 0 else None,
                path=getattr(node, "original_file_path", None),
                compiled_path=str(project_dir / compiled) if compiled else None,
            )
        )
    return nodes
