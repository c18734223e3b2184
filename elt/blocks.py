"""Python blocks: functions in `blocks/*.py` marked as loaders, transformers, exporters or checks.

    from elt.blocks import transformer, ref

    @transformer(table="customer_scores")
    def score(context):
        customers = ref("dim_customers")            # a dbt model of the warehouse, as a DataFrame
        return customers.assign(score=customers.lifetime_value / 100)

A pipeline step `python: blocks/score.py:score` runs it (elt/steps/python.py). What each kind does with
what the function returns:

- `@loader`, `@transformer` return a DataFrame or Arrow table: it replaces the warehouse table
  `blocks.NAME` (NAME: the function's, or `table=`; another schema with `schema=`); with `strict=False`
  any other result becomes the step's JSON value instead of failing the step;
- `@exporter` returns anything: the step's value; nothing is written to the warehouse;
- `@check` returns True/None/"" or a table without rows to pass; False, a message or a DataFrame of the
  failing rows fail the step, naming the block and why.

The tables loaders and transformers write are declared in `<dbt project>/models/_elt_blocks.yml`
(`write_block_sources`), so later dbt models select from them with `source('blocks', 'NAME')`.
"""

from __future__ import annotations

import ast
import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

from elt.errors import EltError, RunError

KINDS = ("loader", "transformer", "exporter", "check")
WRITING_KINDS = ("loader", "transformer")  # kinds whose result becomes a warehouse table
DEFAULT_SCHEMA = "blocks"
SOURCES_FILE = "_elt_blocks.yml"
_MARK = "__elt_block__"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Block:
    """What a decorator says of a function: its kind and options (`table`, `schema`, `strict`)."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def strict(self) -> bool:
        """Whether a loader's or transformer's result must be a table (`strict=False`: else a value)."""
        return self.options.get("strict", True) is not False

    def table(self, function_name: str, step_options: dict[str, Any]) -> tuple[str, str] | None:
        """(schema, table) the block's result replaces, or None for kinds that write nothing.

        The step's `table:`/`schema:` win over the decorator's, which win over the defaults.
        """
        name = step_options.get("table") or self.options.get("table")
        if self.kind not in WRITING_KINDS and not name:
            return None
        schema = step_options.get("schema") or self.options.get("schema") or DEFAULT_SCHEMA
        return str(schema), str(name or function_name)


def block_of(function: Any) -> Block | None:
    """The Block a decorator attached to `function`, or None for a plain function."""
    mark = getattr(function, _MARK, None)
    return mark if isinstance(mark, Block) else None


def _decorator(kind: str) -> Any:
    @overload
    def decorate(function: F) -> F: ...
    @overload
    def decorate(
        *, table: str | None = None, schema: str | None = None, strict: bool | None = None
    ) -> Callable[[F], F]: ...

    def decorate(function: Any = None, **options: Any) -> Any:
        unknown = set(options) - {"table", "schema", "strict"}
        if unknown:
            raise TypeError(
                f"@{kind}: unknown option(s) {', '.join(sorted(unknown))} (known: table, schema, strict)"
            )

        def mark(fn: F) -> F:
            setattr(fn, _MARK, Block(kind, {k: v for k, v in options.items() if v is not None}))
            return fn

        return mark(function) if callable(function) else mark

    decorate.__name__ = kind
    decorate.__doc__ = (
        f"Mark a function as a {kind} block: `@{kind}` or `@{kind}(table=..., schema=..., strict=...)`."
    )
    return decorate


loader = _decorator("loader")
transformer = _decorator("transformer")
exporter = _decorator("exporter")
check = _decorator("check")


# -- ref(): a dbt model or table of the warehouse -------------------------------------------------------

_PROJECT: contextvars.ContextVar[Any] = contextvars.ContextVar("elt_block_project", default=None)


@contextmanager
def running_in(project: Any) -> Iterator[None]:
    """Make `ref()` read `project`'s warehouse while a block runs."""
    token = _PROJECT.set(project)
    try:
        yield
    finally:
        _PROJECT.reset(token)


def ref(name: str) -> Any:
    """The rows of dbt model `name` (or table `schema.table`) of the warehouse, as a pandas DataFrame.

    A bare name is looked up in the schema dbt builds into (`analytics` in the sample project), then in
    `blocks` (other blocks' outputs), then `main`. The DuckDB file is opened read-only and closed at once,
    so a dbt or sync step can write it next. Outside a pipeline run, the project is the one of the
    current folder.
    """
    from elt.steps.warehouse import (
        duckdb_file,
        environment_warehouse,
        open_duckdb,
        quote_identifier,
        read_table,
    )

    project = _PROJECT.get()
    if project is None:
        from elt.project import load_project

        project = load_project(Path.cwd(), None)
    if environment_warehouse(project).kind == "postgres":  # the environment's dbt builds into PostgreSQL
        return read_table(project, None, name).to_pandas()
    path = duckdb_file(project)
    con = open_duckdb(path, read_only=True)
    try:
        schema, table = _resolve(con, project, name, path)
        return con.execute(f"SELECT * FROM {quote_identifier(schema)}.{quote_identifier(table)}").df()
    finally:
        con.close()


def _resolve(con: Any, project: Any, name: str, path: Path) -> tuple[str, str]:
    from elt.steps.warehouse import dbt_schema

    tables = {(s, t) for s, t in con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables"
    ).fetchall()}  # fmt: skip
    if "." in name:
        schema, _, table = name.partition(".")
        if (schema, table) in tables:
            return schema, table
    else:
        for schema in (dbt_schema(project), DEFAULT_SCHEMA, "main"):
            if (schema, name) in tables:
                return schema, name
        found = sorted(s for s, t in tables if t == name)
        if len(found) == 1:
            return found[0], name
    from difflib import get_close_matches

    known = sorted({t for _, t in tables} | {f"{s}.{t}" for s, t in tables})
    close = get_close_matches(name, known, n=3)
    raise RunError(
        f"ref('{name}'): no such model or table in the warehouse {path}",
        hint=(f"did you mean {', '.join(close)}? " if close else "")
        + "build the model first (a dbt step in `needs:`), or write `schema.table`",
    )


# -- the dbt sources of blocks' tables ------------------------------------------------------------------


def declared_outputs(project: Any) -> dict[str, list[str]]:
    """Tables that loader and transformer blocks of the project write, by schema.

    Read from the source of `blocks/*.py` and of the pipelines' python steps, without importing them
    (a dbt parse must not run user code), so a decorator's `table=`/`schema=` must be literals; a step's
    `table:`/`schema:` options count too. Plain functions with `table:` are not declared: they write
    where the step says (schema `main` by default), which a project may already declare itself.
    """
    files: dict[Path, dict[str, dict[str, Any]]] = {}  # file → function → step options
    blocks_dir = project.root / "blocks"
    if blocks_dir.is_dir():
        for path in sorted(blocks_dir.rglob("*.py")):
            files.setdefault(path.resolve(), {})
    for pipeline in (project.data.get("pipelines") or {}).values():
        for step in (pipeline or {}).get("steps") or []:
            if not isinstance(step, dict) or not isinstance(step.get("python"), str):
                continue
            file, _, function = step["python"].rpartition(":")
            path = (project.root / file).resolve()
            if path.is_file():
                options = {k: step[k] for k in ("table", "schema") if step.get(k)}
                files.setdefault(path, {})[function] = options
    outputs: dict[str, set[str]] = {}
    for block in declared_blocks(project, files):
        if block.table is not None:
            outputs.setdefault(block.table[0], set()).add(block.table[1])
    return {schema: sorted(tables) for schema, tables in sorted(outputs.items())}


@dataclass(frozen=True)
class DeclaredBlock:
    """A decorated function of the project, read from its source: where it is, its kind, the table it
    writes (None for kinds that write nothing) and the names it reads with `ref("…")` literals."""

    path: Path
    function: str
    kind: str
    table: tuple[str, str] | None
    refs: tuple[str, ...]


def declared_blocks(
    project: Any, files: dict[Path, dict[str, dict[str, Any]]] | None = None
) -> list[DeclaredBlock]:
    """The blocks of `blocks/*.py` and of the pipelines' python steps (`files`: file → function → the
    step's options, as `declared_outputs` gathers them)."""
    if files is None:
        files = {}
        blocks_dir = project.root / "blocks"
        if blocks_dir.is_dir():
            for path in sorted(blocks_dir.rglob("*.py")):
                files.setdefault(path.resolve(), {})
    found = []
    for path, steps in files.items():
        for function, (block, refs) in _decorated_with_refs(path).items():
            table = block.table(function, steps.get(function, {}))
            found.append(DeclaredBlock(path, function, block.kind, table, refs))
    return found


def _decorated_with_refs(path: Path) -> dict[str, tuple[Block, tuple[str, ...]]]:
    """The functions of a file with an `@loader`/`@transformer`/… decorator, read from its syntax, with
    the names each passes to `ref()` as a literal."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return {}  # the step that runs the file reports it
    found: dict[str, tuple[Block, tuple[str, ...]]] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call else decorator
            kind = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
            if kind not in KINDS:
                continue
            options = {}
            for keyword in call.keywords if call else []:
                if keyword.arg in ("table", "schema") and isinstance(keyword.value, ast.Constant):
                    options[keyword.arg] = keyword.value.value
            refs = tuple(
                call.args[0].value
                for call in ast.walk(node)
                if isinstance(call, ast.Call)
                and (getattr(call.func, "id", None) == "ref" or getattr(call.func, "attr", None) == "ref")
                and call.args
                and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[0].value, str)
            )
            found[node.name] = (Block(str(kind), options), refs)
    return found


def write_block_sources(project: Any) -> Path | None:
    """Write `<dbt project>/<model path>/_elt_blocks.yml` declaring one dbt source per schema that blocks
    write (source `blocks` for the default schema), each with its tables; remove it when there are none.

    Returns the file, or None when the project has no dbt project. Left untouched when unchanged, so
    dbt's partial parsing keeps its cache.
    """
    import yaml

    from elt.dbt import dbt_dirs

    try:
        project_dir, _ = dbt_dirs(project)
    except EltError:
        return None
    settings = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8")) or {}
    model_path = (settings.get("model-paths") or ["models"])[0]
    file = project_dir / str(model_path) / SOURCES_FILE
    outputs = declared_outputs(project)
    if not outputs:
        if file.is_file():
            file.unlink()
        return file
    sources = [
        {
            "name": schema,
            "schema": schema,
            "description": "Tables written by Python blocks (blocks/*.py); elt rewrites this file.",
            "tables": [{"name": table} for table in tables],
        }
        for schema, tables in outputs.items()
    ]
    text = "# Written by elt from the loader and transformer blocks of the project; do not edit.\n"
    text += yaml.safe_dump({"version": 2, "sources": sources}, sort_keys=False)
    if not file.is_file() or file.read_text(encoding="utf-8") != text:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text, encoding="utf-8")
    return file
