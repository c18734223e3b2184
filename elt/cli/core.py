"""Commands of a project's life: init, validate, sync, build, dbt, run, runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from elt.cli.common import FORMAT, Context, make_reporter, print_json, print_node, print_step, print_sync

if TYPE_CHECKING:
    from elt.project import Project


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


DBT_ARGS = {"ignore_unknown_options": True, "allow_extra_args": True}


@click.command(context_settings=DBT_ARGS)
@click.option(
    "--changed", is_flag=True,
    help="Build only what changed since the last successful build, and its downstream (state:modified+).",
)  # fmt: skip
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def build(obj: Context, changed: bool, dbt_args: tuple[str, ...]) -> None:
    """Run `dbt build` with any dbt selection arguments (e.g. --select marts+)."""
    _dbt(obj, ["build", *dbt_args, *(["--changed"] if changed else [])], quiet=True)


@click.command("test", context_settings=DBT_ARGS)
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def dbt_test(obj: Context, dbt_args: tuple[str, ...]) -> None:
    """Run `dbt test` with any dbt selection arguments (e.g. --select stg_orders)."""
    _dbt(obj, ["test", *dbt_args], quiet=True)


@click.command(context_settings=DBT_ARGS)
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def seed(obj: Context, dbt_args: tuple[str, ...]) -> None:
    """Run `dbt seed` with any dbt arguments (e.g. --full-refresh)."""
    _dbt(obj, ["seed", *dbt_args], quiet=True)


@click.command(context_settings=DBT_ARGS)
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def snapshot(obj: Context, dbt_args: tuple[str, ...]) -> None:
    """Run `dbt snapshot` with any dbt selection arguments."""
    _dbt(obj, ["snapshot", *dbt_args], quiet=True)


@click.command(context_settings=DBT_ARGS)
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_obj
def dbt(obj: Context, dbt_args: tuple[str, ...]) -> None:
    """Run any dbt command with the project's profiles (e.g. elt dbt test --select stg_orders)."""
    _dbt(obj, list(dbt_args), quiet=False)


def _dbt(obj: Context, args: list[str], *, quiet: bool) -> None:
    from elt.steps.dbt import run_dbt_command

    project = obj.project()
    _, result = run_dbt_command(project, args,
                                print_node if quiet else None, quiet=quiet)  # fmt: skip
    for note in result.notes:
        click.echo(note)
    click.echo(f"dbt {args[0]}: {len(result.nodes)} node(s) done in {result.seconds:.1f}s")


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("blocks", nargs=-1)
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="Set a pipeline variable.")
@click.option("--only", multiple=True, metavar="STEP", help="Run only this step (repeatable).")
@click.option("--from", "start", metavar="STEP", help="Run this step and everything downstream of it.")
@click.option("--resume", metavar="RUN", help="Run again what a run did not finish, reusing what succeeded.")
@click.option("--no-cache", is_flag=True, help="Run cached steps even when their inputs are unchanged.")
@click.option("--wait", is_flag=True, help="Wait for runs holding the same state ids or dbt project.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Progress on stderr: text (default on a terminal) or JSON lines (default elsewhere).",
)
@FORMAT
@click.pass_obj
def run(
    obj: Context, blocks: tuple[str, ...], variables: tuple[str, ...], only: tuple[str, ...],
    start: str | None, resume: str | None, no_cache: bool, wait: bool, log_format: str | None, fmt: str,
) -> None:  # fmt: skip
    """Run a pipeline of elt.yml, or blocks: `elt run tap-files target-duckdb dbt:build`."""
    from elt.errors import EltError, RunError
    from elt.orchestrator.executor import StepResult, run_request
    from elt.runs import RunLog

    project = obj.project()
    overrides = {}
    for item in variables:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise EltError(f"--var expects NAME=VALUE, got '{item}'")
        overrides[name] = value
    reporter = make_reporter(log_format)
    text = fmt == "text"

    def on_step(step: StepResult) -> None:
        if text and step.status == "success":
            print_step(step)

    result = run_request(
        project, list(blocks), variables=overrides, only=only, start=start, no_cache=no_cache, wait=wait,
        resume=resume, reporter=reporter, on_step=on_step,
    )  # fmt: skip
    if fmt == "json":
        print_json(result.to_json())
    if result.status == "cancelled":
        raise RunError(
            RunLog(project.system_db).get(result.run_id).error or "the run was cancelled",
            hint=f"rerun what did not finish with `elt run --resume {result.run_id}`",
        )
    failure = result.failure()
    if failure is not None:
        skipped = sum(1 for s in result.steps if s.status == "skipped")
        raise RunError(
            f"step '{failure.name}' failed: {failure.error}",
            hint=f"{skipped} step(s) skipped; see `elt runs show {result.run_id}`, "
            f"rerun with `elt run --resume {result.run_id}`",
        )
    if fmt == "json":
        return
    counts: dict[str, int] = {}
    for s in result.steps:
        counts[s.status] = counts.get(s.status, 0) + 1
    others = ", ".join(f"{n} {k}" for k, n in counts.items() if k != "success")
    click.echo(
        f"✔ {result.pipeline}: {counts.get('success', 0)} step(s) succeeded"
        f"{' (' + others + ')' if others else ''} in {result.seconds:.1f}s (run {result.run_id})"
    )
    from elt.systemdb import describe

    warehouse = _warehouse_hint(project)
    if warehouse:
        click.echo(f"  warehouse: {warehouse}")
    click.echo(f"  run history: {describe(project.system_db, project.root)} (elt runs)")


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


LIMIT = click.option("--limit", default=10, show_default=True, help="How many runs, newest first.")


@click.group(invoke_without_command=True)
@LIMIT
@FORMAT
@click.pass_context
def runs(ctx: click.Context, limit: int, fmt: str) -> None:
    """Run history: `elt runs [list]`, `elt runs show RUN`, `elt runs logs RUN`, `elt runs cancel RUN`."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(runs_list, limit=limit, fmt=fmt)


@runs.command("list")
@LIMIT
@FORMAT
@click.pass_obj
def runs_list(obj: Context, limit: int, fmt: str) -> None:
    """The latest runs and their steps."""
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


@runs.command("show")
@click.argument("run_id", metavar="RUN")
@FORMAT
@click.pass_obj
def runs_show(obj: Context, run_id: str, fmt: str) -> None:
    """One run: its steps with status, rows and attempts (a unique prefix of the id will do)."""
    from elt.runs import RunLog

    record = RunLog(obj.project().system_db).get(run_id)
    if fmt == "json":
        print_json(record.to_json())
        return
    secs = f"{record.seconds:.1f}s" if record.seconds is not None else "-"
    click.echo(f"run {record.run_id}  {record.kind} {record.name}  {record.status}  {secs}")
    if record.error:
        click.echo(f"  error: {record.error.splitlines()[0]}")
    for s in record.steps:
        ssecs = f"{s.seconds:.1f}s" if s.seconds is not None else "-"
        rows = f"{s.rows:,} rows" if s.rows is not None else ""
        tries = f"{s.attempts} attempt(s)" if s.attempts else ""
        click.echo(f"  {s.status:8} {ssecs:>7}  {s.kind:8} {s.name:<30} {rows:>14}  {tries}")
        if s.error and s.status != "success":
            click.echo(f"           {s.error.splitlines()[0]}")
        for a in s.attempt_records if len(s.attempt_records) > 1 else []:
            asecs = f"{a.seconds:.1f}s" if a.seconds is not None else "-"
            on = f"  on {a.worker}" if a.worker else ""
            click.echo(f"           attempt {a.attempt}: {a.status:8} {asecs:>7}  started {a.started_at}{on}")
            if a.error and a.status != "success":
                click.echo(f"             {a.error.splitlines()[0]}")


@runs.command("cancel")
@click.argument("run_id", metavar="RUN")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the run has stopped.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait at most.")
@click.pass_obj
def runs_cancel(obj: Context, run_id: str, wait: bool, timeout: float) -> None:
    """Stop a running run: its running steps are killed (on workers too) and recorded `cancelled`, the
    rest do not start. `elt run --resume RUN` runs what did not finish."""
    import getpass
    import socket
    import time

    from elt.errors import EltError
    from elt.runs import RunLog

    log = RunLog(obj.project().system_db)
    record = log.request_cancel(run_id, f"{getpass.getuser()}@{socket.gethostname()}")
    if not wait:
        click.echo(f"asked run {record.run_id} to stop")
        return
    deadline = time.monotonic() + timeout
    while (record := log.get(record.run_id)).status == "running":
        if time.monotonic() > deadline:
            raise EltError(f"run {record.run_id} is still running {timeout:g}s after it was asked to stop",
                           hint="is its elt process hung? `elt runs show` tells its steps")  # fmt: skip
        time.sleep(0.2)
    click.echo(f"run {record.run_id}: {record.status}" + (f" ({record.error})" if record.error else ""))


@runs.command("logs")
@click.argument("run_id", metavar="RUN")
@click.option("--step", help="Only this step (and its for_each instances).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the run ends.")
@click.pass_obj
def runs_logs(obj: Context, run_id: str, step: str | None, follow: bool) -> None:
    """The output of each attempt of a run's steps (from .elt/logs/)."""
    from elt.runs import iter_logs

    for line in iter_logs(obj.project().system_db, run_id, step, follow):
        click.echo(line)


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
