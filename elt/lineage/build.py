"""Build a project's `LineageGraph` from what the project already knows about itself.

Inputs: the dbt manifest (nodes, sources, exposures, tests, `parent_map`, compiled SQL), dbt's
`catalog.json` and the warehouse's information_schema (columns and types), elt.yml (which taps feed which
targets, exports), the run history (streams synced, last runs) and the Python blocks' source. Column
lineage of each model and snapshot comes from its compiled SQL (`elt.lineage.columns`), in dependency
order, so that a `select *` over an upstream model expands to the columns found for that model.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx

from elt.errors import EltError
from elt.lineage.columns import Relation, relation_key, trace_query
from elt.lineage.model import (
    COPY,
    Column,
    ColumnRef,
    Coverage,
    Edge,
    LineageGraph,
    Node,
    Unresolved,
)
from elt.project import Project

# Resource types of the manifest that become nodes; the rest (operations, analyses, unit tests) do not.
DBT_NODE_TYPES = ("model", "seed", "snapshot", "test")
SQL_TYPES = ("model", "snapshot")  # whose columns are traced from their SQL
SNAPSHOT_COLUMNS = ("dbt_scd_id", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to")
NOT_COMPILED = "it is not compiled yet: run `elt build` or `elt dbt compile`"


@dataclass
class Inputs:
    """What the graph is built from, read once."""

    manifest: dict[str, Any]
    catalog: dict[str, Any]  # dbt's catalog.json, {} when absent
    freshness: dict[str, dict[str, Any]]  # source id -> last `dbt source freshness` result
    warehouse: dict[tuple[str, str, str], list[tuple[str, str]]]  # (db, schema, table) -> columns
    dialect: str
    pairs: list[tuple[str, str]]  # (tap, target) the project syncs
    streams: dict[tuple[str, str], set[str]]  # (tap, target) -> streams seen in run history
    notes: list[str] = field(default_factory=list)


def build_graph(project: Project, inputs: Inputs, fingerprint: str, generated_at: str) -> LineageGraph:
    """The lineage graph of `project` from `inputs` (runs are added by the caller)."""
    builder = _Builder(project, inputs)
    builder.add_dbt_nodes()
    builder.add_streams_and_tables()
    builder.add_blocks()
    builder.add_exports()
    builder.trace_columns()
    return builder.graph(fingerprint, generated_at)


class _Builder:
    def __init__(self, project: Project, inputs: Inputs) -> None:
        self.project = project
        self.inputs = inputs
        self.nodes: dict[str, Node] = {}
        self.edges: set[tuple[str, str]] = set()
        self.relations: dict[str, str] = {}  # relation key -> node id
        self.by_name: dict[str, list[str]] = {}  # short name -> node ids
        self.manifest = inputs.manifest
        self.warehouse_by_key = {relation_key(*key): columns for key, columns in inputs.warehouse.items()} | {
            relation_key(key[1], key[2]): columns for key, columns in inputs.warehouse.items()
        }

    # -- dbt ------------------------------------------------------------------------------------------

    def add_dbt_nodes(self) -> None:
        manifest = self.manifest
        tests_of: dict[str, list[str]] = {}
        for uid, data in (manifest.get("nodes") or {}).items():
            rtype = data.get("resource_type")
            if rtype not in DBT_NODE_TYPES:
                continue
            if rtype == "test":
                for parent in (data.get("depends_on") or {}).get("nodes") or []:
                    tests_of.setdefault(parent, []).append(uid)
            self._add(self._dbt_node(uid, data))
        for uid, data in (manifest.get("sources") or {}).items():
            self._add(self._dbt_node(uid, data))
        for uid, data in (manifest.get("exposures") or {}).items():
            meta = {k: data.get(k) for k in ("type", "maturity", "url") if data.get(k)}
            owner = data.get("owner") or {}
            if owner.get("name") or owner.get("email"):
                meta["owner"] = owner.get("name") or owner.get("email")
            self._add(
                Node(
                    id=uid, type="exposure", name=data.get("label") or data["name"],
                    description=data.get("description") or None,
                    path=self._dbt_path(data.get("original_file_path")), meta=meta,
                )
            )  # fmt: skip
        for child, parents in (manifest.get("parent_map") or {}).items():
            if child in self.nodes:
                for parent in parents:
                    if parent in self.nodes:
                        self.edges.add((parent, child))
        for uid, tests in tests_of.items():
            if uid in self.nodes:
                self.nodes[uid] = replace(self.nodes[uid], tests=tuple(sorted(tests)))

    def _dbt_node(self, uid: str, data: dict[str, Any]) -> Node:
        rtype = data["resource_type"]
        config = data.get("config") or {}
        relation = None
        if data.get("relation_name"):
            relation = self._register_relation(uid, data)
        columns = tuple(
            Column(name=c.get("name") or name, data_type=c.get("data_type") or None,
                   description=c.get("description") or None)
            for name, c in (data.get("columns") or {}).items()
        )  # fmt: skip
        meta: dict[str, Any] = {}
        if data.get("tags"):
            meta["tags"] = list(data["tags"])
        if rtype == "test":
            meta.update(
                {
                    k: v
                    for k, v in (("column", data.get("column_name")), ("severity", config.get("severity")))
                    if v
                }
            )
            if data.get("attached_node"):
                meta["attached_to"] = data["attached_node"]
        freshness = None
        if rtype == "source":
            rule = data.get("freshness") or {}
            freshness = {
                "loaded_at_field": data.get("loaded_at_field"),
                "warn_after": _period(rule.get("warn_after")),
                "error_after": _period(rule.get("error_after")),
                "last_check": self.inputs.freshness.get(uid),
            }
            if not any((freshness["loaded_at_field"], freshness["warn_after"], freshness["error_after"])):
                freshness = None
            meta["source"] = data.get("source_name")
        return Node(
            id=uid, type=rtype, name=data["name"], description=data.get("description") or None,
            path=self._dbt_path(data.get("original_file_path")), relation=relation,
            materialized=config.get("materialized") if rtype in ("model", "seed", "snapshot") else None,
            sql=data.get("compiled_code") or None, raw_sql=data.get("raw_code") or None,
            columns=columns, freshness=freshness, meta=meta,
        )  # fmt: skip

    def _register_relation(self, uid: str, data: dict[str, Any]) -> str:
        database = data.get("database")
        schema = data.get("schema")
        name = data.get("alias") or data.get("identifier") or data["name"]
        for key in (relation_key(database, schema, name), relation_key(schema, name)):
            self.relations.setdefault(key, uid)
        return f"{schema}.{name}"

    def _dbt_path(self, original: str | None) -> str | None:
        if not original:
            return None
        try:
            from elt.dbt import dbt_dirs

            project_dir, _ = dbt_dirs(self.project)
            return str((project_dir / original).relative_to(self.project.root))
        except (EltError, ValueError):
            return original

    # -- streams and raw tables ---------------------------------------------------------------------

    def add_streams_and_tables(self) -> None:
        from elt.plugins import find_plugin

        for tap_name, target_name in self.inputs.pairs:
            try:
                tap = find_plugin(self.project, tap_name, "extractors")
                target = find_plugin(self.project, target_name, "loaders")
            except EltError:
                continue
            schema = str(target.config.get("default_target_schema") or tap.load_schema)
            streams = set(self.inputs.streams.get((tap_name, target_name), set()))
            tables = {t: c for (_, s, t), c in self.inputs.warehouse.items() if s == schema}
            by_table = {_table_name(s): s for s in streams}
            for table in tables:
                by_table.setdefault(table, table)
            for table, stream in sorted(by_table.items()):
                self._add_stream(tap_name, target_name, schema, stream, table, tables.get(table))

    def _add_stream(
        self,
        tap: str,
        target: str,
        schema: str,
        stream: str,
        table: str,
        columns: list[tuple[str, str]] | None,
    ) -> None:
        source_id = self.relations.get(relation_key(schema, table))
        if columns is None and source_id:
            columns = [(c.name, c.data_type or "") for c in self.nodes[source_id].columns]
        stream_id, table_id = f"stream:{tap}.{stream}", f"table:{target}.{schema}.{table}"
        fields = [(c, t) for c, t in columns or [] if not _is_load_metadata(c)]
        self._add(
            Node(id=stream_id, type="stream", name=f"{tap}.{stream}",
                 columns=tuple(Column(name=c, data_type=t or None) for c, t in fields),
                 meta={"tap": tap, "stream": stream})
        )  # fmt: skip
        table_columns = tuple(
            Column(
                name=c, data_type=t or None,
                upstream=() if _is_load_metadata(c) else (ColumnRef(stream_id, c, COPY),),
            )
            for c, t in columns or []
        )  # fmt: skip
        self._add(
            Node(id=table_id, type="table", name=f"{schema}.{table}", relation=f"{schema}.{table}",
                 columns=table_columns, meta={"target": target, "tap": tap})
        )  # fmt: skip
        self.edges.add((stream_id, table_id))
        if source_id:
            self.edges.add((table_id, source_id))
            self._copy_columns_from(source_id, table_id, table_columns)

    def _copy_columns_from(self, node_id: str, upstream: str, upstream_columns: Iterable[Column]) -> None:
        """Columns of `node_id` are copies of the same-named columns of `upstream` (a source of a table)."""
        node = self.nodes[node_id]
        names = [c.name for c in upstream_columns]
        existing = {c.name.lower(): c for c in node.columns}
        columns = []
        for name in names or [c.name for c in node.columns]:
            column = existing.get(name.lower()) or Column(name=name)
            known = {n.lower() for n in names}
            if name.lower() in known:
                column = replace(column, upstream=(ColumnRef(upstream, name, COPY),))
            columns.append(column)
        types = {c.name.lower(): c.data_type for c in upstream_columns}
        columns = [replace(c, data_type=c.data_type or types.get(c.name.lower())) for c in columns]
        self.nodes[node_id] = replace(node, columns=tuple(columns))

    # -- blocks and exports ---------------------------------------------------------------------------

    def add_blocks(self) -> None:
        from elt.blocks import declared_blocks

        for block in declared_blocks(self.project):
            try:
                where = str(block.path.relative_to(self.project.root.resolve()))
            except ValueError:
                where = str(block.path)
            block_id = f"block:{where}:{block.function}"
            self._add(
                Node(id=block_id, type="block", name=block.function, path=where,
                     description=f"@{block.kind} block", meta={"kind": block.kind})
            )  # fmt: skip
            for name in block.refs:
                upstream = self._find(name)
                if upstream:
                    self.edges.add((upstream, block_id))
            if block.table is not None:
                written = self.relations.get(relation_key(*block.table))
                if written:
                    self.edges.add((block_id, written))

    def add_exports(self) -> None:
        for pipeline, spec in (self.project.data.get("pipelines") or {}).items():
            for step in (spec or {}).get("steps") or []:
                if not isinstance(step, dict) or not isinstance(step.get("export"), str):
                    continue
                name = str(step.get("name") or step["export"])
                export_id = f"export:{pipeline}.{name}"
                destination = step.get("path") or step.get("table") or step.get("to")
                self._add(
                    Node(id=export_id, type="export", name=f"{pipeline}.{name}",
                         description=f"export of {step['export']} to {step.get('to', 'parquet')}",
                         meta={"to": step.get("to"), "destination": destination, "pipeline": pipeline})
                )  # fmt: skip
                upstream = self._find(step["export"])
                if upstream:
                    self.edges.add((upstream, export_id))

    def _find(self, name: str) -> str | None:
        """The node a user-facing name (`fct_orders`, `schema.table`) means."""
        by_relation = self.relations.get(relation_key(*name.split(".")))
        if by_relation:
            return by_relation
        found = [
            n
            for n in self.by_name.get(name.lower(), [])
            if self.nodes[n].type in ("model", "seed", "snapshot")
        ]
        return found[0] if len(found) == 1 else None

    # -- column lineage -------------------------------------------------------------------------------

    def trace_columns(self) -> None:
        known: dict[str, Relation] = {}
        for node in self.nodes.values():
            if node.relation and node.type not in SQL_TYPES:
                self.nodes[node.id] = node = self._with_known_columns(node)
                if node.type in ("source", "seed", "table"):
                    self._know(known, node)
        graph = nx.DiGraph(list(self.edges))
        graph.add_nodes_from(self.nodes)
        order = [n for n in nx.topological_sort(graph) if self.nodes[n].type in SQL_TYPES]
        for node_id in order:
            node = self._traced(self.nodes[node_id], known)
            self.nodes[node_id] = node
            self._know(known, node)
        for node in list(self.nodes.values()):  # exports copy what they export
            if node.type == "export":
                parents = [s for s, t in self.edges if t == node.id]
                if parents:
                    source = self.nodes[parents[0]]
                    columns = tuple(
                        Column(
                            name=c.name, data_type=c.data_type, upstream=(ColumnRef(source.id, c.name, COPY),)
                        )
                        for c in source.columns
                    )
                    self.nodes[node.id] = replace(node, columns=columns)

    def _with_known_columns(self, node: Node) -> Node:
        """A source, seed or raw table with the columns the warehouse or dbt's catalog has for it."""
        found = self._warehouse_columns(node) or self._catalog_columns(node.id)
        if not found and node.type == "seed":
            found = _seed_header(self.project, node)
        if not found:
            return node
        declared = {c.name.lower(): c for c in node.columns}
        columns = []
        for name, data_type in found:
            column = declared.get(name.lower()) or Column(name=name)
            columns.append(replace(column, name=name, data_type=data_type or column.data_type))
        return replace(node, columns=tuple(columns))

    def _warehouse_columns(self, node: Node) -> list[tuple[str, str]] | None:
        data = self.manifest.get("sources", {}).get(node.id) or self.manifest.get("nodes", {}).get(node.id)
        if data:
            name = data.get("alias") or data.get("identifier") or data["name"]
            key = relation_key(data.get("database"), data.get("schema"), name)
            return self.warehouse_by_key.get(key) or self.warehouse_by_key.get(
                relation_key(data.get("schema"), name)
            )
        if node.relation:
            return self.warehouse_by_key.get(relation_key(*node.relation.split(".")))
        return None

    def _catalog_columns(self, node_id: str) -> list[tuple[str, str]] | None:
        entry = (self.inputs.catalog.get("nodes") or {}).get(node_id) or (
            self.inputs.catalog.get("sources") or {}
        ).get(node_id)
        if not entry:
            return None
        columns = sorted((entry.get("columns") or {}).values(), key=lambda c: c.get("index", 0))
        return [(c["name"], str(c.get("type") or "").lower()) for c in columns]

    def _know(self, known: dict[str, Relation], node: Node) -> None:
        data = self.manifest.get("sources", {}).get(node.id) or self.manifest.get("nodes", {}).get(node.id)
        columns = tuple(c.name for c in node.columns) or None
        if node.type in SQL_TYPES and any(
            c.unresolved and c.unresolved.startswith("select *") for c in node.columns
        ):
            columns = None  # its columns are not all known
        if data is None:
            return
        name = data.get("alias") or data.get("identifier") or data["name"]
        relation = Relation(node.id, columns)
        for key in (
            relation_key(data.get("database"), data.get("schema"), name),
            relation_key(data.get("schema"), name),
        ):
            known[key] = relation

    def _traced(self, node: Node, known: dict[str, Relation]) -> Node:
        data = self.manifest["nodes"][node.id]
        declared = {c.name.lower(): c for c in node.columns}
        fallback = (
            self._warehouse_columns(node)
            or self._catalog_columns(node.id)
            or [(c.name, c.data_type or "") for c in node.columns]
        )
        types = {n.lower(): t for n, t in fallback}
        if data.get("language", "sql") != "sql":
            reason = f"{node.name} is a {data.get('language')} model: its columns are not traced"
            return replace(node, columns=tuple(_unresolved(n, t, declared, reason) for n, t in fallback))
        if not node.sql:
            return replace(
                node, columns=tuple(_unresolved(n, t, declared, NOT_COMPILED) for n, t in fallback)
            )
        if fallback:  # an incremental model reads itself: its table's columns let the SQL qualify
            self._know(known, replace(node, columns=tuple(Column(name=n) for n, _ in fallback)))
        result = trace_query(
            node.sql, dialect=self.inputs.dialect, relations=known,
            database=data.get("database"), schema=data.get("schema"), self_node=node.id,
        )  # fmt: skip
        traced = {c.name.lower(): c for c in result.columns}
        columns = []
        for column in result.columns:
            base = declared.get(column.name.lower())
            data_type = types.get(column.name.lower()) or (base.data_type if base else None)
            description = base.description if base else None
            columns.append(replace(column, data_type=data_type, description=description))
        if result.error:  # the traced part stands; what the error hides is reported, never guessed
            columns += [
                _unresolved(n, t, declared, result.error) for n, t in fallback if n.lower() not in traced
            ]
            if not fallback and not columns:
                columns = [Column(name="*", unresolved=result.error)]
        if node.type == "snapshot":
            columns += [Column(name=c, data_type=types.get(c)) for c in SNAPSHOT_COLUMNS if c not in traced]
        return replace(node, columns=tuple(columns), indirect=result.indirect)

    # -- result ---------------------------------------------------------------------------------------

    def _add(self, node: Node) -> None:
        self.nodes[node.id] = node
        self.by_name.setdefault(node.name.lower(), []).append(node.id)

    def graph(self, fingerprint: str, generated_at: str) -> LineageGraph:
        unresolved = []
        total = resolved = 0
        for node in self.nodes.values():
            if node.type not in SQL_TYPES:
                continue
            for column in node.columns:
                total += 1
                if column.unresolved:
                    unresolved.append(Unresolved(node.id, column.name, column.unresolved))
                else:
                    resolved += 1
        return LineageGraph(
            project=str(self.project.data.get("project_id") or self.project.root.name),
            environment=self.project.environment,
            generated_at=generated_at,
            fingerprint=fingerprint,
            nodes=tuple(sorted(self.nodes.values(), key=lambda n: (n.type, n.id))),
            edges=tuple(Edge(s, t) for s, t in sorted(self.edges)),
            coverage=Coverage(columns=total, resolved=resolved, unresolved=tuple(unresolved)),
            notes=tuple(self.inputs.notes),
        )


def _unresolved(name: str, data_type: str | None, declared: dict[str, Column], reason: str) -> Column:
    base = declared.get(name.lower())
    return Column(
        name=name, data_type=data_type or (base.data_type if base else None),
        description=base.description if base else None, unresolved=reason,
    )  # fmt: skip


def _is_load_metadata(column: str) -> bool:
    """Columns a target adds to what the tap sent (`_elt_synced_at`, `_sdc_…`)."""
    return column.startswith(("_elt_", "_sdc_"))


def _table_name(stream: str) -> str:
    """The table a built-in target loads a stream into."""
    return re.sub(r"[^a-z0-9_]", "_", stream.lower())


def _period(rule: dict[str, Any] | None) -> str | None:
    if not rule or not rule.get("count") or not rule.get("period"):
        return None
    return f"{rule['count']} {rule['period']}{'s' if rule['count'] != 1 else ''}"


def _seed_header(project: Project, node: Node) -> list[tuple[str, str]] | None:
    """A seed's columns from its CSV's header, when nothing better is known."""
    if not node.path:
        return None
    path = project.root / node.path
    with contextlib.suppress(OSError, StopIteration, csv.Error), path.open(newline="", encoding="utf-8") as f:
        return [(name.strip(), "") for name in next(csv.reader(f))]
    return None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file of dbt's target folder, {} when it is missing or damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
