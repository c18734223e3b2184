"""Questions asked of a `LineageGraph`: which node a name means, what is up- and downstream of a node,
where a column comes from, and what a change to a node or column would affect."""

from __future__ import annotations

import difflib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from elt.errors import EltError
from elt.lineage.model import FILTER_JOIN, ColumnRef, LineageGraph, Node


class LineageError(EltError):
    """A node or column asked about is not in the lineage graph."""


def find_node(graph: LineageGraph, name: str) -> Node:
    """The node `name` means: an id (`model.shop.fct_orders`, `stream:tap-files.orders`), a dbt node's
    name (`fct_orders`), a source as `source_name.table`, or a relation as `schema.table`."""
    node = graph.node(name)
    if node is not None:
        return node
    lowered = name.lower()
    candidates = [n for n in graph.nodes if n.name.lower() == lowered and n.type != "test"]
    if not candidates:
        candidates = [
            n for n in graph.nodes
            if (n.relation or "").lower() == lowered
            or (n.type == "source" and f"{n.meta.get('source')}.{n.name}".lower() == lowered)
        ]  # fmt: skip
    if not candidates:
        candidates = [n for n in graph.nodes if n.name.lower() == lowered]
    if len(candidates) > 1:
        # a model and the raw table of the same name: the dbt node is what users mean by a bare name
        preferred = [n for n in candidates if n.type in ("model", "snapshot", "seed")]
        if len(preferred) == 1:
            return preferred[0]
        raise LineageError(
            f"{name!r} names {len(candidates)} nodes: {', '.join(sorted(n.id for n in candidates))}",
            hint="give the node's id",
        )
    if candidates:
        return candidates[0]
    names = sorted({n.name for n in graph.nodes} | {n.id for n in graph.nodes})
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    raise LineageError(
        f"no node {name!r} in the lineage of this project",
        hint=f"did you mean {', '.join(close)}?" if close else "list the nodes with `elt lineage show`",
    )


def find_column(graph: LineageGraph, spec: str) -> tuple[Node, str]:
    """(node, column) of `NODE.COLUMN`; the node part is anything `find_node` accepts."""
    node_part, dot, column = spec.rpartition(".")
    if not dot or not node_part or not column:
        raise LineageError(f"{spec!r} is not NODE.COLUMN", hint="for example: fct_orders.order_total")
    node = find_node(graph, node_part)
    found = node.column(column)
    if found is None:
        known = ", ".join(c.name for c in node.columns) or "none known"
        raise LineageError(f"{node.id} has no column {column!r} (its columns: {known})")
    return node, found.name


def find_node_or_column(graph: LineageGraph, spec: str) -> tuple[Node, str | None]:
    """A node, or a node and one of its columns, from `NODE` or `NODE.COLUMN`."""
    try:
        return find_node(graph, spec), None
    except LineageError as error:
        if "." not in spec:
            raise
        try:
            return find_column(graph, spec)
        except LineageError:
            raise error from None


# -- nodes -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Neighbourhood:
    """Nodes around a focus node, each with its distance: negative upstream, positive downstream."""

    focus: str | None
    depths: dict[str, int]
    edges: tuple[tuple[str, str], ...]


def neighbourhood(
    graph: LineageGraph, focus: str | None, upstream: int | None, downstream: int | None
) -> Neighbourhood:
    """The focus node and what lies up to `upstream`/`downstream` steps from it (None: no limit).
    Without a focus: the whole graph."""
    if focus is None:
        return Neighbourhood(
            None, {n.id: 0 for n in graph.nodes}, tuple((e.source, e.target) for e in graph.edges)
        )
    parents, children = _adjacency(graph)
    depths = {focus: 0}
    for links, limit, sign in ((parents, upstream, -1), (children, downstream, 1)):
        for node_id, distance in _walk(focus, links, limit):
            depths.setdefault(node_id, sign * distance)
    edges = tuple((e.source, e.target) for e in graph.edges if e.source in depths and e.target in depths)
    return Neighbourhood(focus, depths, edges)


def _adjacency(graph: LineageGraph) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    parents: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    for edge in graph.edges:
        parents.setdefault(edge.target, []).append(edge.source)
        children.setdefault(edge.source, []).append(edge.target)
    return parents, children


def _walk(start: str, links: dict[str, list[str]], limit: int | None) -> list[tuple[str, int]]:
    seen = {start}
    found = []
    queue = deque([(start, 0)])
    while queue:
        node_id, distance = queue.popleft()
        if limit is not None and distance >= limit:
            continue
        for nxt in links.get(node_id, []):
            if nxt not in seen:
                seen.add(nxt)
                found.append((nxt, distance + 1))
                queue.append((nxt, distance + 1))
    return found


# -- columns ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnStep:
    """A column reached while walking column lineage: how it relates to the column it was reached from
    (`of`, as `node.column`), and how many steps from the start."""

    node: str
    column: str
    kind: str
    depth: int
    of: str

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "column": self.column,
            "kind": self.kind,
            "depth": self.depth,
            "of": self.of,
        }


@dataclass(frozen=True)
class ColumnLineage:
    """`column` (`node.column`) and the columns up- or downstream of it, nearest first."""

    column: str
    node: str
    steps: tuple[ColumnStep, ...]
    unresolved: tuple[dict[str, str], ...] = field(default_factory=tuple)

    def to_json(self, key: str = "upstream") -> dict[str, Any]:
        data: dict[str, Any] = {
            "column": self.column,
            "node": self.node,
            key: [s.to_json() for s in self.steps],
        }
        if self.unresolved:
            data["unresolved"] = list(self.unresolved)
        return data


def upstream_columns(graph: LineageGraph, spec: str, *, include_filters: bool = False) -> ColumnLineage:
    """Every column `NODE.COLUMN` is derived from, recursively, back to the source streams' fields.

    Derivations (copy, transform, aggregate) are followed; with `include_filters` also the columns that
    decide which rows each node on the way has (filter-join). Columns whose derivation could not be
    traced are listed in `unresolved` with the reason.
    """
    node, column = find_column(graph, spec)
    steps: list[ColumnStep] = []
    unresolved: list[dict[str, str]] = []
    seen = {(node.id, column.lower())}
    queue = deque([(node.id, column, 0)])
    while queue:
        node_id, name, depth = queue.popleft()
        current = graph.node(node_id)
        if current is None:
            continue
        col = current.column(name)
        refs: list[ColumnRef] = list(col.upstream) if col else []
        if col is not None and col.unresolved:
            unresolved.append({"node": node_id, "column": name, "reason": col.unresolved})
        if include_filters:
            refs += list(current.indirect)
        for ref in refs:
            key = (ref.node, ref.column.lower())
            if key in seen:
                continue
            seen.add(key)
            steps.append(ColumnStep(ref.node, ref.column, ref.kind, depth + 1, f"{node_id}.{name}"))
            queue.append((ref.node, ref.column, depth + 1))
    return ColumnLineage(f"{node.name}.{column}", node.id, tuple(steps), tuple(unresolved))


@dataclass(frozen=True)
class Impact:
    """What a change to a node (or one of its columns) reaches downstream."""

    node: str
    column: str | None
    nodes: tuple[tuple[str, int], ...]  # (node id, distance)
    columns: tuple[ColumnStep, ...]  # for a column: the downstream columns

    def to_json(self, graph: LineageGraph) -> dict[str, Any]:
        def describe(node_id: str, depth: int) -> dict[str, Any]:
            node = graph.node(node_id)
            return {"node": node_id, "type": node.type if node else None, "name": node.name if node else None,
                    "depth": depth}  # fmt: skip

        return {
            "node": self.node,
            "column": self.column,
            "nodes": [describe(n, d) for n, d in self.nodes],
            "columns": [c.to_json() for c in self.columns],
        }


def impact(graph: LineageGraph, spec: str) -> Impact:
    """Everything downstream of `NODE` or `NODE.COLUMN`.

    For a column: the columns derived from it, recursively; a column that filters or joins a node's rows
    affects every column of that node. The nodes are those holding an affected column, and everything
    downstream of those (tests, exposures, exports), nearest first.
    """
    node, column = find_node_or_column(graph, spec)
    _, children = _adjacency(graph)
    if column is None:
        return Impact(node.id, None, tuple(_walk(node.id, children, None)), ())
    derived: dict[tuple[str, str], list[ColumnStep]] = {}
    for other in graph.nodes:
        for col in other.columns:
            for ref in col.upstream:
                derived.setdefault((ref.node, ref.column.lower()), []).append(
                    ColumnStep(other.id, col.name, ref.kind, 0, f"{ref.node}.{ref.column}")
                )
        for ref in other.indirect:
            for col in other.columns:
                derived.setdefault((ref.node, ref.column.lower()), []).append(
                    ColumnStep(other.id, col.name, FILTER_JOIN, 0, f"{ref.node}.{ref.column}")
                )
    steps: list[ColumnStep] = []
    seen = {(node.id, column.lower())}
    queue = deque([(node.id, column, 0)])
    while queue:
        node_id, name, depth = queue.popleft()
        for step in derived.get((node_id, name.lower()), []):
            key = (step.node, step.column.lower())
            if key in seen:
                continue
            seen.add(key)
            steps.append(ColumnStep(step.node, step.column, step.kind, depth + 1, f"{node_id}.{name}"))
            queue.append((step.node, step.column, depth + 1))
    depths: dict[str, int] = {}
    for step in steps:
        depths.setdefault(step.node, step.depth)
    affected = {(s.node, s.column.lower()) for s in steps}
    for node_id, depth in list(depths.items()):  # tests and exposures of affected nodes are affected too
        for other_id in children.get(node_id, []):
            reached = graph.node(other_id)
            if reached is None or reached.columns or other_id in depths:
                continue  # a node with columns is affected only through its columns
            tested = reached.meta.get("column")
            if reached.type == "test" and tested and (node_id, str(tested).lower()) not in affected:
                continue  # a test of another column of the node
            depths[other_id] = depth + 1
    nodes = tuple(sorted(depths.items(), key=lambda item: (item[1], item[0])))
    return Impact(node.id, column, nodes, tuple(steps))
