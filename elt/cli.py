"""The `elt` command line: parse arguments, call the library, render the result.

Heavy modules (dbt, singer, duckdb) are imported inside the commands that need them, so that
`elt --help` answers at once.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
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
    def __init__(self, environment: str | None, project_dir: Path | None, debug: bool) -> None:
        self.environment = environment
        self.project_dir = project_dir
        self.debug = debug

    def project(self) -> Project:
        from elt.project import load_project

        return load_project(self.project_dir, self.environment)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-e", "--environment", envvar="ELT_ENVIRONMENT", help="Environment of elt.yml to use.")
@click.option(
    "--project-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Project folder (default: the nearest one holding elt.yml or meltano.yml).",
)  # fmt: skip
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(package_name="elt", prog_name="elt")
@click.pass_context
def cli(ctx: click.Context, environment: str | None, project_dir: Path | None, debug: bool) -> None:
    """elt: move data with Singer connectors, model it with dbt, orchestrate it all.

    \b
    Start with:   elt init my-project && cd my-project && elt run demo
    In a project: elt validate | elt sync TAP TARGET | elt build | elt run PIPELINE
    """
    ctx.obj = Context(environment, project_dir, debug)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Write into a folder that already holds a project.")
@click.option("--no-data", is_flag=True, help="Do not generate the sample data files.")
def init(directory: Path, force: bool, no_data: bool) -> None:
    """Create a working project in DIRECTORY (elt.yml, dbt models, profiles, sample data)."""
    from elt.scaffold import create_project

    created = create_project(directory, force=force, with_data=not no_data)
    click.echo(f"Created an elt project in {directory}/ ({len(created)} files).")
    click.echo(f"Next: cd {directory} && elt run demo")


@cli.command()
@FORMAT
@click.pass_obj
def validate(obj: Context, fmt: str) -> None:
    """Check elt.yml against its schema; report every problem with its line."""
    project = obj.project()
    plugins = project.data.get("plugins") or {}
    count = sum(len(v or []) for v in plugins.values())
    pipelines = len(project.data.get("pipelines") or {})
    if fmt == "json":
        _print_json(
            {"file": str(project.file), "valid": True, "environment": project.environment,
             "plugins": count, "pipelines": pipelines}
        )  # fmt: skip
    else:
        click.echo(
            f"{project.file.name} is valid: {count} plugin(s), {pipelines} pipeline(s), "
            f"environment '{project.environment or 'none'}'"
        )


@cli.command()
@click.argument("tap")
@click.argument("target")
@click.option("--full-refresh", is_flag=True, help="Ignore saved bookmarks and read everything again.")
@click.option("--select", "select", multiple=True, help="Only this stream (glob; repeatable).")
@FORMAT
@click.pass_obj
def sync(obj: Context, tap: str, target: str, full_refresh: bool, select: tuple[str, ...], fmt: str) -> None:
    """Sync TAP into TARGET, resuming from the saved state bookmarks."""
    from elt.runs import RunLog
    from elt.sync import run_sync

    project = obj.project()
    reporter = _reporter()
    runs = RunLog(project.system_db)
    record = runs.start("sync", f"{tap} {target}", project.environment)
    try:
        result = run_sync(project, tap, target, full_refresh=full_refresh, select=select,
                          reporter=reporter)  # fmt: skip
    except Exception as exc:
        runs.finish(record, "failed", 0.0, {}, str(exc))
        raise
    runs.finish(record, "success", result.seconds, result.to_json(), None)
    if fmt == "json":
        _print_json(result.to_json())
    else:
        _print_sync(tap, target, result)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def build(obj: Context, dbt_args: tuple[str, ...]) -> None:
    """Run `dbt build` with any dbt selection arguments (e.g. --select marts+)."""
    _dbt(obj, ["build", *dbt_args], quiet=True)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_obj
def dbt(obj: Context, dbt_args: tuple[str, ...]) -> None:
    """Run any dbt command with the project's profiles (e.g. elt dbt test --select stg_orders)."""
    _dbt(obj, list(dbt_args), quiet=False)


def _dbt(obj: Context, args: list[str], *, quiet: bool) -> None:
    from elt.pipeline import Pipeline, Step, run_pipeline

    project = obj.project()
    reporter = _reporter()
    step = Step(f"dbt-{args[0]}", "dbt", " ".join(_quote(a) for a in args), {"quiet": quiet})
    result = run_pipeline(project, Pipeline(f"dbt {args[0]}", (step,)), reporter,
                          on_node=_print_node if quiet else None)  # fmt: skip
    outcome = result.steps[0]
    nodes = outcome.summary.get("nodes", {})
    click.echo(f"dbt {args[0]}: {len(nodes)} node(s) done in {outcome.seconds:.1f}s")


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("blocks", nargs=-1, required=True)
@FORMAT
@click.pass_obj
def run(obj: Context, blocks: tuple[str, ...], fmt: str) -> None:
    """Run a pipeline of elt.yml, or blocks: `elt run tap-files target-duckdb dbt:build`."""
    from elt.pipeline import pipeline_from_blocks, run_pipeline

    project = obj.project()
    pipeline = pipeline_from_blocks(project, list(blocks))
    reporter = _reporter()
    text = fmt == "text"

    def on_sync(step: Any, result: SyncResult) -> None:
        if text:
            names = step.command.split()
            _print_sync(names[0], names[-1], result)

    result = run_pipeline(project, pipeline, reporter, on_sync=on_sync,
                          on_node=_print_node if text else None)  # fmt: skip
    if fmt == "json":
        _print_json(result.to_json())
        return
    click.echo(
        f"✔ {pipeline.name}: {len(result.steps)} step(s) succeeded in {result.seconds:.1f}s "
        f"(run {result.run_id})"
    )
    warehouse = _warehouse_hint(project)
    if warehouse:
        click.echo(f"  warehouse: {warehouse}")
    click.echo(f"  run history: {project.system_db.relative_to(project.root)} (elt runs)")


def _warehouse_hint(project: Project) -> str | None:
    from elt.dbt import dbt_env

    try:
        env = dbt_env(project)
    except Exception:
        return None
    if env["ELT_DBT_TARGET"] != "duckdb":
        return None
    path = Path(env["ELT_WAREHOUSE_PATH"])
    try:
        return str(path.relative_to(project.root))
    except ValueError:
        return str(path)


@cli.command()
@click.option("--limit", default=10, show_default=True)
@FORMAT
@click.pass_obj
def runs(obj: Context, limit: int, fmt: str) -> None:
    """Show the latest runs and their steps."""
    from elt.runs import RunLog

    project = obj.project()
    records = RunLog(project.system_db).recent(limit)
    if fmt == "json":
        _print_json([r.to_json() for r in records])
        return
    if not records:
        click.echo("no runs yet")
    for r in records:
        secs = f"{r.seconds:.1f}s" if r.seconds is not None else "-"
        click.echo(f"{r.started_at}  {r.status:8} {secs:>7}  {r.kind:5} {r.name}  ({r.run_id})")
        for s in r.steps:
            ssecs = f"{s.seconds:.1f}s" if s.seconds is not None else "-"
            click.echo(f"    {s.status:8} {ssecs:>7}  {s.kind:5} {s.name}")


@cli.group()
def state() -> None:
    """Read and change sync state bookmarks (state id: ENV:TAP-to-TARGET)."""


@state.command("list")
@click.argument("pattern", required=False)
@FORMAT
@click.pass_obj
def state_list(obj: Context, pattern: str | None, fmt: str) -> None:
    """List state ids (optionally matching a glob PATTERN)."""
    from elt.state import StateStore

    records = StateStore(obj.project().system_db).list(pattern)
    if fmt == "json":
        _print_json([{"state_id": r.state_id, "updated_at": r.updated_at,
                      "partial": r.partial is not None} for r in records])  # fmt: skip
        return
    for r in records:
        flag = "  (partial: last run did not complete)" if r.partial is not None else ""
        click.echo(f"{r.state_id}  {r.updated_at}{flag}")


@state.command("get")
@click.argument("state_id")
@FORMAT
@click.pass_obj
def state_get(obj: Context, state_id: str, fmt: str) -> None:
    """Print the state a sync of STATE_ID would resume from."""
    from elt.state import StateStore

    record = StateStore(obj.project().system_db).require(state_id)
    _print_json(record.effective, indent=None if fmt == "json" else 2)


@state.command("set")
@click.argument("state_id")
@click.argument("value", required=False)
@click.option("--input-file", type=click.File("r"), help="Read the state JSON from a file (- for stdin).")
@click.option("--force", is_flag=True, help="Do not ask before replacing an existing state.")
@click.pass_obj
def state_set(obj: Context, state_id: str, value: str | None, input_file: Any, force: bool) -> None:
    """Replace the state of STATE_ID with VALUE (a JSON object)."""
    from elt.errors import StateError
    from elt.state import StateStore

    if (value is None) == (input_file is None):
        raise StateError("give the state as a JSON argument or with --input-file, not both")
    text = value if value is not None else input_file.read()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"state for '{state_id}' is not valid JSON: {exc}") from None
    store = StateStore(obj.project().system_db)
    if store.get(state_id) and not force and sys.stdin.isatty():
        click.confirm(f"Replace the existing state of {state_id}?", abort=True)
    store.set(state_id, parsed)
    click.echo(f"state of {state_id} set")


@state.command("clear")
@click.argument("state_id")
@click.option("--stream", help="Only forget this stream's bookmark.")
@click.pass_obj
def state_clear(obj: Context, state_id: str, stream: str | None) -> None:
    """Forget the state of STATE_ID (the next sync reads everything)."""
    from elt.errors import StateError
    from elt.state import StateStore

    if not StateStore(obj.project().system_db).clear(state_id, stream):
        raise StateError(f"no state for state id '{state_id}'")
    click.echo(f"cleared {'stream ' + stream + ' of ' if stream else ''}{state_id}")


# --- rendering -------------------------------------------------------------------------------


def _reporter() -> Any:
    from elt.logs import Reporter

    return Reporter()


def _print_json(value: Any, indent: int | None = None) -> None:
    click.echo(json.dumps(value, indent=indent, default=str))


def _print_sync(tap: str, target: str, result: SyncResult) -> None:
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


def _print_node(node: NodeResult) -> None:
    label = _STATUS.get(node.status, node.status.upper())
    click.echo(f"  {label:<5} {node.resource_type:<9} {node.name:<40} {node.seconds:6.2f}s")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; errors become one clear message and an exit code (2 user, 1 run)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("ELT_DEBUG") == "1"
    try:
        cli.main(args=args, prog_name="elt", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        from elt.errors import EltError

        if debug:
            traceback.print_exc()
        if isinstance(exc, EltError):
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        click.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
        if not debug:
            click.echo("  (run again with --debug for the traceback)", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
