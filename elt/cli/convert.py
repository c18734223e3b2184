"""`elt convert prefect PATH…`: Prefect flows into pipelines, blocks and schedules (elt/convert/)."""

from __future__ import annotations

from pathlib import Path

import click

from elt.cli.common import FORMAT, print_json


@click.group()
def convert() -> None:
    """Convert another orchestrator's project into this elt project."""


@convert.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
    help="The elt project to write into (its elt.yml is created when missing, extended otherwise).",
)  # fmt: skip
@click.option(
    "--tag-limit", "tag_limits", multiple=True, metavar="TAG=N",
    help="A concurrency limit Prefect keeps on its server for a tag or limit name (repeatable).",
)  # fmt: skip
@FORMAT
def prefect(paths: tuple[Path, ...], out: Path, tag_limits: tuple[str, ...], fmt: str) -> None:
    """Convert Prefect 2/3 flows (files, or folders of *.py and prefect.yaml) by reading their code.

    \b
    Each @flow becomes a pipeline, each @task a block of blocks/, deployments' schedules become
    schedules; what could not be converted is marked TODO where it is and listed in the report
    (also written to conversion-report.md and .json in the project).
    \b
    elt convert prefect flows/ --out my-project
    elt convert prefect etl.py --tag-limit database=2 --format json
    """
    from elt.convert import convert_prefect, report_json, report_text

    limits: dict[str, int] = {}
    for given in tag_limits:
        tag, sep, value = given.partition("=")
        if not sep or not tag or not value.isdigit() or int(value) < 1:
            raise click.BadParameter(f"expected TAG=N with N ≥ 1, got '{given}'", param_hint="--tag-limit")
        limits[tag] = int(value)
    conversion = convert_prefect(list(paths), out, limits)
    if fmt == "json":
        print_json(report_json(conversion), indent=2)
    else:
        click.echo(report_text(conversion), nl=False)
