"""Lineage as text, JSON, Graphviz dot and Mermaid, for `elt lineage`."""

from __future__ import annotations

import json
import re
from typing import Any

from elt.lineage.model import LineageGraph, Node
from elt.lineage.query import ColumnLineage, ColumnStep, Impact, Neighbourhood

# Shapes and colours by node type, the same in dot and Mermaid.
STYLE = {
    "stream": ("cds", "#d9ead3"),
    "table": ("cylinder", "#cfe2f3"),
    "source": ("cylinder", "#b6d7a8"),
    "seed": ("note", "#fff2cc"),
    "block": ("component", "#ead1dc"),
    "model": ("box", "#c9daf8"),
    "snapshot": ("box3d", "#d9d2e9"),
    "test": ("diamond", "#f4cccc"),
    "exposure": ("house", "#fce5cd"),
    "export": ("folder", "#e6b8af"),
}


def neighbourhood_json(graph: LineageGraph, hood: Neighbourhood) -> dict[str, Any]:
    nodes = []
    for node_id, depth in sorted(hood.depths.items(), key=lambda item: (item[1], item[0])):
        node = graph.node(node_id)
        if node is None:
            continue
        last = node.runs[0] if node.runs else None
        nodes.append({
            "id": node.id, "type": node.type, "name": node.name, "relation": node.relation,
            "path": node.path, "depth": depth, "columns": [c.name for c in node.columns],
            "last_run": {"status": last.status, "started_at": last.started_at, "rows": last.rows,
                         "seconds": last.seconds} if last else None,
        })  # fmt: skip
    return {
        "focus": hood.focus,
        "nodes": nodes,
        "edges": [{"source": s, "target": t} for s, t in hood.edges],
    }


def neighbourhood_text(graph: LineageGraph, hood: Neighbourhood, *, tests: bool = False) -> str:
    """Upstream nodes (farthest first), the focus, then downstream ones, each with its type."""
    if hood.focus is None:
        lines = []
        parents: dict[str, list[str]] = {}
        for source, target in hood.edges:
            parents.setdefault(target, []).append(source)
        for node in graph.nodes:
            if node.type == "test" and not tests:
                continue
            names = [_short(graph, p) for p in sorted(parents.get(node.id, []))]
            lines.append(f"{node.type:<9} {node.name}" + (f"  ← {', '.join(names)}" if names else ""))
        shown = sum(1 for n in graph.nodes if tests or n.type != "test")
        lines.append(f"({shown} nodes{'' if tests else ', tests left out: --tests shows them'})")
        return "\n".join(lines)
    lines = []
    for node_id, depth in sorted(hood.depths.items(), key=lambda item: (item[1], item[0])):
        near = graph.node(node_id)
        if near is None or (near.type == "test" and not tests and depth != 0):
            continue
        marker = "●" if depth == 0 else ("↑" if depth < 0 else "↓")
        status = f"  [{near.runs[0].status}]" if near.runs else ""
        where = "upstream" if depth < 0 else "downstream" if depth > 0 else "this node"
        lines.append(f"{marker} {abs(depth):>2} {near.type:<9} {near.name}{status}  ({where})")
    return "\n".join(lines)


def neighbourhood_dot(graph: LineageGraph, hood: Neighbourhood) -> str:
    lines = ["digraph lineage {", "  rankdir=LR;", '  node [style=filled, fontname="Helvetica"];']
    for node_id in sorted(hood.depths):
        node = graph.node(node_id)
        if node is None:
            continue
        shape, colour = STYLE.get(node.type, ("box", "#eeeeee"))
        pen = ", penwidth=3" if node_id == hood.focus else ""
        lines.append(
            f"  {_dot_id(node_id)} [label={_dot_id(f'{node.type}: {node.name}')}, shape={shape}, "
            f'fillcolor="{colour}"{pen}];'
        )
    lines += [f"  {_dot_id(s)} -> {_dot_id(t)};" for s, t in hood.edges]
    lines.append("}")
    return "\n".join(lines)


def neighbourhood_mermaid(graph: LineageGraph, hood: Neighbourhood) -> str:
    ids = {node_id: f"n{i}" for i, node_id in enumerate(sorted(hood.depths))}
    lines = ["flowchart LR"]
    for node_id, short in ids.items():
        node = graph.node(node_id)
        if node is None:
            continue
        label = _mermaid_label(f"{node.type}: {node.name}")
        lines.append(f"  {short}{_mermaid_shape(node.type, label)}:::{node.type}")
    lines += [f"  {ids[s]} --> {ids[t]}" for s, t in hood.edges]
    for kind, (_, colour) in STYLE.items():
        lines.append(f"  classDef {kind} fill:{colour},stroke:#555")
    if hood.focus in ids:
        lines.append(f"  style {ids[hood.focus]} stroke-width:3px")
    return "\n".join(lines)


def column_text(graph: LineageGraph, lineage: ColumnLineage) -> str:
    """The column and, as a tree, what it is derived from."""
    children: dict[str, list[ColumnStep]] = {}
    for step in lineage.steps:
        children.setdefault(step.of, []).append(step)
    lines = [lineage.column]

    def walk(key: str, depth: int) -> None:
        for step in children.get(key, []):
            lines.append(f"{'  ' * depth}← {_labelled(graph, step.node)}.{step.column}  ({step.kind})")
            walk(f"{step.node}.{step.column}", depth + 1)

    walk(f"{lineage.node}.{lineage.column.rpartition('.')[2]}", 1)
    if not lineage.steps:
        lines.append("  (derived from no column: a constant, a count of rows or a generated value)")
    for item in lineage.unresolved:
        lines.append(f"  ! {_short(graph, item['node'])}.{item['column']} not traced: {item['reason']}")
    return "\n".join(lines)


def _labelled(graph: LineageGraph, node_id: str) -> str:
    """A node's short name, with its type unless it is a model."""
    node = graph.node(node_id)
    name = _short(graph, node_id)
    return name if node is None or node.type == "model" else f"{node.type} {name}"


def impact_text(graph: LineageGraph, result: Impact) -> str:
    what = f"{_short(graph, result.node)}.{result.column}" if result.column else _short(graph, result.node)
    lines = [f"a change to {what} affects:"]
    if result.column:
        for step in result.columns:
            lines.append(f"{'  ' * step.depth}→ {_short(graph, step.node)}.{step.column}  ({step.kind})")
        for node_id, _ in result.nodes:
            node = graph.node(node_id)
            if node is not None and not node.columns:  # tests and exposures of the affected nodes
                lines.append(f"  → {node.type} {_short(graph, node_id)}")
    else:
        for node_id, depth in sorted(result.nodes, key=lambda item: (item[1], item[0])):
            node = graph.node(node_id)
            lines.append(f"{'  ' * depth}→ {node.type if node else '?'} {_short(graph, node_id)}")
    if len(lines) == 1:
        lines.append("  nothing downstream")
    return "\n".join(lines)


def _short(graph: LineageGraph, node_id: str) -> str:
    """A node's name as users write it: `fct_orders`, `tap_files.orders` (a source), `tap-files.orders`."""
    node: Node | None = graph.node(node_id)
    if node is None:
        return node_id
    if node.type == "source" and node.meta.get("source"):
        return f"{node.meta['source']}.{node.name}"
    return node.name


def _dot_id(text: str) -> str:
    return json.dumps(text)


def _mermaid_label(text: str) -> str:
    return '"' + re.sub(r'["<>]', "'", text) + '"'


def _mermaid_shape(kind: str, label: str) -> str:
    if kind in ("source", "table"):
        return f"[({label})]"
    if kind == "test":
        return f"{{{label}}}"
    if kind in ("stream", "exposure"):
        return f">{label}]"
    return f"[{label}]"
