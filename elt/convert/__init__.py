"""Other orchestrators' projects converted into elt projects: `elt convert prefect` (docs/convert-prefect.md).

The stages, each a module:

| module | concern |
|---|---|
| `source` | a Prefect file read with `ast`: imports, tasks, flows, what task bodies do |
| `prefect` | each flow read statement by statement into a pipeline, every construct recorded |
| `deployments` | `serve()`/`deploy()`/prefect.yaml deployments and their schedules |
| `schedules` | cron, interval and rrule as cron expressions |
| `code` | the blocks/ file of a flow file: its tasks as blocks, Prefect taken out |
| `writer` | block files written, entries merged into elt.yml |
| `report` | the report per flow, as text or JSON |
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from elt.convert.code import render_block_file
from elt.convert.deployments import deployment_schedules, module_deployments, yaml_deployments
from elt.convert.model import BlockFile, Conversion
from elt.convert.prefect import Catalog, Options, convert_flows
from elt.convert.report import report_json, report_text
from elt.convert.source import Module, block_stem, read_module
from elt.convert.writer import compat_block, write_project
from elt.errors import EltError

PREFECT_YAML = ("prefect.yaml", "prefect.yml")
_SKIPPED_DIRS = {".venv", "venv", "node_modules", "__pycache__", ".git", "site-packages", ".elt"}


def convert_prefect(paths: list[Path], out: Path, tag_limits: dict[str, int] | None = None) -> Conversion:
    """Convert the Prefect flows in `paths` (files, or folders searched for `*.py` and prefect.yaml)
    into the elt project at `out`: blocks/ files, pipelines, schedules and triggers in its elt.yml (created
    when missing, extended otherwise), and conversion-report.md / .json. Returns what was converted.

    Raises EltError when nothing can be read, a file is not Python, or a name is already taken in `out`.
    """
    files, yamls = _find(paths)
    modules = _read(files)
    if not any(m.flows or m.tasks for m in modules):
        shown = ", ".join(str(p) for p in paths)
        raise EltError(
            f"no Prefect flow or task found in {shown}",
            hint="give .py files (or folders) whose functions have @flow or @task",
        )
    stems: dict[str, str] = {}
    for module in modules:
        stems[module.label] = block_stem(module.path, set(stems.values()))
    catalog = Catalog(modules, stems)
    results = convert_flows(catalog, Options(dict(tag_limits or {})))
    conversion = Conversion(out=str(out))
    reports = {(r.flow.module.label, r.flow.name): r.report for r in results}
    conversion.pipelines = [r.pipeline for r in results]
    conversion.flows = [r.report for r in results]
    conversion.triggers = [t for r in results for t in r.triggers]
    deployments = [d for m in modules for d in module_deployments(m, catalog)]
    for path in yamls:
        deployments += yaml_deployments(path, _label(path), catalog)
    conversion.schedules = deployment_schedules(deployments, catalog, reports, set())
    hooks = [h for r in results for h in r.hooks]
    for module in modules:
        own_hooks = [h for h in hooks if h.module is module]
        if not module.tasks and not own_hooks:
            continue
        text = render_block_file(module, catalog, own_hooks)
        conversion.blocks.append(BlockFile(f"blocks/{stems[module.label]}.py", text, module.label))
        for name, task in module.tasks.items():
            if (module.label, name) not in catalog.called:
                conversion.unused_tasks.append({"file": module.label, "task": name, "line": task.line})
    if any("prefect_compat" in b.text for b in conversion.blocks):
        compat_path, compat_text = compat_block()
        conversion.blocks.append(BlockFile(compat_path, compat_text, ""))
    write_project(conversion, out)
    (out / "conversion-report.md").write_text(report_text(conversion), encoding="utf-8")
    (out / "conversion-report.json").write_text(
        json.dumps(report_json(conversion), indent=2) + "\n", encoding="utf-8"
    )
    return conversion


def _find(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """The Python files and prefect.yaml files to read, in a stable order."""
    files: list[Path] = []
    yamls: list[Path] = []
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*.py")):
                if not _SKIPPED_DIRS & set(found.relative_to(path).parts):
                    files.append(found)
            yamls += [path / name for name in PREFECT_YAML if (path / name).is_file()]
        elif path.name in PREFECT_YAML:
            yamls.append(path)
        elif path.is_file():
            files.append(path)
            for parent in [path.parent, *path.parent.parents][:3]:
                found_yaml = [parent / n for n in PREFECT_YAML if (parent / n).is_file()]
                if found_yaml:
                    yamls += found_yaml
                    break
        else:
            raise EltError(f"{path}: no such file or folder")
    return list(dict.fromkeys(files)), list(dict.fromkeys(p.resolve() for p in yamls))


def _read(files: list[Path]) -> list[Module]:
    """The modules of `files`, and of sibling modules they import tasks or flows from."""
    modules: list[Module] = []
    seen: set[Path] = set()
    todo = list(files)
    while todo:
        path = todo.pop(0)
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        module = read_module(path, _label(path))
        if not module.flows and not module.tasks and path not in files:
            continue
        modules.append(module)
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith("prefect"):
                sibling = path.parent / (node.module.replace(".", "/") + ".py")
                if sibling.is_file() and sibling.resolve() not in seen:
                    todo.append(sibling)
    return [m for m in modules if m.flows or m.tasks]


def _label(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


__all__ = ["convert_prefect", "report_json", "report_text"]
