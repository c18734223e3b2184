"""dbt sources generated from what the project's syncs loaded, so models `source()` them without YAML.

Before each dbt command elt writes `<first model path>/_elt_sources.yml` in the dbt project (for the
sample project: `models/models/_elt_sources.yml`): one source per schema a sync of the project loads
into (each extractor's load schema, and a loader's `default_target_schema`) that exists in the warehouse
dbt reads, with every table and column found there, `loaded_at_field: _elt_synced_at` and a freshness
block. A source name that the project's own YAML declares is left to it. The file is rewritten only
when its content changes, so dbt's partial parsing keeps working.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from elt.dbt import dbt_env, dbt_project_config, dbt_settings
from elt.errors import PluginError
from elt.plugins import declared_plugins, find_plugin
from elt.project import Project

SOURCES_FILE = "_elt_sources.yml"
LOADED_AT_FIELD = "_elt_synced_at"
DEFAULT_FRESHNESS: dict[str, Any] = {"warn_after": {"count": 24, "period": "hour"}}
HEADER = (
    "# Written by elt before each dbt command from the tables its syncs loaded; do not edit.\n"
    "# Declare a source of the same name in your own YAML to replace one of these (docs/dbt.md).\n"
)


@dataclass(frozen=True)
class SourceTable:
    """A table of a synced schema and its (column, data type) pairs, in the warehouse's order."""

    name: str
    columns: tuple[tuple[str, str], ...]


def write_generated_sources(project: Project, project_dir: Path) -> Path | None:
    """Write (or remove, when nothing is left to declare) the generated sources file of `project_dir`.

    Returns the file when it holds sources, else None. The file is left untouched when its content
    would not change.
    """
    path = sources_path(project_dir)
    schemas = [s for s in synced_schemas(project) if s not in declared_source_names(project_dir)]
    env = dbt_env(project)
    tables = read_tables(env, schemas) if schemas else {}
    freshness = dbt_settings(project).get("source_freshness", DEFAULT_FRESHNESS)
    text = render_sources(tables, freshness)
    if text is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


def sources_path(project_dir: Path) -> Path:
    """Where the generated sources go: `_elt_sources.yml` in the dbt project's first model path."""
    return project_dir / _model_paths(project_dir)[0] / SOURCES_FILE


def synced_schemas(project: Project) -> list[str]:
    """The schemas the project's syncs load into: each extractor's load schema, each loader's default."""
    schemas: list[str] = []
    for name, (ptype, _, _) in declared_plugins(project).items():
        if ptype == "extractors":
            schema = find_plugin(project, name, ptype).load_schema
        elif ptype == "loaders":
            schema = str(find_plugin(project, name, ptype).config.get("default_target_schema") or "")
        else:
            continue
        if schema and schema not in schemas:
            schemas.append(schema)
    return schemas


def declared_source_names(project_dir: Path) -> set[str]:
    """Names of the sources the dbt project's own YAML files declare (the generated file aside)."""
    names: set[str] = set()
    for folder in _model_paths(project_dir):
        for path in sorted((project_dir / folder).rglob("*.y*ml")):
            if path.name == SOURCES_FILE or path.suffix not in (".yml", ".yaml"):
                continue
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError:
                continue  # dbt reports it, with its line, when it parses the project
            if isinstance(data, dict):
                for source in data.get("sources") or []:
                    if isinstance(source, dict) and source.get("name"):
                        names.add(str(source["name"]))
    return names


def read_tables(env: dict[str, str], schemas: list[str]) -> dict[str, list[SourceTable]]:
    """schema -> its tables and columns, read from the information_schema of the warehouse dbt uses.

    `env` is `elt.dbt.dbt_env`'s: a DuckDB file or a PostgreSQL database. Schemas that do not exist
    (nothing synced yet) are left out; another kind of dbt target gets no generated sources.
    """
    sql = (
        "select table_schema, table_name, column_name, data_type from information_schema.columns"
        " where table_schema in ({}) order by table_schema, table_name, ordinal_position"
    )
    with _columns_cursor(env) as fetch:
        rows = fetch(sql, schemas)
    found: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for schema, table, column, data_type in rows:
        found.setdefault(schema, {}).setdefault(table, []).append((column, str(data_type).lower()))
    return {
        schema: [SourceTable(t, tuple(cols)) for t, cols in found[schema].items()]
        for schema in schemas
        if schema in found
    }


def warehouse_columns(env: dict[str, str]) -> dict[tuple[str, str, str], list[tuple[str, str]]]:
    """(database, schema, table) -> its (column, data type) pairs, for every table of the warehouse dbt
    uses (system schemas aside); {} when the warehouse does not exist yet."""
    sql = (
        "select table_catalog, table_schema, table_name, column_name, data_type"
        " from information_schema.columns"
        " where table_schema not in ('information_schema', 'pg_catalog', 'pg_toast')"
        " order by table_catalog, table_schema, table_name, ordinal_position"
    )
    with _columns_cursor(env) as fetch:
        rows = fetch(sql, [])
    found: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for database, schema, table, column, data_type in rows:
        found.setdefault((database, schema, table), []).append((column, str(data_type).lower()))
    return found


def render_sources(tables: dict[str, list[SourceTable]], freshness: dict[str, Any] | None) -> str | None:
    """The YAML of the generated sources file, or None when there is nothing to declare.

    `loaded_at_field` and `freshness` go on the source when all its tables have `_elt_synced_at`
    (tables loaded by elt's targets), else on each table that has it.
    """
    sources = []
    for schema, schema_tables in tables.items():
        stamped = [t for t in schema_tables if LOADED_AT_FIELD in dict(t.columns)]
        config: dict[str, Any] = {"loaded_at_field": LOADED_AT_FIELD}
        if freshness is not None:
            config["freshness"] = freshness
        source: dict[str, Any] = {"name": schema, "schema": schema}
        if stamped and len(stamped) == len(schema_tables):
            source["config"] = config
        entries = []
        for table in schema_tables:
            entry: dict[str, Any] = {"name": table.name}
            if table in stamped and "config" not in source:
                entry["config"] = config
            entry["columns"] = [{"name": c, "data_type": t} for c, t in table.columns]
            entries.append(entry)
        source["tables"] = entries
        sources.append(source)
    if not sources:
        return None
    body = yaml.safe_dump({"version": 2, "sources": sources}, sort_keys=False, width=120)
    return HEADER + body


@contextlib.contextmanager
def _columns_cursor(env: dict[str, str]) -> Iterator[Any]:
    """A `fetch(sql, schemas)` over the warehouse; `{}` in the SQL becomes the schemas' placeholders."""
    target = env["ELT_DBT_TARGET"]
    if target == "duckdb":
        path = Path(env["ELT_WAREHOUSE_PATH"])
        if not path.is_file():
            yield lambda sql, schemas: []
            return
        from elt.steps.warehouse import open_duckdb

        con = open_duckdb(path, read_only=True)
        try:
            yield lambda sql, schemas: con.execute(
                sql.format(", ".join("?" for _ in schemas)), schemas
            ).fetchall()
        finally:
            con.close()
    elif target == "postgres":
        import psycopg

        conninfo = psycopg.conninfo.make_conninfo(
            host=env["ELT_PG_HOST"], port=env["ELT_PG_PORT"], user=env["ELT_PG_USER"],
            password=env["ELT_PG_PASSWORD"] or None, dbname=env["ELT_PG_DBNAME"],
        )  # fmt: skip
        try:
            conn = psycopg.connect(conninfo, connect_timeout=10)
        except psycopg.OperationalError as error:
            raise PluginError(
                f"cannot read the synced tables for dbt's sources from PostgreSQL: {error}",
                hint="check host/port/user/dbname in the config of the `dbt` utility in elt.yml",
            ) from error
        with conn:
            yield lambda sql, schemas: conn.execute(
                sql.format(", ".join("%s" for _ in schemas)), schemas
            ).fetchall()
    else:
        yield lambda sql, schemas: []


def _model_paths(project_dir: Path) -> list[str]:
    data = dbt_project_config(project_dir)
    paths = data.get("model-paths") or data.get("source-paths") or ["models"]
    return [str(p) for p in paths] or ["models"]
