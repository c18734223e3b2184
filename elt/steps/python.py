"""The `python` step: call a function of a file in the project (`blocks/score.py:score`).

The file is imported by path for the call only: it and the project modules it imports are taken out of
`sys.modules` afterwards, so two blocks with the same file name, or a block edited between two calls,
never see each other's code. The function gets, by the names of its parameters, `context` (the
StepContext), `variables`, `item` (of `for_each`), `inputs` (upstream steps' values by step name), any
pipeline variable, or an upstream step's value by that step's name.

A pandas DataFrame or Arrow table returned with the option `table: NAME` (and `schema:`, default `main`)
replaces that table in the DuckDB warehouse that dbt reads; anything else returned becomes the step's
JSON value.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from elt.errors import ProjectError, RunError
from elt.steps import StepContext, StepOutput
from elt.steps.warehouse import VALUE_ROW_CAP, duckdb_file, json_safe, open_duckdb, quote_identifier

DEFAULT_SCHEMA = "main"


def run_python(spec: str, options: dict[str, Any], ctx: StepContext) -> StepOutput:
    """Import the file of `spec` (`path/to/file.py:function`, relative to the project root), call the
    function with the arguments its signature names, and store or return what it gives back.

    Raises ProjectError when the file or function cannot be found, RunError when the function raises
    (naming file, function and exception; the traceback too when ELT_DEBUG=1).
    """
    path, function_name = parse_spec(spec, ctx)
    with imported(path, ctx.project.root) as module:
        function = getattr(module, function_name, None)
        if not callable(function):
            found = sorted(
                n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_")
            )
            raise ProjectError(
                f"{spec}: {path.name} has no function '{function_name}'",
                hint=f"functions in it: {', '.join(found) or 'none'}",
            )
        arguments = call_arguments(function, ctx, spec)
        try:
            result = function(**arguments)
        except Exception as error:
            raise RunError(describe_failure(spec, path, error)) from error
    return _output(result, spec, options, ctx)


def parse_spec(spec: str, ctx: StepContext) -> tuple[Path, str]:
    """(the file, the function name) of `file.py:function`; ProjectError when malformed or missing."""
    file, sep, function = spec.strip().rpartition(":")
    if not sep or not file or not function.isidentifier():
        raise ProjectError(
            f"python step '{ctx.step}': '{spec}' is not FILE:FUNCTION",
            hint="write it as a path relative to the project root, e.g. blocks/score.py:score",
        )
    path = Path(file)
    path = path if path.is_absolute() else ctx.project.root / path
    if not path.is_file():
        raise ProjectError(f"python step '{ctx.step}': no file {path} (from '{spec}')")
    return path, function


@contextmanager
def imported(path: Path, root: Path) -> Iterator[ModuleType]:
    """The module of the file at `path`, with its folder and the project `root` importable, for the
    duration of the block.

    Modules imported meanwhile from the project are dropped from `sys.modules` at the end, so the next
    import of the same files reads them again.
    """
    folders = list(dict.fromkeys([str(path.parent.resolve()), str(root.resolve())]))
    name = "_elt_block_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    before = set(sys.modules)
    sys.path[:0] = folders
    try:
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ProjectError(f"{path}: cannot be imported as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up while it runs
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:
            raise RunError(describe_failure(f"{path.name} (on import)", path, error)) from error
        yield module
    finally:
        for folder in folders:
            if folder in sys.path:
                sys.path.remove(folder)
        for added in set(sys.modules) - before:
            if added == name or _is_project_module(sys.modules[added], folders):
                del sys.modules[added]


def _is_project_module(module: ModuleType, folders: list[str]) -> bool:
    """Whether the module was read from the project (not from an installed package, maybe in .venv)."""
    source = getattr(module, "__file__", None) or ""
    if not source or "site-packages" in source or source.startswith((sys.prefix, sys.base_prefix)):
        return False
    return any(source.startswith(folder + os.sep) for folder in folders)


def call_arguments(function: Callable[..., Any], ctx: StepContext, spec: str) -> dict[str, Any]:
    """The keyword arguments `function` asks for, from the step's context."""
    inputs = {name: output.value for name, output in ctx.upstream.items()}
    offered: dict[str, Any] = {
        **inputs,
        **ctx.variables,
        "context": ctx,
        "variables": dict(ctx.variables),
        "item": ctx.item,
        "inputs": inputs,
    }
    arguments: dict[str, Any] = {}
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.name in offered:
            arguments[parameter.name] = offered[parameter.name]
        elif parameter.default is parameter.empty:
            known = ["context", "variables", "item", "inputs", *sorted(ctx.variables), *sorted(inputs)]
            raise ProjectError(
                f"{spec}: parameter '{parameter.name}' has no value",
                hint=f"a block's parameters are taken by name from: {', '.join(known)}; or give it a default",
            )
    return arguments


def describe_failure(spec: str, path: Path, error: BaseException) -> str:
    """`spec failed: ValueError: message (at file:line)`, plus the traceback when ELT_DEBUG=1."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename) == path]
    where = f" (at {path.name}:{frames[-1].lineno})" if frames else ""
    message = f"{spec} failed: {type(error).__name__}: {error}{where}"
    if os.environ.get("ELT_DEBUG") == "1":
        message += "\n" + "".join(traceback.format_exception(error)).rstrip()
    return message


def _output(result: Any, spec: str, options: dict[str, Any], ctx: StepContext) -> StepOutput:
    table = _as_arrow(result)
    if options.get("table"):
        if table is None:
            raise RunError(
                f"{spec} returned {type(result).__name__}, but the step has `table: {options['table']}`",
                hint="return a pandas DataFrame or a pyarrow Table, or remove `table:`",
            )
        schema = str(options.get("schema") or DEFAULT_SCHEMA)
        name = str(options["table"])
        path = duckdb_file(ctx.project, options.get("target"))
        written = write_table(path, schema, name, table, ctx.log)
        ctx.log(f"wrote {written} rows to {schema}.{name} in {path.name}")
        return StepOutput(rows=written, summary={"table": f"{schema}.{name}", "warehouse": str(path)})
    if table is not None:
        rows = table.slice(0, VALUE_ROW_CAP).to_pylist()
        summary = {"returned": "table", "truncated": table.num_rows > VALUE_ROW_CAP}
        return StepOutput(rows=table.num_rows, value=json_safe(rows), summary=summary)
    try:
        value = json_safe(result)
    except (TypeError, ValueError) as error:
        raise RunError(
            f"{spec} returned a value that is not JSON: {error}",
            hint="return JSON values (dicts, lists, strings, numbers), a DataFrame or an Arrow table",
        ) from error
    rows = len(value) if isinstance(value, list) else None
    return StepOutput(rows=rows, value=value, summary={"returned": type(result).__name__})


def _as_arrow(result: Any) -> Any:
    """A pyarrow Table for a DataFrame or Arrow table/batch, else None (pandas is not imported for it)."""
    import pyarrow as pa

    if isinstance(result, pa.Table):
        return result
    if isinstance(result, pa.RecordBatch):
        return pa.Table.from_batches([result])
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(result, pandas.DataFrame):
        return pa.Table.from_pandas(result, preserve_index=False)
    return None


def write_table(path: Path, schema: str, name: str, table: Any, log: Callable[[str], None]) -> int:
    """Replace `schema.name` in the DuckDB file with the Arrow table, in one transaction; its rows."""
    con = open_duckdb(path, log)
    try:
        qualified = f"{quote_identifier(schema)}.{quote_identifier(name)}"
        con.register("_elt_step_result", table)
        con.execute("BEGIN")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
        con.execute(f"CREATE OR REPLACE TABLE {qualified} AS SELECT * FROM _elt_step_result")
        con.execute("COMMIT")
        return int(table.num_rows)
    finally:
        con.close()
