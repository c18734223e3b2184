"""`elt lineage show|column|impact|coverage`: the project's lineage, down to columns (elt/lineage/)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from elt.cli.common import Context, print_json

if TYPE_CHECKING:
    from elt.lineage import LineageGraph

_REBUILD = click.option("--rebuild", is_flag=True, help="Rebuild the graph even if no input changed.")
_NO_COMPILE = click.option(
    "--no-compile", is_flag=True,
    help="Use the dbt manifest as it is; by default a missing or stale one is compiled first.",
)  # fmt: skip


def _graph(obj: Context, rebuild: bool, no_compile: bool) -> LineageGraph:
    from elt.lineage import load_lineage

    graph = load_lineage(obj.project(), rebuild=rebuild, compile=not no_compile)
    for note in graph.notes:
        click.echo(f"note: {note}", err=True)
    return graph


@click.group()
def lineage() -> None:
    """Lineage from source streams through raw tables, dbt models, blocks and exports, to columns.

    \b
    elt lineage show fct_orders --upstream 2      # what fct_orders is built from, two steps back
    elt lineage column fct_orders.order_total     # the columns it is derived from, back to the streams
    elt lineage impact stg_orders.order_status    # what a change to it affects downstream
    """


@lineage.command()
@click.argument("node", required=False)
@click.option("--upstream", type=click.IntRange(min=0), help="Steps upstream to show (default: all).")
@click.option("--downstream", type=click.IntRange(min=0), help="Steps downstream to show (default: all).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "dot", "mermaid"]), default="text",
    show_default=True, help="dot: Graphviz; mermaid: a flowchart for Markdown.",
)  # fmt: skip
@click.option("--tests", is_flag=True, help="Show dbt tests too (text format).")
@_REBUILD
@_NO_COMPILE
@click.pass_obj
def show(
    obj: Context, node: str | None, upstream: int | None, downstream: int | None, fmt: str, tests: bool,
    rebuild: bool, no_compile: bool,
) -> None:  # fmt: skip
    """The lineage graph, or the nodes up- and downstream of NODE.

    NODE is a model/seed/snapshot name, a source as SOURCE.TABLE, or a node id (`stream:TAP.STREAM`).
    Given only --upstream, nothing downstream is shown, and the other way round.
    """
    from elt.lineage import query, render

    graph = _graph(obj, rebuild, no_compile)
    focus = query.find_node(graph, node).id if node else None
    if upstream is not None and downstream is None:
        downstream = 0
    elif downstream is not None and upstream is None:
        upstream = 0
    hood = query.neighbourhood(graph, focus, upstream, downstream)
    if fmt == "json":
        print_json(render.neighbourhood_json(graph, hood))
    elif fmt == "dot":
        click.echo(render.neighbourhood_dot(graph, hood))
    elif fmt == "mermaid":
        click.echo(render.neighbourhood_mermaid(graph, hood))
    else:
        click.echo(render.neighbourhood_text(graph, hood, tests=tests))


@lineage.command()
@click.argument("spec", metavar="MODEL.COLUMN")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--include-filters", is_flag=True,
    help="Also the columns that filter or join the rows of each node on the way (kind filter-join).",
)  # fmt: skip
@_REBUILD
@_NO_COMPILE
@click.pass_obj
def column(obj: Context, spec: str, fmt: str, include_filters: bool, rebuild: bool, no_compile: bool) -> None:
    """The columns MODEL.COLUMN is derived from, recursively, back to the source streams' fields."""
    from elt.lineage import query, render

    graph = _graph(obj, rebuild, no_compile)
    result = query.upstream_columns(graph, spec, include_filters=include_filters)
    if fmt == "json":
        print_json(result.to_json())
    else:
        click.echo(render.column_text(graph, result))


@lineage.command()
@click.argument("spec", metavar="NODE[.COLUMN]")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_REBUILD
@_NO_COMPILE
@click.pass_obj
def impact(obj: Context, spec: str, fmt: str, rebuild: bool, no_compile: bool) -> None:
    """Everything downstream that a change to NODE (or one of its columns) would affect."""
    from elt.lineage import query, render

    graph = _graph(obj, rebuild, no_compile)
    result = query.impact(graph, spec)
    if fmt == "json":
        print_json(result.to_json(graph))
    else:
        click.echo(render.impact_text(graph, result))


@lineage.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_REBUILD
@_NO_COMPILE
@click.pass_obj
def coverage(obj: Context, fmt: str, rebuild: bool, no_compile: bool) -> None:
    """How many columns of models and snapshots have traced lineage; the others, with the reason."""
    graph = _graph(obj, rebuild, no_compile)
    cov = graph.coverage
    if fmt == "json":
        print_json(cov.to_json())
        return
    click.echo(f"column lineage: {cov.resolved} of {cov.columns} columns traced ({cov.ratio:.1%})")
    for item in cov.unresolved:
        click.echo(f"  {item.node}.{item.column}: {item.reason}")
