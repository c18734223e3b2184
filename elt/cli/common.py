"""What the commands share: the context object, output formats and renderers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from elt.dbt import NodeResult
    from elt.orchestrator.executor import StepResult
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


def make_reporter(log_format: str | None = None) -> Any:
    """A Reporter: text on a terminal, JSON lines elsewhere, unless `log_format` says which."""
    from elt.logs import Reporter

    return Reporter(tty=None if log_format is None else log_format == "text")


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


def print_step(step: StepResult) -> None:
    """What a finished step of `elt run` did: a sync's rows per stream, a dbt command's nodes."""
    summary = step.summary
    if step.kind == "sync" and "streams" in summary:
        tap, target = summary.get("tap", ""), summary.get("target", "")
        rows, seconds = int(summary.get("rows", 0)), float(summary.get("seconds", 0.0))
        if rows == 0:
            click.echo(f"{tap} → {target}: 0 new rows, every stream is up to date ({seconds:.1f}s)")
        else:
            rate = rows / seconds if seconds else 0
            click.echo(f"{tap} → {target}: {rows:,} rows in {seconds:.1f}s ({rate:,.0f} rows/s), "
                       f"state {summary.get('state_id')}")  # fmt: skip
        width = max((len(n) for n in summary["streams"]), default=0)
        for name, stats in summary["streams"].items():
            click.echo(f"  {name:<{width}}  {stats.get('rows', 0):>10,} rows")
    elif step.kind == "dbt":
        for node in (summary.get("nodes") or {}).values():
            label = _STATUS.get(node.get("status", ""), str(node.get("status", "")).upper())
            click.echo(f"  {label:<5} {node.get('resource_type', ''):<9} {node.get('name', ''):<40} "
                       f"{node.get('seconds', 0):6.2f}s")  # fmt: skip


_STATUS = {"success": "OK", "pass": "PASS", "error": "ERROR", "fail": "FAIL", "warn": "WARN",
           "skipped": "SKIP"}  # fmt: skip


def print_node(node: NodeResult) -> None:
    label = _STATUS.get(node.status, node.status.upper())
    click.echo(f"  {label:<5} {node.resource_type:<9} {node.name:<40} {node.seconds:6.2f}s")
