"""Column lineage of one SQL query: which upstream columns each output column is derived from, and how.

`trace_query` parses the compiled SQL of a model with sqlglot, qualifies it against the known columns of
the relations it reads (so `select *` expands and every column gets its table), then follows each output
column through CTEs, derived tables, unions and subqueries back to the columns of base relations. A
column whose derivation cannot be followed (a `*` over a relation whose columns are unknown, a column
that could come from several tables) is reported with the reason, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope

from elt.lineage.model import AGGREGATE, COPY, FILTER_JOIN, TRANSFORM, Column, ColumnRef

# A derivation is as strong as its strongest step: a copy of an aggregate is an aggregate.
_STRENGTH = {COPY: 0, TRANSFORM: 1, AGGREGATE: 2}


@dataclass(frozen=True)
class Relation:
    """A relation a query may read: its node id and its columns (None: not known)."""

    node: str
    columns: tuple[str, ...] | None


@dataclass(frozen=True)
class QueryLineage:
    """The outcome of tracing one query. `error` is set when the query could not be analysed at all."""

    columns: tuple[Column, ...] = ()
    indirect: tuple[ColumnRef, ...] = ()
    error: str | None = None


def relation_key(*parts: str | None) -> str:
    """The lookup key of a relation name: its parts, unquoted and lowercased, joined by dots."""
    return ".".join(p.strip('"`').lower() for p in parts if p)


def trace_query(
    sql: str,
    *,
    dialect: str,
    relations: Mapping[str, Relation],
    database: str | None = None,
    schema: str | None = None,
    self_node: str | None = None,
) -> QueryLineage:
    """Trace the output columns of `sql` (one SELECT, as dbt compiles a model) to upstream columns.

    `relations` maps `relation_key(database, schema, table)` (and the shorter `schema.table`, `table`
    keys) to what the query may read; `database`/`schema` qualify unqualified table names; `self_node`
    is the node the query builds, whose reads of itself (an incremental model's filter) are not lineage.
    """
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except SqlglotError as error:
        return QueryLineage(error=f"its compiled SQL could not be parsed: {_first_line(error)}")
    if not isinstance(tree, exp.Query):
        return QueryLineage(error=f"its compiled SQL is a {tree.key.upper()}, not a query")
    mapping = _schema_mapping(relations, tree, database, schema)
    options: dict[str, Any] = {
        "dialect": dialect, "schema": mapping, "catalog": database, "db": schema,
        "validate_qualify_columns": False, "quote_identifiers": False, "identify": False,
    }  # fmt: skip
    qualified: Any
    try:
        qualified = qualify(tree, **options)
    except SqlglotError:
        # A column sqlglot cannot place (a subquery over a relation of unknown columns) stops it from
        # qualifying any column: qualify the tables only, and trace what can be placed by hand.
        try:
            fresh = sqlglot.parse_one(sql, read=dialect)  # the failed attempt left the tree half done
            qualified = qualify(fresh, qualify_columns=False, **options)
        except SqlglotError as error:
            return QueryLineage(error=f"its SQL could not be resolved: {_first_line(error)}")
    try:
        root = build_scope(qualified)
    except SqlglotError as error:
        return QueryLineage(error=f"its SQL could not be resolved: {_first_line(error)}")
    if root is None:
        return QueryLineage(error="its SQL has no query to trace")
    tracer = _Tracer(relations, self_node)
    columns = [tracer.output(root, name) for name in tracer.output_names(root)]
    unexpanded = tracer.unexpanded_stars(root)
    return QueryLineage(
        columns=tuple(columns),
        indirect=tuple(sorted(tracer.indirect(root), key=lambda r: (r.node, r.column))),
        error=unexpanded,
    )


@dataclass
class _Trace:
    """Upstream columns found so far with the strongest kind each, and what could not be followed."""

    refs: dict[tuple[str, str], str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, node: str, column: str, kind: str) -> None:
        known = self.refs.get((node, column))
        if known is None or _STRENGTH[kind] > _STRENGTH[known]:
            self.refs[(node, column)] = kind

    def merge(self, other: _Trace, kind: str) -> None:
        """Add `other`'s refs as seen through a step of `kind`."""
        for (node, column), inner in other.refs.items():
            self.add(node, column, inner if _STRENGTH[inner] >= _STRENGTH[kind] else kind)
        for problem in other.problems:
            if problem not in self.problems:
                self.problems.append(problem)


class _Tracer:
    def __init__(self, relations: Mapping[str, Relation], self_node: str | None) -> None:
        self.relations = relations
        self.self_node = self_node
        self.memo: dict[tuple[int, str], _Trace] = {}
        self.by_select: dict[int, dict[str, exp.Expression]] = {}

    # -- output columns ----------------------------------------------------------------------------

    def output_names(self, scope: Scope) -> list[str]:
        """The names of the columns `scope` selects, a `*` expanded where its sources' columns are known."""
        select = _leftmost_select(scope.expression)
        if select is None:
            return []
        names: list[str] = []
        for projection in select.expressions:
            if not _is_star(projection):
                names.append(projection.alias_or_name)
                continue
            owner = scope if scope.expression is select else _scope_of(scope, select)
            for alias in _star_aliases(owner, projection) if owner else []:
                names += self.source_columns(owner, alias) or []  # type: ignore[arg-type]
        return names

    def source_columns(self, scope: Scope, alias: str) -> list[str] | None:
        """The columns of the source `alias` of `scope`; None when they are unknown."""
        entry = scope.selected_sources.get(alias)
        source = entry[1] if entry else None
        if isinstance(source, Scope):
            select = _leftmost_select(source.expression)
            if (
                select is not None
                and any(_is_star(p) for p in select.expressions)
                and self.unexpanded_stars(source)
            ):
                return None
            return self.output_names(source)
        if isinstance(source, exp.Table):
            relation = self.relation_of(source)
            return list(relation.columns) if relation and relation.columns is not None else None
        return None

    def unexpanded_stars(self, scope: Scope) -> str | None:
        """Why the query's output columns are incomplete: a `*` over a relation of unknown columns."""
        select = _leftmost_select(scope.expression)
        if select is None or not any(_is_star(p) for p in select.expressions):
            return None
        owner = scope if scope.expression is select else _scope_of(scope, select)
        if owner is not None and all(
            self.source_columns(owner, alias) is not None
            for p in select.expressions if _is_star(p) for alias in _star_aliases(owner, p)
        ):  # fmt: skip
            return None
        return f"select * from {self._sources_of(scope) or 'a relation'} whose columns are unknown"

    def projections(self, select: exp.Select) -> dict[str, exp.Expression]:
        """The named projections of a SELECT by lowercased name (the first of a name wins)."""
        found = self.by_select.get(id(select))
        if found is None:
            found = {}
            for projection in select.expressions:
                found.setdefault(projection.alias_or_name.lower(), projection)
            self.by_select[id(select)] = found
        return found

    def output(self, scope: Scope, name: str) -> Column:
        trace = self.column(scope, name)
        upstream = tuple(ColumnRef(node, column, kind) for (node, column), kind in sorted(trace.refs.items()))
        return Column(name=name, upstream=upstream, unresolved="; ".join(trace.problems) or None)

    # -- tracing ------------------------------------------------------------------------------------

    def column(self, scope: Scope, name: str) -> _Trace:
        """How output column `name` of `scope` is derived."""
        key = (id(scope), name.lower())
        if key in self.memo:
            return self.memo[key]
        trace = _Trace()
        self.memo[key] = trace  # a recursive CTE refers to itself; its second visit adds nothing
        if isinstance(scope.expression, exp.SetOperation):
            left = _leftmost_select(scope.expression)
            names = [p.alias_or_name.lower() for p in left.expressions] if left else []
            if name.lower() not in names:
                trace.problems.append(f"no column {name} in the union")
            else:
                position = names.index(name.lower())
                for branch in scope.set_operation_scopes:
                    branch_select = _leftmost_select(branch.expression)
                    if branch_select is None or position >= len(branch_select.expressions):
                        continue
                    branch_name = branch_select.expressions[position].alias_or_name
                    trace.merge(self.column(branch, branch_name), COPY)
            return trace
        select = scope.expression
        if not isinstance(select, exp.Select):
            trace.problems.append(f"column {name} comes from a {select.key.upper()}, which is not traced")
            return trace
        projection = self.projections(select).get(name.lower())
        if projection is None:
            stars = [p for p in select.expressions if _is_star(p)]
            holders = [
                alias for p in stars for alias in _star_aliases(scope, p)
                if name.lower() in (c.lower() for c in self.source_columns(scope, alias) or [])
            ]  # fmt: skip
            if len(holders) == 1:  # a `*` sqlglot left unexpanded, over sources whose columns are known
                trace.merge(self.resolve(scope, exp.column(name, table=holders[0])), COPY)
                return trace
            if stars:
                trace.problems.append(
                    f"{name} may come from a select * over {self._sources_of(scope)}, "
                    "whose columns are unknown"
                )
            else:
                trace.problems.append(f"no column {name} in the query")
            return trace
        trace.merge(self.expression(scope, projection), COPY)
        return trace

    def expression(self, scope: Scope, projection: exp.Expression) -> _Trace:
        """The upstream columns of one projection of `scope` and the kind of each."""
        trace = _Trace()
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        own = {id(c) for c in scope.columns}
        for column in inner.find_all(exp.Column):
            if id(column) not in own:
                continue  # a column of a nested subquery: traced through that subquery below
            kind = COPY if column is inner else _kind_in(column, inner)
            trace.merge(self.resolve(scope, column), kind)
        for subquery_scope in scope.subquery_scopes:
            if _contains(inner, subquery_scope.expression):
                for name in self.output_names(subquery_scope):
                    trace.merge(self.column(subquery_scope, name), TRANSFORM)
        return trace

    def resolve(self, scope: Scope, column: exp.Column) -> _Trace:
        """Follow a column reference of `scope` to the source it names."""
        name, table = column.name, column.table
        if not table and len(scope.selected_sources) == 1:
            table = next(iter(scope.selected_sources))  # columns left unqualified have one place to be
        source = scope.sources.get(table) if table else None
        parent = scope.parent
        while source is None and table and parent is not None:  # a correlated reference
            source, parent = parent.sources.get(table), parent.parent
        if source is None:
            if not table:
                return _problem(
                    f"{name} could be a column of any of {self._sources_of(scope)} "
                    "(their columns are unknown)"
                )
            return _problem(f"{name} names table {table}, which the query does not read")
        if isinstance(source, Scope):
            return self.column(source, name)
        if not isinstance(source, exp.Table):
            return _problem(f"{name} comes from {source.key.upper()}, which is not traced")
        relation = self.relation_of(source)
        if relation is None:
            return _problem(f"{name} comes from {_table_name(source)}, which is not a node of the project")
        trace = _Trace()
        if relation.node == self.self_node:
            return trace  # an incremental model reading its own rows
        if relation.columns is not None and name.lower() not in {c.lower() for c in relation.columns}:
            trace.problems.append(f"{relation.node} has no column {name}")
            return trace
        trace.add(relation.node, name, COPY)
        return trace

    def indirect(self, root: Scope) -> set[ColumnRef]:
        """Columns that decide which rows there are: where, join on, group by, having, qualify, and what
        subqueries in those compare with."""
        refs: set[ColumnRef] = set()
        for scope in root.traverse():
            select = scope.expression
            if not isinstance(select, exp.Select):
                continue
            clauses: list[exp.Expression] = []
            for key in ("where", "group", "having", "qualify"):
                if select.args.get(key) is not None:
                    clauses.append(select.args[key])
            clauses.extend(j for j in select.args.get("joins") or [])
            own = {id(c) for c in scope.columns}
            for clause in clauses:
                for column in clause.find_all(exp.Column):
                    if id(column) in own:
                        for (node, name), _ in self.resolve(scope, column).refs.items():
                            refs.add(ColumnRef(node, name, FILTER_JOIN))
            if scope.is_subquery:  # `x in (select …)`: what it selects filters the outer rows
                for name in self.output_names(scope):
                    for (node, column_name), _ in self.column(scope, name).refs.items():
                        refs.add(ColumnRef(node, column_name, FILTER_JOIN))
        return refs

    # -- relations --------------------------------------------------------------------------------

    def relation_of(self, table: exp.Table) -> Relation | None:
        for key in (
            relation_key(table.catalog, table.db, table.name),
            relation_key(table.db, table.name),
            relation_key(table.name),
        ):
            if key and key in self.relations:
                return self.relations[key]
        return None

    def _sources_of(self, scope: Scope) -> str:
        """The relations `scope` selects from, named for a user."""
        return ", ".join(sorted(self._describe_source(s, n) for n, (_, s) in scope.selected_sources.items()))

    def _describe_source(self, source: object, alias: str) -> str:
        if isinstance(source, exp.Table):
            relation = self.relation_of(source)
            return relation.node if relation else _table_name(source)
        return alias


def _schema_mapping(
    relations: Mapping[str, Relation], tree: Any, database: str | None, schema: str | None
) -> dict[str, dict[str, dict[str, dict[str, str]]]]:
    """The known columns of the relations `tree` reads, as sqlglot's nested catalog → schema → table →
    column mapping. Only those: a project's every relation would cost more to normalize than the query."""
    mapping: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    for table in tree.find_all(exp.Table):
        if not table.name:
            continue
        catalog, db = table.catalog or database or "", table.db or schema or ""
        for key in (
            relation_key(catalog, db, table.name),
            relation_key(table.db, table.name),
            relation_key(table.name),
        ):
            relation = relations.get(key)
            if relation is not None:
                break
        if relation is None or relation.columns is None:
            continue
        columns = dict.fromkeys(relation.columns, "text")
        mapping.setdefault(catalog.lower(), {}).setdefault(db.lower(), {})[table.name.lower()] = columns
    return mapping


def _star_aliases(scope: Scope, star: exp.Expression) -> list[str]:
    """The sources a `*` (or `alias.*`) of `scope` selects from."""
    if isinstance(star, exp.Column) and star.table:
        return [star.table]
    return list(scope.selected_sources)


def _scope_of(scope: Scope, select: exp.Select) -> Scope | None:
    """The branch scope of a union whose expression is `select`."""
    for branch in scope.set_operation_scopes:
        if branch.expression is select:
            return branch
        found = _scope_of(branch, select)
        if found is not None:
            return found
    return None


def _kind_in(column: exp.Column, root: exp.Expression) -> str:
    """AGGREGATE when `column` is inside an aggregate function below `root`, else TRANSFORM."""
    node = column.parent
    while node is not None and node is not root.parent:
        if isinstance(node, exp.AggFunc):
            return AGGREGATE
        node = node.parent
    return TRANSFORM


def _contains(tree: Any, target: Any) -> bool:
    node = target
    while node is not None:
        if node is tree:
            return True
        node = node.parent
    return False


def _leftmost_select(expression: Any) -> exp.Select | None:
    """The first SELECT of a query: itself, or the leftmost branch of a union."""
    while isinstance(expression, exp.SetOperation):
        expression = expression.left
    if isinstance(expression, exp.Subquery):
        return _leftmost_select(expression.this)
    return expression if isinstance(expression, exp.Select) else None


def _is_star(projection: exp.Expression) -> bool:
    return isinstance(projection, exp.Star) or (
        isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
    )


def _problem(message: str) -> _Trace:
    return _Trace(problems=[message])


def _table_name(table: exp.Table) -> str:
    return ".".join(p for p in (table.catalog, table.db, table.name) if p)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
