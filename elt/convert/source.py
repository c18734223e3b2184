"""Prefect flow files read without importing them: their imports, tasks, flows and literal constants.

`read_module(path)` parses one file (Python's `ast`; Prefect need not be installed) into a `Module`:
which local names are Prefect's (`task`, `Secret`, `prefect.flow`…), which functions are tasks and flows
with their decorator options, and what each task's body does (returns a value? writes files? reads
secrets or variables? imports dynamically?). elt/convert/prefect.py turns flows into pipelines from it.
"""

from __future__ import annotations

import ast
import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elt.errors import ProjectError

# Calls in a task's body that write somewhere: the exporter test of `kind_of`.
_WRITING_METHODS = {
    "write_text",
    "write_bytes",
    "to_csv",
    "to_parquet",
    "to_json",
    "to_sql",
    "to_excel",
    "to_feather",
    "writerow",
    "writerows",
    "dump",
    "upload_file",
    "upload_fileobj",
    "put_object",
    "executemany",
    "insert_rows",
    "write_table",
    "to_gbq",
    "copy_expert",
    "post",
    "put",
    "patch",
    "send",
    "mkdir",
}


@dataclass
class FunctionDef:
    """A task or flow: its function node, decorator options and parameters."""

    module: Module
    node: ast.FunctionDef | ast.AsyncFunctionDef
    decorator: ast.expr
    options: dict[str, ast.expr]
    name: str
    params: list[str]
    defaults: dict[str, ast.expr]
    varargs: bool

    @property
    def line(self) -> int:
        return self.decorator.lineno

    @property
    def is_async(self) -> bool:
        return isinstance(self.node, ast.AsyncFunctionDef)


@dataclass
class TaskBody:
    """What a task's body does, read from its syntax."""

    returns_value: bool = False
    writes: str | None = None  # the first writing call found (`write_text`, `open(..., "w")`)
    secrets: dict[str, str] = field(default_factory=dict)  # parameter added → Secret block name
    variables: dict[str, Any] = field(default_factory=dict)  # parameter added → (Variable name, default)
    rewrites: list[tuple[ast.expr, str]] = field(default_factory=list)  # expression → the parameter
    concurrency: list[tuple[str, int]] = field(default_factory=list)  # (name, line) of `with concurrency`
    dynamic_imports: list[int] = field(default_factory=list)
    prefect_uses: list[tuple[str, int]] = field(default_factory=list)  # Prefect names without stand-in


@dataclass
class Module:
    """One Prefect file: its parse tree, what its names are, its tasks and flows."""

    path: Path
    label: str  # the path as the report shows it
    source: str
    tree: ast.Module
    imports: dict[str, str]  # local name → qualified name (prefect.task, prefect.blocks.system.Secret)
    tasks: dict[str, FunctionDef] = field(default_factory=dict)
    flows: dict[str, FunctionDef] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)  # module-level literal assignments
    bodies: dict[str, TaskBody] = field(default_factory=dict)  # task name → what its body does

    def qualify(self, node: ast.expr) -> str | None:
        """The qualified name an expression stands for (`task` → `prefect.task`), or None."""
        if isinstance(node, ast.Name):
            return self.imports.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualify(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def is_prefect(self, node: ast.expr, *names: str) -> bool:
        """Whether `node` is one of Prefect's `names` (matched on the last part: `Secret`, `task`)."""
        qualified = self.qualify(node)
        if qualified is None or not qualified.split(".")[0].startswith("prefect"):
            return False
        return not names or qualified.rsplit(".", 1)[-1] in names

    def text(self, node: ast.AST) -> str:
        """The source text of a node, on one line."""
        segment = ast.get_source_segment(self.source, node) or ast.unparse(node)
        return " ".join(segment.split())


def read_module(path: Path, label: str) -> Module:
    """Parse a Prefect file; a syntax error is a ProjectError naming file and line."""
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as error:
        raise ProjectError(f"{label}:{error.lineno}: not valid Python: {error.msg}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ProjectError(f"{label}: cannot be read: {error}") from None
    module = Module(path, label, source, tree, _imports(tree, path))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if module.is_prefect(target, "task", "flow"):
                    kind = (module.qualify(target) or "").rsplit(".", 1)[-1]
                    found = _function(module, node, decorator)
                    (module.tasks if kind == "task" else module.flows)[node.name] = found
        elif (
            isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ):
            # not a literal: flows that use it get a TODO
            with contextlib.suppress(ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                module.constants[node.targets[0].id] = ast.literal_eval(node.value)
    for name, task in module.tasks.items():
        module.bodies[name] = read_task_body(module, task.node)
    return module


def block_stem(path: Path, taken: set[str]) -> str:
    """The name of a file's blocks/ module: its own, unless it would hide a standard module or clash."""
    stem = path.stem if path.stem.isidentifier() else "".join(c if c.isalnum() else "_" for c in path.stem)
    if stem in sys.stdlib_module_names or stem in ("elt", "prefect", "prefect_compat"):
        stem += "_flow"
    candidate, n = stem, 2
    while candidate in taken:
        candidate, n = f"{stem}_{n}", n + 1
    return candidate


def _imports(tree: ast.Module, path: Path) -> dict[str, str]:
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            for alias in node.names:  # `from .tasks import x` too: a sibling module
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = alias.name  # `from . import tasks`
    return names


def _function(
    module: Module, node: ast.FunctionDef | ast.AsyncFunctionDef, decorator: ast.expr
) -> FunctionDef:
    options = {k.arg: k.value for k in decorator.keywords if k.arg} if isinstance(decorator, ast.Call) else {}
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    params = [a.arg for a in positional] + [a.arg for a in args.kwonlyargs]
    defaults = dict(
        zip([a.arg for a in positional][len(positional) - len(args.defaults) :], args.defaults, strict=True)
    )
    defaults.update(
        {a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None}
    )
    return FunctionDef(
        module,
        node,
        decorator,
        options,
        node.name,
        params,
        defaults,
        args.vararg is not None or args.kwarg is not None,
    )


def read_task_body(module: Module, node: ast.FunctionDef | ast.AsyncFunctionDef) -> TaskBody:
    """What a task's body does: returns, writes, secrets and variables it reads, dynamic imports."""
    body = TaskBody()
    taken = {a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]}
    awaited = {id(n.value): n for n in ast.walk(node) if isinstance(n, ast.Await)}
    for child in _own_nodes(node):
        if isinstance(child, ast.Return) and child.value is not None:
            if not (isinstance(child.value, ast.Constant) and child.value.value is None):
                body.returns_value = True
        elif isinstance(child, ast.Yield | ast.YieldFrom):
            body.returns_value = True
        elif isinstance(child, ast.Call):
            if body.writes is None:
                body.writes = _writing_call(child)
            secret = secret_name(module, child)
            if secret is not None:
                param = next((p for p, n in body.secrets.items() if n == secret), None)
                param = param or _parameter(secret, taken)
                body.secrets[param] = secret
                body.rewrites.append((awaited.get(id(child), child), param))
            variable = variable_get(module, child)
            if variable is not None:
                param = next((p for p, v in body.variables.items() if v[0] == variable[0]), None)
                param = param or _parameter(variable[0], taken)
                body.variables[param] = variable
                body.rewrites.append((awaited.get(id(child), child), param))
            if is_dynamic_import(module, child):
                body.dynamic_imports.append(child.lineno)
        elif isinstance(child, ast.With | ast.AsyncWith):
            for item in child.items:
                call = item.context_expr
                if isinstance(call, ast.Call) and module.is_prefect(call.func, "concurrency") and call.args:
                    name = call.args[0]
                    if isinstance(name, ast.Constant) and isinstance(name.value, str):
                        body.concurrency.append((name.value, child.lineno))
    body.prefect_uses = prefect_uses(module, node)
    return body


COMPAT_NAMES = (
    "get_run_logger",
    "concurrency",
    "rate_limit",
    "tags",
    "create_markdown_artifact",
    "create_table_artifact",
    "create_link_artifact",
)
"""Prefect names the generated blocks/prefect_compat.py stands in for."""


def prefect_uses(module: Module, node: ast.AST) -> list[tuple[str, int]]:
    """Names of Prefect used in `node` that elt has no stand-in for, with their lines (Secret.load and
    Variable.get are rewritten into parameters, so they do not count)."""
    found: list[tuple[str, int]] = []
    skip: set[int] = set()
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        skip.update(id(n) for d in node.decorator_list for n in ast.walk(d))  # the decorators are replaced
    local: set[str] = set()  # a hook's `flow` parameter is not Prefect's `flow`
    for child in ast.walk(node):
        if isinstance(child, ast.arg):
            local.add(child.arg)
        elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
            local.add(child.id)
    for child in ast.walk(node):
        if isinstance(child, ast.Call) and (secret_name(module, child) or variable_get(module, child)):
            skip.update(id(n) for n in ast.walk(child))
    for child in ast.walk(node):
        if id(child) in skip or not isinstance(child, ast.Name | ast.Attribute):
            continue
        if isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name | ast.Attribute):
            continue  # the innermost name says it
        root: ast.expr = child
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id in local:
            continue
        qualified = module.qualify(child)
        if qualified and qualified.split(".")[0].startswith("prefect"):
            last = qualified.rsplit(".", 1)[-1]
            if last in COMPAT_NAMES or (isinstance(child, ast.Name) and child.id in module.tasks):
                continue
            found.append((qualified, child.lineno))
    return found


def secret_name(module: Module, call: ast.Call) -> str | None:
    """`Secret.load("name").get()` (also awaited, or `Secret.load("name").get()` of Prefect 2) → name."""
    if not (isinstance(call.func, ast.Attribute) and call.func.attr == "get"):
        return None
    inner = call.func.value
    if isinstance(inner, ast.Await):
        inner = inner.value
    if (
        isinstance(inner, ast.Call)
        and isinstance(inner.func, ast.Attribute)
        and inner.func.attr == "load"
        and module.is_prefect(inner.func.value, "Secret")
        and inner.args
        and isinstance(inner.args[0], ast.Constant)
        and isinstance(inner.args[0].value, str)
    ):
        return inner.args[0].value
    return None


def variable_get(module: Module, call: ast.Call) -> tuple[str, Any] | None:
    """`Variable.get("name", default=…)` (Prefect 3) or `variables.get("name", "default")` (Prefect 2)
    → (name, default); the default is None when absent or not a literal."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr in ("get", "aget")):
        return None
    if not module.is_prefect(func.value, "Variable", "variables"):
        return None
    if not call.args or not (isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)):
        return None
    default_node = (
        call.args[1]
        if len(call.args) > 1
        else next((k.value for k in call.keywords if k.arg == "default"), None)
    )
    default = None
    if default_node is not None:
        try:
            default = ast.literal_eval(default_node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            default = None
    return call.args[0].value, default


def is_dynamic_import(module: Module, call: ast.Call) -> bool:
    """`importlib.import_module(…)`, `__import__(…)`, `importlib.util.spec_from_file_location(…)`."""
    qualified = module.qualify(call.func) or ""
    if isinstance(call.func, ast.Name) and call.func.id == "__import__":
        return True
    return qualified in (
        "importlib.import_module",
        "importlib.util.spec_from_file_location",
        "importlib.__import__",
    )


def _writing_call(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name) and func.id == "open":
        mode = (
            call.args[1]
            if len(call.args) > 1
            else next((k.value for k in call.keywords if k.arg == "mode"), None)
        )
        if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and set(mode.value) & set("wax+"):
            return f'open(…, "{mode.value}")'
        return None
    if isinstance(func, ast.Attribute):
        if func.attr == "open":
            mode = (
                call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "mode"), None)
            )
            if (
                isinstance(mode, ast.Constant)
                and isinstance(mode.value, str)
                and set(mode.value) & set("wax+")
            ):
                return f'.open("{mode.value}")'
            return None
        if func.attr in _WRITING_METHODS and func.attr != "mkdir":
            return f".{func.attr}()"
    return None


def _own_nodes(node: ast.AST) -> list[ast.AST]:
    """The nodes of a function's body, not those of functions or classes defined inside it."""
    found: list[ast.AST] = []
    todo = list(ast.iter_child_nodes(node))
    while todo:
        child = todo.pop()
        found.append(child)
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            todo.extend(ast.iter_child_nodes(child))
    return found


def _parameter(name: str, taken: set[str]) -> str:
    """A free parameter name for a secret or variable (`crm-api-token` → `crm_api_token`)."""
    base = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_") or "value"
    if base[0].isdigit() or base in ("context", "variables", "item", "inputs"):
        base = f"p_{base}"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate)
    return candidate
