"""The dependency graph of a pipeline: explicit `needs`, and dbt steps' inferred dependencies on syncs.

A step with `if: always` or `if: failure` and no `needs` runs after every other step (a finalizer).
A partitioned sync's three steps (`NAME:plan`, `NAME`, `NAME:commit`) are selected together by `NAME`,
and its commit stands for it as a sync.

A dbt step depends on each sync step that loads a schema its selected models read as a dbt source,
found in the dbt manifest (`<dbt project>/target/manifest.json`, written by any earlier dbt command).
Without a manifest, a dbt step depends on every sync step declared before it. An export step without
`needs` depends on the dbt steps declared before it (it exports a table they build).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import networkx as nx

from elt.errors import EltError, ProjectError
from elt.orchestrator.model import PipelineSpec, StepSpec
from elt.project import Project

# Steps that load a sync's streams, for the dbt steps that read them: a sync, a partitioned sync's commit.
_LOADS = ("sync", "partition-commit")


def build_graph(project: Project, pipeline: PipelineSpec) -> nx.DiGraph:
    """Nodes are step names (attribute `spec`); an edge A → B means B runs after A."""
    graph = nx.DiGraph()
    for position, step in enumerate(pipeline.steps):
        graph.add_node(step.name, spec=step, position=position)
    for step in pipeline.steps:
        for need in step.needs:
            graph.add_edge(need, step.name)
    if not pipeline.sequential:
        manifest = _manifest(project)
        for position, step in enumerate(pipeline.steps):
            if step.kind == "dbt":
                for sync in _inferred_syncs(
                    project, pipeline.steps[:position], pipeline.steps, step, manifest
                ):
                    graph.add_edge(sync, step.name)
            elif step.kind == "export" and not step.needs:
                # what it exports is a table or model: built by the dbt steps declared before it
                for dbt_step in pipeline.steps[:position]:
                    if dbt_step.kind == "dbt":
                        graph.add_edge(dbt_step.name, step.name)
    # A step that runs on failure or always, and names no needs, is a finalizer: it waits for the rest.
    finalizers = [s.name for s in pipeline.steps if s.condition != "success" and not s.needs]
    for final in finalizers:
        after = nx.descendants(graph, final)
        for other in pipeline.steps:
            if other.name not in finalizers and other.name not in after:
                graph.add_edge(other.name, final)
    if not nx.is_directed_acyclic_graph(graph):
        cycle = " → ".join(a for a, _ in nx.find_cycle(graph))
        raise ProjectError(f"{project.file.name}: pipeline '{pipeline.name}' has a cycle of needs: {cycle}")
    return graph


def select_steps(graph: nx.DiGraph, only: tuple[str, ...] = (), start: str | None = None) -> set[str]:
    """The steps to run: `only` these, or `start` and everything downstream of it, or all.

    A partitioned sync's name stands for its three steps: plan, partitions and commit.
    """
    for name in (*only, *([start] if start else [])):
        if name not in graph:
            known = ", ".join(graph.nodes)
            raise EltError(f"no step named '{name}' in this pipeline (steps: {known})")
    if only:
        return {member for name in only for member in _partitioned(graph, name)}
    if start:
        first = _partitioned(graph, start)[0]
        return {first} | nx.descendants(graph, first)
    return set(graph.nodes)


def _partitioned(graph: nx.DiGraph, name: str) -> list[str]:
    """`name`, or a partitioned sync's three steps when it names one (its partitions' step)."""
    if graph.nodes[name]["spec"].kind != "partition":
        return [name]
    return [f"{name}:plan", name, f"{name}:commit"]


def manifest_path(project: Project) -> Path | None:
    """Where dbt wrote its manifest for this project, if it did."""
    from elt.dbt import dbt_settings

    settings = dbt_settings(project)
    path = project.root / str(settings.get("project_dir", "models")) / "target" / "manifest.json"
    return path if path.is_file() else None


def _manifest(project: Project) -> dict[str, Any] | None:
    try:
        path = manifest_path(project)
    except EltError:
        return None
    if path is None:
        return None
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest


def _inferred_syncs(
    project: Project,
    before: tuple[StepSpec, ...],
    every: tuple[StepSpec, ...],
    dbt_step: StepSpec,
    manifest: dict[str, Any] | None,
) -> list[str]:
    if manifest is None:
        return [s.name for s in before if s.kind in _LOADS]
    schemas = _source_schemas(manifest, dbt_step.spec)
    if schemas is None:
        return [s.name for s in before if s.kind in _LOADS]
    return [s.name for s in every if s.kind in _LOADS and _load_schema(project, s).lower() in schemas]


def _source_schemas(manifest: dict[str, Any], command: str) -> set[str] | None:
    """Schemas of the sources read by the models a dbt command selects; None if the selection is unknown."""
    nodes: dict[str, Any] = {**manifest.get("nodes", {}), **manifest.get("sources", {})}
    parents: dict[str, list[str]] = manifest.get("parent_map") or {
        uid: list((node.get("depends_on") or {}).get("nodes", [])) for uid, node in nodes.items()
    }
    children: dict[str, list[str]] = manifest.get("child_map") or {}
    selectors = _selectors(command)
    models = [
        uid for uid, n in nodes.items() if n.get("resource_type") in ("model", "seed", "snapshot", "test")
    ]
    if not selectors:
        selected = set(models)
    else:
        selected = set()
        for selector in selectors:
            descendants, name = selector.endswith("+"), selector.strip("+").split(":")[-1]
            matched = {uid for uid in models
                       if name in (nodes[uid].get("name"), *nodes[uid].get("fqn", []))}  # fmt: skip
            if not matched:
                return None
            selected |= matched
            if descendants:
                selected |= {d for uid in matched for d in _walk(uid, children)}
    reads = {a for uid in selected for a in _walk(uid, parents)} | selected
    return {str(nodes[uid].get("schema", "")).lower() for uid in reads
            if nodes.get(uid, {}).get("resource_type") == "source"}  # fmt: skip


def _walk(start: str, edges: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in edges.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _selectors(command: str) -> list[str]:
    args = shlex.split(command)
    found: list[str] = []
    for i, arg in enumerate(args):
        if arg in ("-s", "--select", "-m", "--models") and i + 1 < len(args):
            found.extend(args[i + 1].replace(",", " ").split())
    return found


def _load_schema(project: Project, step: StepSpec) -> str:
    from elt.plugins import find_plugin

    names = step.spec.split()
    try:
        tap = find_plugin(project, names[0], "extractors")
        target = find_plugin(project, names[-1], "loaders")
    except EltError:
        return ""
    return str(target.config.get("default_target_schema") or tap.load_schema)
