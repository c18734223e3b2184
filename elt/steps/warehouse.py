"""Where python, sql and export steps read and write: the project's warehouses, and values fit for JSON.

The DuckDB warehouse is the file dbt reads (`elt.dbt.warehouse_path`: the dbt config's `path`, else the
DuckDB target's, else `.elt/warehouse.duckdb`). A PostgreSQL database is named by a loader of `elt.yml`
whose built-in is target-postgres (its host/port/user/password/database or sqlalchemy_url), or by a DSN.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from elt.dbt import dbt_env, warehouse_path
from elt.errors import PluginError, RunError
from elt.plugins import find_plugin
from elt.project import Project

# DuckDB lets one process at a time open a file for writing; a step that finds the warehouse held by a
# parallel step (or a sync) waits for it this long before failing.
LOCK_WAIT_SECONDS = 120.0

VALUE_ROW_CAP = 1000  # rows of a result kept as a step's `value`


def dbt_schema(project: Project) -> str:
    """The schema dbt builds the project's models into, in the environment in force."""
    return dbt_env(project)["ELT_DBT_SCHEMA"]


def duckdb_file(project: Project, target: str | None = None) -> Path:
    """The DuckDB file of loader `target` (a target-duckdb), else the warehouse dbt reads."""
    if not target:
        return warehouse_path(project)
    plugin = find_plugin(project, target, "loaders")
    path = plugin.config.get("path") or plugin.config.get("filepath") or ".elt/warehouse.duckdb"
    resolved = Path(str(path))
    return resolved if resolved.is_absolute() else project.root / resolved


def postgres_conninfo(project: Project, target: str) -> str:
    """The libpq connection string of loader `target`, which must be a target-postgres."""
    from targets.target_postgres.settings import connection_string

    plugin = find_plugin(project, target, "loaders")
    if plugin.builtin != "target-postgres":
        raise PluginError(
            f"{project.where(plugin.path)}: loader '{target}' is not a target-postgres "
            f"(it is {plugin.builtin or 'not a built-in connector'})",
            hint="name a loader whose `name` or `inherit_from` is target-postgres, or give `dsn:`",
        )
    return connection_string(plugin.config)


def database_of(project: Project, options: dict[str, Any]) -> tuple[str, str]:
    """(`duckdb`, file) or (`postgres`, conninfo) for a step's `dsn:` / `target:` options."""
    if options.get("dsn"):
        return "postgres", str(options["dsn"])
    target = options.get("target")
    if target:
        plugin = find_plugin(project, str(target), "loaders")
        if plugin.builtin == "target-postgres":
            return "postgres", postgres_conninfo(project, str(target))
        if plugin.builtin == "target-duckdb":
            return "duckdb", str(duckdb_file(project, str(target)))
        raise PluginError(
            f"{project.where(plugin.path)}: loader '{target}' is neither a target-duckdb nor a "
            "target-postgres, so a step cannot run SQL against it",
            hint="name a loader that inherits from target-duckdb or target-postgres, or give `dsn:`",
        )
    return "duckdb", str(duckdb_file(project))


def open_duckdb(
    path: Path | str, log: Callable[[str], None] | None = None, *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """A connection to the DuckDB file, waiting while another process holds its lock.

    Read-only connections of several processes can share the file (two exports at once), not with a
    process that writes it.
    """
    path = Path(path)
    if read_only and not path.is_file():
        raise RunError(
            f"the DuckDB warehouse {path} does not exist yet",
            hint="run the sync or dbt step that builds it first (needs:)",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    delay = 0.1
    told = False
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() > deadline:
                raise RunError(
                    f"cannot open the DuckDB warehouse {path}: {error}",
                    hint="another process (a sync, dbt, a DuckDB shell) holds it; run the steps "
                    "one after the other (needs:) or close that process",
                ) from error
            if log is not None and not told:
                log(f"waiting for the DuckDB warehouse {path}: another process holds it")
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        con.execute("SET TimeZone = 'UTC'")
        return con


def quote_identifier(name: str) -> str:
    """`name` as a quoted SQL identifier (the same rule in DuckDB and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


def json_safe(value: Any) -> Any:
    """`value` with dates, decimals, UUIDs, bytes and numpy scalars made JSON values; TypeError otherwise."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID | Path | dt.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    raise TypeError(f"a {type(value).__name__} is not a JSON value")
