"""The blocks/ file of a Prefect module: its own code, with each `@task` now an elt block.

The user's code is kept as it was written, comments included: only what Prefect needs is changed.
Each task's `@task(...)` decorator becomes `@loader`, `@transformer` or `@exporter` with a comment
saying why; `Secret.load(NAME).get()` and `Variable.get(NAME)` in a task's body become parameters the
step fills (`${secret:NAME}`, `${vars.NAME}`); flows, deployments and Prefect imports are removed (the
flows are pipelines in elt.yml now); a state hook gets a small block that calls it. Prefect helpers with
an obvious stand-in (`get_run_logger`, `concurrency`, `tags`, artifacts) come from
`blocks/prefect_compat.py`; any other use of Prefect is marked with a TODO comment on its line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from elt.convert.prefect import Catalog, HookStep
from elt.convert.source import COMPAT_NAMES, FunctionDef, Module

COMPAT_MODULE = "prefect_compat"
_IMPORTS = "\x00elt imports\x00"  # a placeholder no source holds

COMPAT_TEXT = '''"""Stand-ins for Prefect helpers that converted blocks still call (by `elt convert prefect`).

elt runs each block in a process of its own and shows what it prints in the step's log, so Prefect's run
logger becomes a logger that prints; concurrency limits and tags are the steps' `concurrency:` options in
elt.yml, so their context managers do nothing here; artifacts are printed. Edit freely, and delete the
file once no block imports it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any


def get_run_logger(*_: Any, **__: Any) -> logging.Logger:
    """A logger whose lines go to the step's log."""
    logger = logging.getLogger("prefect")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


@contextmanager
def concurrency(*_: Any, **__: Any) -> Iterator[None]:
    """Nothing: the step's `concurrency:` in elt.yml limits it."""
    yield


@contextmanager
def tags(*_: Any, **__: Any) -> Iterator[None]:
    """Nothing: tags are labels in elt."""
    yield


def rate_limit(*_: Any, **__: Any) -> None:
    """Nothing: elt has no rate limits (see the TODO where it is called)."""


def create_markdown_artifact(markdown: str = "", key: str | None = None, **_: Any) -> None:
    print(f"artifact {key or ''}:\\n{markdown}")


def create_table_artifact(table: Any = None, key: str | None = None, **_: Any) -> None:
    print(f"artifact {key or ''}: {table}")


def create_link_artifact(link: str = "", key: str | None = None, **_: Any) -> None:
    print(f"artifact {key or ''}: {link}")


def hook_arguments(context: Any, variables: dict[str, Any], owner: str, state: str) -> tuple[Any, Any, Any]:
    """(flow or task, its run, its state) for a Prefect state hook run by elt as a step: the few
    attributes hooks usually read (`flow.name`, `flow_run.parameters`, `state.name`, `state.message`)."""
    run = SimpleNamespace(id=context.run_id, name=context.run_id, parameters=dict(variables))
    message = f"elt run {context.run_id} of {context.pipeline}"
    if state != "Completed":
        message += " failed: see `elt runs show " + context.run_id + "`"
    return SimpleNamespace(name=owner), run, SimpleNamespace(name=state, type=state.upper(), message=message)
'''


@dataclass(frozen=True)
class Kind:
    """The block kind of a task and why."""

    decorator: str  # loader | transformer | exporter
    why: str


def task_kind(task: FunctionDef, catalog: Catalog) -> Kind:
    """exporter: writes out and returns nothing; loader: no other task's result goes in; else transformer."""
    body = task.module.bodies[task.name]
    data = (task.module.label, task.name) in catalog.data_input
    if not body.returns_value and body.writes:
        return Kind("exporter", f"it returns nothing and writes out ({body.writes})")
    returns = "returns a value" if body.returns_value else "returns nothing"
    if not data:
        return Kind("loader", f"no other task's result goes into it; it {returns}")
    return Kind("transformer", f"it takes another task's result and {returns}")


def render_block_file(module: Module, catalog: Catalog, hooks: list[HookStep]) -> str:
    """The text of the blocks/ file for `module` (its tasks as blocks, its hooks' steps)."""
    edits = _Edits(module.source)
    kinds = {name: task_kind(task, catalog) for name, task in module.tasks.items()}
    used_kinds = {k.decorator for k in kinds.values()} | ({"exporter"} if hooks else set())
    compat: dict[str, str] = {}  # local name → compat name
    header_at: int | None = None
    label = module.path.name
    for node in module.tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom) and _is_prefect_import(node):
            for alias in node.names:
                name = alias.name.rsplit(".", 1)[-1]
                if (
                    isinstance(node, ast.ImportFrom)
                    and name in COMPAT_NAMES
                    and _used(module, alias.asname or name)
                ):
                    compat[alias.asname or name] = name
            if header_at is None:
                header_at = node.lineno
                edits.replace_lines(node.lineno, node.end_lineno or node.lineno, _IMPORTS)
            else:
                edits.replace_lines(node.lineno, node.end_lineno or node.lineno, "")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in module.flows:
            flow = module.flows[node.name]
            pipeline = catalog.pipelines[(module.label, node.name)]
            edits.replace_lines(
                flow.line,
                node.end_lineno or node.lineno,
                f"# flow {node.name} (line {flow.line}) is pipeline '{pipeline}' in elt.yml\n",
            )
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in module.tasks:
            _task(edits, module, module.tasks[node.name], kinds[node.name], label)
        elif _is_main(node) or _touches_prefect(module, node):
            first = node.lineno
            edits.replace_lines(
                first,
                node.end_lineno or first,
                f"# removed: Prefect deployment and run code (lines {first}-{node.end_lineno})\n",
            )
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for name, line in _prefect_names(module, node):
                edits.todo(line, f"TODO(prefect {label}:{line}): uses {name}, which elt does not provide")
    imports = ""
    if used_kinds:
        imports += f"from elt.blocks import {', '.join(sorted(used_kinds))}\n"
    needed = dict(compat)
    if hooks:
        needed["hook_arguments"] = "hook_arguments"
    if needed:
        names = sorted(f"{c} as {n}" if c != n else n for n, c in needed.items())
        imports += f"from {COMPAT_MODULE} import {', '.join(names)}\n"
    header = (
        f"# Converted from Prefect ({label}) by `elt convert prefect`: each @task is a block (its\n"
        "# decorator says which kind and why), each @flow a pipeline in elt.yml; TODOs need a person.\n"
    )
    text = edits.apply()
    if _IMPORTS in text:  # where the first Prefect import was
        text = _insert_after_docstring(module, text.replace(_IMPORTS, imports, 1), header)
    else:
        text = _insert_after_docstring(module, text, header + imports)
    for hook in hooks:
        text = text.rstrip("\n") + "\n\n\n" + _hook_block(hook)
    return text.rstrip("\n") + "\n"


def _task(edits: _Edits, module: Module, task: FunctionDef, kind: Kind, label: str) -> None:
    node = task.node
    indent = " " * node.col_offset
    was = module.text(task.decorator)
    was = was if len(was) <= 70 else was[:67] + "..."
    options = "" if kind.decorator == "exporter" else "(strict=False)"
    edits.replace_lines(
        task.decorator.lineno,
        task.decorator.end_lineno or task.decorator.lineno,
        f"{indent}# {kind.decorator}: {kind.why} (was @{was})\n{indent}@{kind.decorator}{options}\n",
    )
    body = module.bodies[task.name]
    for expression, param in body.rewrites:
        edits.replace(expression, param)
    added = [p for p in [*body.secrets, *body.variables] if p not in task.params]
    if added:
        edits.add_parameters(node, added)
    for line in body.dynamic_imports:
        edits.todo(line, f"TODO(prefect {label}:{line}): a dynamic import; check the block can import it")
    for name, line in body.prefect_uses:
        edits.todo(line, f"TODO(prefect {label}:{line}): uses {name}, which elt does not provide")
    for name, line in body.concurrency:
        edits.todo(
            line,
            f"note (prefect {label}:{line}): concurrency '{name}' is the step's `concurrency:` in "
            "elt.yml now; this `with` does nothing",
        )


def _hook_block(hook: HookStep) -> str:
    option = {"Completed": "on_completion", "Failed": "on_failure", "Crashed": "on_crashed"}[hook.state]
    return (
        f"# exporter: runs the Prefect {option} hook `{hook.hook}` of '{hook.owner}' as a step\n"
        f"@exporter\n"
        f"def {hook.function}(context, variables):\n"
        f'    """Prefect\'s {option} hook {hook.hook} of \'{hook.owner}\', with stand-ins for its"\n'
        f'    arguments."""\n'
        f'    {hook.hook}(*hook_arguments(context, variables, "{hook.owner}", "{hook.state}"))\n'
    )


def _is_prefect_import(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")[0].startswith("prefect") and node.level == 0
    return all(a.name.split(".")[0].startswith("prefect") for a in node.names)


def _is_main(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )


def _touches_prefect(module: Module, node: ast.stmt) -> bool:
    """A module-level statement that runs Prefect (serve, deploy, a task runner…) or a flow."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Import | ast.ImportFrom):
        return False
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and (child.id in module.flows or child.id in module.tasks):
            return True
        if isinstance(child, ast.Name | ast.Attribute) and module.is_prefect(child):
            return True
    return False


def _prefect_names(module: Module, node: ast.AST) -> list[tuple[str, int]]:
    from elt.convert.source import prefect_uses

    return prefect_uses(module, node)


def _used(module: Module, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(module.tree))


def _insert_after_docstring(module: Module, text: str, insert: str) -> str:
    body = module.tree.body
    line = 0
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        line = body[0].end_lineno or 0
    lines = text.splitlines(keepends=True)
    return "".join([*lines[:line], "\n" if line else "", insert, *lines[line:]])


class _Edits:
    """Replacements in a source text by line range or node position, applied back to front."""

    def __init__(self, source: str):
        self.source = source
        self.lines = source.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))
        self.changes: list[tuple[int, int, str]] = []

    def offset(self, line: int, column: int) -> int:
        """The character offset of (line, UTF-8 byte column) as `ast` gives them."""
        text = self.lines[line - 1] if line - 1 < len(self.lines) else ""
        return self.starts[line - 1] + len(text.encode("utf-8")[:column].decode("utf-8", "replace"))

    def replace_lines(self, first: int, last: int, text: str) -> None:
        self.changes.append((self.starts[first - 1], self.starts[min(last, len(self.lines))], text))

    def replace(self, node: ast.expr, text: str) -> None:
        start = self.offset(node.lineno, node.col_offset)
        end = self.offset(node.end_lineno or node.lineno, node.end_col_offset or node.col_offset)
        self.changes.append((start, end, text))

    def todo(self, line: int, comment: str) -> None:
        text = self.lines[line - 1] if line - 1 < len(self.lines) else ""
        indent = text[: len(text) - len(text.lstrip())]
        self.changes.append((self.starts[line - 1], self.starts[line - 1], f"{indent}# {comment}\n"))

    def add_parameters(self, node: ast.FunctionDef | ast.AsyncFunctionDef, names: list[str]) -> None:
        """Append keyword parameters with default None to a function's signature."""
        args = node.args
        last: ast.AST | None = None
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            last = arg
        positional = [a.arg for a in [*args.posonlyargs, *args.args]]
        defaults: dict[str, ast.expr] = dict(
            zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True)
        )
        defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d})
        text = ", ".join(f"{n}=None" for n in names)
        if isinstance(last, ast.arg):
            after: ast.expr | ast.arg = defaults.get(last.arg, last)
            at = self.offset(after.end_lineno or after.lineno, after.end_col_offset or 0)
            self.changes.append((at, at, ", " + text))
        else:
            start = self.offset(node.lineno, node.col_offset)
            at = self.source.index("(", start) + 1
            self.changes.append((at, at, text))

    def apply(self) -> str:
        text = self.source
        for start, end, replacement in sorted(self.changes, key=lambda c: (c[0], c[1]), reverse=True):
            text = text[:start] + replacement + text[end:]
        return text
