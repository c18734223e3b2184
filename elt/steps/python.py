"""The `python` step: call a function of a file in the project (`blocks/score.py:score`).

The file is imported by path for the call only: it and the project modules it imports are taken out of
`sys.modules` afterwards, so two blocks with the same file name, or a block edited between two calls,
never see each other's code. The function gets, by the names of its parameters, `context` (the
StepContext), `variables`, `item` (of `for_each`), `inputs` (upstream steps' values by step name), any
pipeline variable, or an upstream step's value by that step's name; the step's `arguments:` give
parameters values explicitly (`${steps.NAME.output}` of any earlier step, `${for_each.item}`,
`${vars.NAME}`, literals). An `async def` function is run to completion with `asyncio.run`.

A pandas DataFrame or Arrow table returned with the option `table: NAME` (and `schema:`, default `main`)
replaces that table in the DuckDB warehouse that dbt reads; anything else returned becomes the step's
JSON value.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import importlib.util
import inspect
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from elt.blocks import Block, block_of, ref, running_in, write_block_sources
from elt.errors import EltError, ProjectError, RunError
from elt.steps import StepContext, StepOutput
from elt.steps.warehouse import (
    VALUE_ROW_CAP,
    as_arrow_table,
    duckdb_file,
    environment_warehouse,
    json_safe,
    write_duckdb_table,
)
from elt.steps.warehouse import write_table as write_warehouse_table

DEFAULT_SCHEMA = "main"


def run_python(spec: str, options: dict[str, Any], ctx: StepContext) -> StepOutput:
    """Import the file of `spec` (`path/to/file.py:function`, relative to the project root), call the
    function with the arguments its signature names, and store or return what it gives back, as its
    decorator of `elt.blocks` says (a plain function: as the step's options say). With `isolate: true`
    the block runs in a `python` process of its own (`run_isolated`).

    Raises ProjectError when the file or function cannot be found, RunError when the function raises
    (naming file, function and exception; the traceback too when ELT_DEBUG=1) or a check fails.
    """
    if options.get("isolate"):
        return run_isolated(spec, options, ctx)
    result, block, function_name = call_block(spec, ctx, options)
    return _output(result, spec, options, ctx, block, function_name)


def call_block(
    spec: str, ctx: StepContext, options: dict[str, Any] | None = None
) -> tuple[Any, Block | None, str]:
    """Call the function of `spec` with its arguments from `ctx` and the step's `arguments:` (in
    `options`); (what it returned, its Block or None for a plain function, its name). A coroutine
    function is awaited. Nothing is written: `elt preview` shows the result as it is."""
    path, function_name = parse_spec(spec, ctx)
    with imported(path, ctx.project.root) as module:
        function = getattr(module, function_name, None)
        if not callable(function):
            found = sorted(
                n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_")
            )
            close = difflib.get_close_matches(function_name, found, n=1)
            raise ProjectError(
                f"{spec}: {path.name} has no function '{function_name}'",
                hint=(f"did you mean '{close[0]}'? " if close else "")
                + f"functions in it: {', '.join(found) or 'none'}",
            )
        block = block_of(function)
        with running_in(ctx.project):
            given = step_arguments(function, (options or {}).get("arguments"), ctx, spec)
            arguments = call_arguments(function, ctx, spec, tables=block is not None, given=given)
            try:
                result = function(**arguments)
                if inspect.iscoroutine(result):  # an `async def` block
                    result = asyncio.run(result)
            except EltError as error:  # from elt's own helpers (`ref()`): keep their hint
                raise RunError(describe_failure(spec, path, error), hint=error.hint) from error
            except Exception as error:
                raise RunError(describe_failure(spec, path, error)) from error
    return result, block, function_name


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


def call_arguments(
    function: Callable[..., Any],
    ctx: StepContext,
    spec: str,
    *,
    tables: bool = False,
    given: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The keyword arguments `function` asks for, from the step's context; `given` (the step's resolved
    `arguments:`) win over names, and may name parameters a `**kwargs` takes.

    With `tables` (a decorated block), a parameter named after an upstream step that wrote a warehouse
    table (a transformer, a python step with `table:`) gets that table as a DataFrame, not its value.
    """
    inputs = {name: output.value for name, output in ctx.upstream.items()}
    if tables:
        wanted = set(inspect.signature(function).parameters)
        for name, output in ctx.upstream.items():
            table = output.summary.get("table") if isinstance(output.summary, dict) else None
            if (
                name in wanted
                and name not in (given or {})
                and isinstance(table, str)
                and output.value is None
            ):
                inputs[name] = ref(table)
    offered: dict[str, Any] = {
        **inputs,
        **ctx.variables,
        "context": ctx,
        "variables": dict(ctx.variables),
        "item": ctx.item,
        "inputs": inputs,
        **(given or {}),
    }
    arguments: dict[str, Any] = {k: v for k, v in (given or {}).items()}
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


_ITEM = re.compile(r"\$\{for_each\.item\}")


def step_arguments(
    function: Callable[..., Any], arguments: Any, ctx: StepContext, spec: str
) -> dict[str, Any]:
    """The step's `arguments:` (parameter name → value) with references resolved.

    `${steps.NAME.output}` is the value of step NAME, which must be upstream of this one (directly or
    not); a step that wrote a warehouse table gives that table as a DataFrame. `${for_each.item}` is the
    `for_each` element (inside a longer string, its text). `${vars.NAME}` was replaced when the pipeline
    was loaded. Lists and mappings are resolved element by element.
    """
    if arguments is None:
        return {}
    if not isinstance(arguments, dict):
        raise ProjectError(f"{spec}: `arguments` must map parameter names to values, got {arguments!r}")
    parameters = inspect.signature(function).parameters
    open_ended = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    for name in arguments:
        if name not in parameters and not open_ended:
            raise ProjectError(
                f"{spec}: `arguments` names '{name}', which is no parameter of the function",
                hint=f"its parameters: {', '.join(parameters) or 'none'}",
            )
    return {str(name): _resolve_argument(value, ctx, spec, str(name)) for name, value in arguments.items()}


def _resolve_argument(value: Any, ctx: StepContext, spec: str, name: str) -> Any:
    from elt.orchestrator.model import STEP_OUTPUT

    if isinstance(value, list):
        return [_resolve_argument(v, ctx, spec, name) for v in value]
    if isinstance(value, dict):
        return {k: _resolve_argument(v, ctx, spec, name) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    match = STEP_OUTPUT.match(value)
    if match:
        source = match.group(1)
        output = ctx.earlier.get(source) or ctx.upstream.get(source)
        if output is None:
            raise ProjectError(
                f"{spec}: argument '{name}' takes the output of step '{source}', which is not upstream "
                f"of step '{ctx.step}'",
                hint=f"add '{source}' to the step's `needs`",
            )
        table = output.summary.get("table") if isinstance(output.summary, dict) else None
        if isinstance(table, str) and output.value is None:
            return ref(table)
        return output.value
    if _ITEM.fullmatch(value):
        return ctx.item
    return _ITEM.sub(lambda _: ctx.item if isinstance(ctx.item, str) else json.dumps(ctx.item), value)


def describe_failure(spec: str, path: Path, error: BaseException) -> str:
    """`spec failed: ValueError: message (at file:line)`, plus the traceback when ELT_DEBUG=1."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename) == path]
    where = f" (at {path.name}:{frames[-1].lineno})" if frames else ""
    text = error.message if isinstance(error, EltError) else str(error)
    message = f"{spec} failed: {type(error).__name__}: {text}{where}"
    if os.environ.get("ELT_DEBUG") == "1":
        message += "\n" + "".join(traceback.format_exception(error)).rstrip()
    return message


def _output(
    result: Any,
    spec: str,
    options: dict[str, Any],
    ctx: StepContext,
    block: Block | None = None,
    function_name: str = "",
) -> StepOutput:
    if block is not None and block.kind == "check":
        return _check_output(result, spec, ctx)
    table = _as_arrow(result)
    where = block.table(function_name, options) if block is not None else None
    if where is None and options.get("table"):
        where = str(options.get("schema") or DEFAULT_SCHEMA), str(options["table"])
    if where is not None and table is None and block is not None and not block.strict:
        where = None  # `@transformer(strict=False)`: a result that is no table is the step's value
    if where is not None:
        schema, name = where
        if table is None:
            what = f"@{block.kind}" if block is not None else f"`table: {options['table']}`"
            raise RunError(
                f"{spec} returned {type(result).__name__}, but the block is a {what} that writes "
                f"{schema}.{name}",
                hint="return a pandas DataFrame or a pyarrow Table",
            )
        warehouse = environment_warehouse(ctx.project)
        if warehouse.kind == "postgres" and not options.get("target"):
            # the environment's dbt builds into PostgreSQL: the table goes where its models read
            written = write_warehouse_table(ctx.project, schema, name, table)
            where_written = warehouse.describe()
        else:
            path = duckdb_file(ctx.project, options.get("target"))
            written = write_duckdb_table(path, schema, name, table, ctx.log)
            where_written = str(path)
        ctx.log(f"wrote {written} rows to {schema}.{name} in {where_written}")
        if block is not None:
            write_block_sources(ctx.project)
        return StepOutput(rows=written, summary={"table": f"{schema}.{name}", "warehouse": where_written})
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


def check_failure(result: Any) -> str | None:
    """Why a check's result fails it, or None when it passes.

    True, None, "" and a table without rows pass; False, a message, or a table of failing rows fail.
    """
    table = _as_arrow(result)
    if table is not None:
        if table.num_rows == 0:
            return None
        sample = json.dumps(json_safe(table.slice(0, 3).to_pylist()))
        more = f" (first 3: {sample})" if table.num_rows > 3 else f": {sample}"
        return f"{table.num_rows} failing row(s){more}"
    if result is None or result is True or result == "":
        return None
    if result is False:
        return "the check returned False"
    if isinstance(result, str):
        return result
    raise RunError(
        f"a check returned {type(result).__name__}",
        hint="return True/False, a message (str) or a DataFrame of the failing rows",
    )


def _check_output(result: Any, spec: str, ctx: StepContext) -> StepOutput:
    try:
        reason = check_failure(result)
    except RunError as error:
        raise RunError(f"check {spec}: {error.message}", hint=error.hint) from None
    if reason is not None:
        raise RunError(f"check {spec} failed: {reason}")
    ctx.log(f"check {spec} passed")
    return StepOutput(rows=0, value=True, summary={"check": "passed"})


def _as_arrow(result: Any) -> Any:
    """A pyarrow Table for a DataFrame or Arrow table/batch, else None (pandas is not imported for it)."""
    try:
        return as_arrow_table(result)
    except TypeError:
        return None


# -- isolate: true ------------------------------------------------------------------------------------

_ERRORS: dict[str, type[EltError]] = {"ProjectError": ProjectError, "RunError": RunError}


def run_isolated(spec: str, options: dict[str, Any], ctx: StepContext) -> StepOutput:
    """Run the block in a fresh `python -m elt.steps.python REQUEST.json` of the same interpreter: its
    inputs (context, upstream outputs) go in a request file, its output or error comes back in a result
    file, and its printed lines become the step's log. The errors are those of an in-process run."""
    import subprocess
    import tempfile
    from dataclasses import asdict

    with tempfile.TemporaryDirectory(prefix="elt-block-", dir=ctx.project.system_dir) as folder:
        request = Path(folder) / "request.json"
        result = Path(folder) / "result.json"
        request.write_text(json.dumps({
            "project_dir": str(ctx.project.root), "environment": ctx.project.environment,
            "run_id": ctx.run_id, "pipeline": ctx.pipeline, "step": ctx.step,
            "variables": ctx.variables, "item": ctx.item, "spec": spec,
            "options": {k: v for k, v in options.items() if k != "isolate"},
            "upstream": {k: asdict(v) for k, v in ctx.upstream.items()},
            "earlier": {k: asdict(v) for k, v in ctx.earlier.items()},
            "result": str(result),
        }, default=str), encoding="utf-8")  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "elt.steps.python", str(request)], cwd=ctx.project.root,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            ctx.log(line.rstrip("\n"))
        code = proc.wait()
        if not result.is_file():
            raise RunError(f"{spec}: the isolated block's process ended with code {code} without a result")
        outcome = json.loads(result.read_text(encoding="utf-8"))
    if not outcome["ok"]:
        raise _ERRORS.get(outcome["error"], RunError)(outcome["message"], hint=outcome.get("hint"))
    from elt.orchestrator.attempt import output_from_json

    return output_from_json(outcome["output"])


def _run_request(request_path: Path) -> int:
    """The isolated process: run the request's block in-process and write its result file."""
    from dataclasses import asdict
    from datetime import UTC, datetime

    from elt.orchestrator.attempt import output_from_json
    from elt.project import load_project

    request = json.loads(request_path.read_text(encoding="utf-8"))

    def log(line: str) -> None:
        print(f"{datetime.now(UTC):%H:%M:%S} {line}", flush=True)

    try:
        ctx = StepContext(
            project=load_project(Path(request["project_dir"]), request["environment"]),
            run_id=request["run_id"], pipeline=request["pipeline"], step=request["step"],
            variables=request["variables"], item=request["item"], log=log,
            upstream={k: output_from_json(v) for k, v in request["upstream"].items()},
            earlier={k: output_from_json(v) for k, v in request["earlier"].items()},
        )  # fmt: skip
        output = run_python(request["spec"], request["options"], ctx)
        outcome: dict[str, Any] = {"ok": True, "output": asdict(output)}
    except EltError as error:
        outcome = {"ok": False, "error": type(error).__name__, "message": error.message, "hint": error.hint}
    Path(request["result"]).write_text(json.dumps(outcome, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_run_request(Path(sys.argv[1])))
