"""The values of lineage: nodes, edges and column edges of one project, serializable to JSON.

A `LineageGraph` is built by `elt.lineage.build_lineage` and read by the CLI, the docs site and the
OpenLineage events. Node ids are dbt unique ids for what dbt knows (`model.elt_demo.fct_orders`,
`source.elt_demo.tap_files.orders`, seeds, snapshots, tests, exposures) and `KIND:NAME` for what elt
adds: `stream:<tap>.<stream>`, `table:<loader>.<schema>.<table>` (the raw table a target wrote),
`block:<file>:<function>` (a Python block) and `export:<pipeline>.<step>`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Kinds of nodes, in the order data flows through them (the docs site's filter lists them so).
NODE_TYPES = (
    "stream", "table", "source", "seed", "block", "model", "snapshot", "test", "exposure", "export",
)  # fmt: skip

# How a column is derived from an upstream column.
COPY = "copy"  # the same value, perhaps renamed
TRANSFORM = "transform"  # computed from it row by row: cast, function, arithmetic, case
AGGREGATE = "aggregate"  # an aggregate over rows (sum, count, min, …)
FILTER_JOIN = "filter-join"  # decides which rows there are: where, join on, group by, qualify, window order
EDGE_KINDS = (COPY, TRANSFORM, AGGREGATE, FILTER_JOIN)


@dataclass(frozen=True)
class ColumnRef:
    """An upstream column of a column, and how the column is derived from it."""

    node: str
    column: str
    kind: str

    def to_json(self) -> dict[str, str]:
        return {"node": self.node, "column": self.column, "kind": self.kind}


@dataclass(frozen=True)
class Column:
    """A column of a node. `upstream` are its direct upstream columns (copy/transform/aggregate);
    `unresolved` says why its derivation could not be traced (then `upstream` may be partial)."""

    name: str
    data_type: str | None = None
    description: str | None = None
    upstream: tuple[ColumnRef, ...] = ()
    unresolved: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data_type": self.data_type,
            "description": self.description,
            "upstream": [u.to_json() for u in self.upstream],
            "unresolved": self.unresolved,
        }


@dataclass(frozen=True)
class RunInfo:
    """One recent run of a node: a sync of a stream, a dbt run of a model/test/seed/snapshot."""

    run_id: str
    started_at: str
    status: str
    seconds: float | None = None
    rows: int | None = None
    message: str | None = None


@dataclass(frozen=True)
class Node:
    """One node of the lineage graph.

    `indirect` are the upstream columns that decide which rows the node has (filter-join): they apply to
    every column of the node, so they are kept once here rather than on each column.
    """

    id: str
    type: str
    name: str
    description: str | None = None
    path: str | None = None  # the file that defines it, relative to the project
    relation: str | None = None  # schema.table in the warehouse, where it has one
    materialized: str | None = None
    sql: str | None = None  # compiled SQL (models, snapshots, tests)
    raw_sql: str | None = None  # the SQL as written, Jinja included
    columns: tuple[Column, ...] = ()
    indirect: tuple[ColumnRef, ...] = ()
    tests: tuple[str, ...] = ()  # ids of the tests on this node
    freshness: dict[str, Any] | None = None  # sources: the configured rule and the last check
    runs: tuple[RunInfo, ...] = ()  # most recent first
    meta: dict[str, Any] = field(default_factory=dict)  # anything else worth showing (tags, owner, …)

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)

    def to_json(self) -> dict[str, Any]:
        # by hand, not dataclasses.asdict: a graph of thousands of nodes is written on every rebuild
        return {
            "id": self.id, "type": self.type, "name": self.name, "description": self.description,
            "path": self.path, "relation": self.relation, "materialized": self.materialized,
            "sql": self.sql, "raw_sql": self.raw_sql,
            "columns": [c.to_json() for c in self.columns],
            "indirect": [u.to_json() for u in self.indirect],
            "tests": list(self.tests),
            "freshness": self.freshness,
            "runs": [asdict(r) for r in self.runs],
            "meta": self.meta,
        }  # fmt: skip


@dataclass(frozen=True)
class Edge:
    """Data flows from `source` to `target`."""

    source: str
    target: str


@dataclass(frozen=True)
class Unresolved:
    node: str
    column: str
    reason: str


@dataclass(frozen=True)
class Coverage:
    """Column lineage coverage over the columns of models, snapshots and seeds' consumers."""

    columns: int
    resolved: int
    unresolved: tuple[Unresolved, ...] = ()

    @property
    def ratio(self) -> float:
        return self.resolved / self.columns if self.columns else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "resolved": self.resolved,
            "ratio": round(self.ratio, 4),
            "unresolved": [asdict(u) for u in self.unresolved],
        }


@dataclass(frozen=True)
class LineageGraph:
    """The project's lineage: every node with its columns, and the edges between nodes."""

    project: str
    environment: str | None
    generated_at: str
    fingerprint: str  # of the inputs it was built from; a changed input means a rebuild
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    coverage: Coverage
    notes: tuple[str, ...] = ()  # what was missing or skipped while building, for the user to read

    def node(self, node_id: str) -> Node | None:
        return self._index().get(node_id)

    def _index(self) -> dict[str, Node]:
        index: dict[str, Node] | None = self.__dict__.get("_by_id")
        if index is None:
            index = {n.id: n for n in self.nodes}
            object.__setattr__(self, "_by_id", index)
        return index

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "environment": self.environment,
            "generated_at": self.generated_at,
            "fingerprint": self.fingerprint,
            "nodes": [n.to_json() for n in self.nodes],
            "edges": [asdict(e) for e in self.edges],
            "coverage": self.coverage.to_json(),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LineageGraph:
        nodes = tuple(
            Node(
                **{
                    **n,
                    "columns": tuple(
                        Column(**{**c, "upstream": tuple(ColumnRef(**u) for u in c.get("upstream") or [])})
                        for c in n.get("columns") or []
                    ),
                    "indirect": tuple(ColumnRef(**u) for u in n.get("indirect") or []),
                    "tests": tuple(n.get("tests") or []),
                    "runs": tuple(RunInfo(**r) for r in n.get("runs") or []),
                }
            )
            for n in data["nodes"]
        )
        cov = data["coverage"]
        coverage = Coverage(
            columns=cov["columns"],
            resolved=cov["resolved"],
            unresolved=tuple(Unresolved(**u) for u in cov.get("unresolved") or []),
        )
        return cls(
            project=data["project"],
            environment=data.get("environment"),
            generated_at=data["generated_at"],
            fingerprint=data["fingerprint"],
            nodes=nodes,
            edges=tuple(Edge(**e) for e in data["edges"]),
            coverage=coverage,
            notes=tuple(data.get("notes") or []),
        )
