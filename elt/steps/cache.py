"""Fingerprints of steps, for `cache:`: a step whose fingerprint is unchanged can reuse its last output.

The fingerprint is a sha256 over sorted JSON of what decides a step's output: its kind and environment,
its code (a python step's file and the project modules it imports, a sql step's statements or file), its
options (less the ones that only schedule it, `SCHEDULING_OPTIONS`), the pipeline's variables, its
`for_each` item, and the `value` and `rows` of the steps it depends on, directly or not (a sync that
moved new rows reruns a cached step downstream of the dbt step that read them).
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any

from elt.steps import StepContext

# Options that change when or how often a step runs, not what it produces.
SCHEDULING_OPTIONS = frozenset(
    {"cache", "retries", "timeout", "needs", "if", "on_failure", "notify", "description", "max_parallel"}
)


def fingerprint(kind: str, spec: str, options: dict[str, Any], ctx: StepContext) -> str:
    """The hex sha256 of everything that decides the step's output; equal across runs for equal inputs."""
    document = {
        "kind": kind,
        "environment": ctx.project.environment,
        "spec": spec,
        "code": code_digests(kind, spec, ctx.project.root),
        "options": {k: v for k, v in options.items() if k not in SCHEDULING_OPTIONS},
        "variables": ctx.variables,
        "item": ctx.item,
        "upstream": {
            name: {"value": output.value, "rows": output.rows}
            for name, output in {**ctx.earlier, **ctx.upstream}.items()
        },
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def code_digests(kind: str, spec: str, root: Path) -> dict[str, str]:
    """sha256 of each file of the step's code, by path relative to the project ({} when it has none)."""
    if kind == "python":
        file = spec.strip().rpartition(":")[0]
        path = Path(file) if Path(file).is_absolute() else root / file
        return {_relative(p, root): _digest(p) for p in sorted(python_sources(path, root))}
    if kind == "sql":
        text = spec.strip()
        path = Path(text) if Path(text).is_absolute() else root / text
        if text.lower().endswith(".sql") and path.is_file():
            return {_relative(path, root): _digest(path)}
    return {}


def python_sources(path: Path, root: Path) -> set[Path]:
    """The file and, transitively, the project's modules it imports (from its folder or the root).

    Imports are read from the syntax, without running anything; installed packages are not followed.
    """
    found: set[Path] = set()
    pending = [path]
    while pending:
        current = pending.pop()
        if current in found or not current.is_file():
            continue
        found.add(current)
        try:
            tree = ast.parse(current.read_bytes(), filename=str(current))
        except SyntaxError:
            continue  # the step will fail on import and say where
        for name in _imported_names(tree, current, root):
            pending.extend(_module_files(name, [current.parent, root]))
    return found


def _imported_names(tree: ast.AST, current: Path, root: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package folder
                folder = current.parent
                for _ in range(node.level - 1):
                    folder = folder.parent
                prefix = ".".join(folder.relative_to(root).parts) if folder.is_relative_to(root) else ""
                base = ".".join(p for p in (prefix, base) if p)
            names.append(base)
            names.extend(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    return names


def _module_files(name: str, folders: list[Path]) -> list[Path]:
    parts = [p for p in name.split(".") if p]
    files: list[Path] = []
    for folder in folders:
        for depth in range(1, len(parts) + 1):
            base = folder.joinpath(*parts[:depth])
            files += [base.with_suffix(".py"), base / "__init__.py"]
    return [f for f in files if f.is_file()]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
