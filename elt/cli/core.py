"""Commands of a project's life: init, validate, sync, build, dbt, run, runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from elt.cli.common import FORMAT, Context, make_reporter, print_json, print_node, print_sync

if TYPE_CHECKING:
    from elt.project import Project
    from elt.sync import SyncResult


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Write into a folder that already holds a project.")
@click.option("--no-data", is_flag=True, help="Do not generate the sample data files.")
def init(directory: Path, force: bool, no_data: bool) -> None:
    """Create a working project in DIRECTORY (elt.yml, dbt models, profiles, sample data)."""
    from elt.scaffold import create_project

    created = create_project(directory, force=force, with_data=not no_data)
    click.echo(f"Created an elt project in {directory}/ ({len(created)} files).")
    click.echo(f"Next: cd {directory} && elt run demo")


@click.command()
@FORMAT
@click.pass_obj
def validate(obj: Context, fmt: str) -> None:
    """Check elt.yml against its schema; report every problem with its line."""
    project = obj.project()
    plugins = project.data.get("plugins") or {}
    count = sum(len(v or []) for v in plugins.values())
    pipelines = len(project.data.get("pipelines") or {})
    if fmt == "json":
        print_json(
            {"file": str(project.file), "valid": True, "environment": project.environment,
             "plugins": count, "pipelines": pipelines}
        )  # fmt: skip
    else:
        click.echo(
            f"{project.file.name} is valid: {count} plugin(s), {pipelines} pipeline(s), "
            f"environment '{project.environment or 'none'}'"
        )


@click.command()
@click.argument("tap")
@click.argument("target")
@click.option("--full-refresh", is_flag=True, help="Ignore saved bookmarks and read everything again.")
@click.option("--select", "select", multiple=True, help="Only this stream (glob; repeatable).")
@click.option(
    "--state-strategy",
    type=click.Choice(["auto", "merge", "overwrite"]),
    default="auto",
    show_default=True,
    help="What the final state does to the stored one (auto: merge when --select is given).",
)
@click.option(
    "--refresh-catalog", is_flag=True, help="Discover the tap's streams again instead of the cache."
)
@click.option("--timeout", type=float, help="Stop the sync and fail after this many seconds.")
@click.option("--mapper", "mappers", multiple=True, help="A mapper between tap and target (repeatable).")
@click.option("--wait", is_flag=True, help="If another sync of the same state id runs, wait for it.")
@FORMAT
@click.pass_obj
def sync(
    obj: Context,
    tap: str,
    target: str,
    full_refresh: bool,
    select: tuple[str, ...],
    state_strategy: str,
    refresh_catalog: bool,
    timeout: float | None,
    mappers: tuple[str, ...],
    wait: bool,
    fmt: str,
) -> None:
    """Sync TAP into TARGET, resuming from the saved state bookmarks."""
    from elt.runs import RunLog
    from elt.sync import run_sync

    project = obj.project()
    reporter = make_reporter()
    runs = RunLog(project.system_db)
    record = runs.start("sync", f"{tap} {target}", project.environment)
    try:
        result = run_sync(
            project,
            tap,
            target,
            mappers=mappers,
            full_refresh=full_refresh,
            select=select,
            state_strategy=state_strategy,
            refresh_catalog=refresh_catalog,
            timeout=timeout,
            wait=wait,
            run_id=record.run_id,
            reporter=reporter,
        )
    except Exception as exc:
        runs.finish(record, "failed", 0.0, {}, str(exc))
        raise
    runs.finish(record, "success", result.seconds, result.to_json(), None)
    if fmt == "json":
        print_json(result.to_json())
    else:
        print_sync(tap, target, result)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def build(obj: Context, dbt_args: tuple[str, ...]) -> None:
    """Run `dbt build` with any dbt selection arguments (e.g. --select marts+)."""
    _dbt(obj, ["build", *dbt_args], quiet=True)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_obj
def dbt(obj: Context, dbt_args: tuple[str, ...]) -> None:
    """Run any dbt command with the project's profiles (e.g. elt dbt test --select stg_orders)."""
    _dbt(obj, list(dbt_args), quiet=False)


def _dbt(obj: Context, args: list[str], *, quiet: bool) -> None:
    from elt.pipeline import Pipeline, Step, run_pipeline

    project = obj.project()
    reporter = make_reporter()
    step = Step(f"dbt-{args[0]}", "dbt", " ".join(_quote(a) for a in args), {"quiet": quiet})
    result = run_pipeline(project, Pipeline(f"dbt {args[0]}", (step,)), reporter,
                          on_node=print_node if quiet else None)  # fmt: skip
    outcome = result.steps[0]
    nodes = outcome.summary.get("nodes", {})
    click.echo(f"dbt {args[0]}: {len(nodes)} node(s) done in {outcome.seconds:.1f}s")


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("blocks", nargs=-1, required=True)
@FORMAT
@click.pass_obj
def run(obj: Context, blocks: tuple[str, ...], fmt: str) -> None:
    """Run a pipeline of elt.yml, or blocks: `elt run tap-files target-duckdb dbt:build`."""
    from elt.pipeline import pipeline_from_blocks, run_pipeline

    project = obj.project()
    pipeline = pipeline_from_blocks(project, list(blocks))
    reporter = make_reporter()
    text = fmt == "text"

    def on_sync(step: Any, result: SyncResult) -> None:
        if text:
            names = step.command.split()
            print_sync(names[0], names[-1], result)

    result = run_pipeline(project, pipeline, reporter, on_sync=on_sync,
                          on_node=print_node if text else None)  # fmt: skip
    if fmt == "json":
        print_json(result.to_json())
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


@click.command()
@click.option("--limit", default=10, show_default=True)
@FORMAT
@click.pass_obj
def runs(obj: Context, limit: int, fmt: str) -> None:
    """Show the latest runs and their steps."""
    from elt.runs import RunLog

    project = obj.project()
    records = RunLog(project.system_db).recent(limit)
    if fmt == "json":
        print_json([r.to_json() for r in records])
        return
    if not records:
        click.echo("no runs yet")
    for r in records:
        secs = f"{r.seconds:.1f}s" if r.seconds is not None else "-"
        click.echo(f"{r.started_at}  {r.status:8} {secs:>7}  {r.kind:5} {r.name}  ({r.run_id})")
        for s in r.steps:
            ssecs = f"{s.seconds:.1f}s" if s.seconds is not None else "-"
            click.echo(f"    {s.status:8} {ssecs:>7}  {s.kind:5} {s.name}")


@click.command()
@click.argument("tap")
@click.option("--list", "list_", is_flag=True, required=True, help="List the tap's streams and properties.")
@click.option("--all", "all_", is_flag=True, help="Also list what is not selected.")
@click.option("--refresh-catalog", is_flag=True, help="Discover the streams again, not from the cache.")
@FORMAT
@click.pass_obj
def select(obj: Context, tap: str, list_: bool, all_: bool, refresh_catalog: bool, fmt: str) -> None:
    """Show what TAP's `select` rules in elt.yml read: streams and properties."""
    from dataclasses import asdict

    from elt.sync import tap_selection

    project = obj.project()
    report = tap_selection(project, tap, refresh_catalog=refresh_catalog)
    shown = [s for s in report if all_ or s.selected]
    if fmt == "json":
        print_json([asdict(s) for s in shown])
        return
    for stream in shown:
        click.echo(f"{stream.stream}{'' if stream.selected else '  (excluded)'}")
        for prop in stream.properties:
            if all_ or prop.status != "excluded":
                click.echo(f"  [{prop.status:<9}] {stream.stream}.{prop.name}")
