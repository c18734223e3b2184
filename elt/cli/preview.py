"""`elt preview NAME`: the first rows of a dbt model, a stream or a Python block (elt/preview.py)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from elt.cli.common import Context, print_json

if TYPE_CHECKING:
    from elt.preview import Preview

MAX_WIDTH = 40  # a column's widest cell on a terminal, as SQL clients cap them


@click.command()
@click.argument("name")
@click.option(
    "--limit", "-n", type=click.IntRange(min=1), default=10, show_default=True, help="Rows to show."
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
    help="table: aligned text; json: a list of objects on stdout.",
)  # fmt: skip
@click.pass_obj
def preview(obj: Context, name: str, limit: int, fmt: str) -> None:
    """Show rows of a MODEL, a STREAM (TAP.STREAM) or a BLOCK (blocks/FILE.py:FUNCTION), writing nothing.

    \b
    elt preview dim_customers --limit 5      # dbt show: the model's query, no table built
    elt preview tap-files.orders             # the tap's first records, no target, no state
    elt preview blocks/score.py:score        # the block's result, no table written
    """
    from elt.preview import preview as take_preview

    result = take_preview(obj.project(), name, limit)
    if fmt == "json":
        print_json(result.to_json())
    else:
        click.echo(render_table(result))


def render_table(result: Preview) -> str:
    """The rows as an aligned text table, cells cut at MAX_WIDTH, and a line saying what was shown."""
    columns = result.columns
    cells = [[_cell(row.get(c)) for c in columns] for row in result.rows]
    widths = [min(MAX_WIDTH, max([len(c), *(len(r[i]) for r in cells)])) for i, c in enumerate(columns)]
    lines = [
        " | ".join(c[:w].ljust(w) for c, w in zip(columns, widths, strict=True)),
        "-+-".join("-" * w for w in widths),
    ]
    for row in cells:
        lines.append(" | ".join(_fit(v, w) for v, w in zip(row, widths, strict=True)).rstrip())
    lines.append(
        f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''} of {result.kind} {result.name})"
    )
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value).replace("\n", "\\n")


def _fit(value: str, width: int) -> str:
    if len(value) > width:
        return value[: width - 1] + "…"
    return value.ljust(width)
