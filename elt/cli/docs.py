"""`elt docs generate` and `elt docs serve`: the static lineage site (elt/docs_site, docs/docs-site.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from elt.cli.common import FORMAT, Context, print_json

if TYPE_CHECKING:
    from elt.docs_site import SiteResult

OUT = click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the site (default: .elt/site/ in the project).",
)  # fmt: skip


@click.group()
def docs() -> None:
    """The lineage site: nodes, columns and where each comes from, tests and last runs."""


@docs.command()
@OUT
@click.option("--rebuild", is_flag=True, help="Rebuild the lineage from its inputs instead of the cache.")
@FORMAT
@click.pass_obj
def generate(obj: Context, out_dir: Path | None, rebuild: bool, fmt: str) -> None:
    """Write the site: open its index.html in a browser, or run `elt docs serve`."""
    from elt.docs_site import build_site

    result = build_site(obj.project(), out_dir, rebuild=rebuild)
    print_notes(result)
    if fmt == "json":
        print_json(result.to_json())
    else:
        click.echo(describe(result))


@docs.command()
@OUT
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on (0: any free port).")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.pass_obj
def serve(obj: Context, out_dir: Path | None, port: int, host: str) -> None:
    """Serve the site over HTTP, generating it first if it is missing or older than the lineage."""
    from elt.docs_site import build_site, serve_site

    result = build_site(obj.project(), out_dir, only_if_stale=True)
    print_notes(result)
    click.echo(describe(result))
    serve_site(result.out_dir, host, port,
               ready=lambda url: click.echo(f"serving {url} (Ctrl+C to stop)"))  # fmt: skip


def print_notes(result: SiteResult) -> None:
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


def describe(result: SiteResult) -> str:
    seconds = result.seconds + result.lineage_seconds
    verb = "wrote" if result.generated else "up to date:"
    return (
        f"{verb} {result.index}\n"
        f"  {result.nodes:,} nodes, {result.edges:,} edges, {result.columns:,} columns; "
        f"column lineage {result.coverage:.1%} resolved ({seconds:.2f}s)"
    )
