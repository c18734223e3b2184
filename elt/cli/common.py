"""What the commands share: the context object, output formats and renderers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from elt.dbt import NodeResult
    from elt.project import Project
    from elt.sync import SyncResult

FORMAT = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="json prints one JSON object on stdout.",
)  # fmt: skip


class Context:
    """What the top-level options chose, handed to every command."""

    def __init__(self, environment: str | None, project_dir: Path | None, debug: bool) -> None:
        self.environment = environment
        self.project_dir = project_dir
        self.debug = debug

    def project(self) -> Project:
        from elt.project import load_project

        return load_project(self.project_dir, self.environment)


def make_reporter() -> Any:
    from elt.logs import Reporter

    return Reporter()


def print_json(value: Any, indent: int | None = None) -> None:
    click.echo(json.dumps(value, indent=indent, default=str))


def print_sync(tap: str, target: str, result: SyncResult) -> None:
    rate = result.rows / result.seconds if result.seconds else 0
    if result.rows == 0:
        click.echo(f"{tap} → {target}: 0 new rows, every stream is up to date ({result.seconds:.1f}s)")
    else:
        click.echo(
            f"{tap} → {target}: {result.rows:,} rows in {result.seconds:.1f}s "
            f"({rate:,.0f} rows/s), state {result.state_id}"
        )
    width = max((len(n) for n in result.streams), default=0)
    for name, stats in result.streams.items():
        click.echo(f"  {name:<{width}}  {stats.rows:>10,} rows")


_STATUS = {"success": "OK", "pass": "PASS", "error": "ERROR", "fail": "FAIL", "warn": "WARN",
           "skipped": "SKIP"}  # fmt: skip


def print_node(node: NodeResult) -> None:
    label = _STATUS.get(node.status, node.status.upper())
    click.echo(f"  {label:<5} {node.resource_type:<9} {node.name:<40} {node.seconds:6.2f}s")
