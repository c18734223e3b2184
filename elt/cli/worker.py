"""`elt worker`: a Celery worker for the project's steps (the `celery` executor)."""

from __future__ import annotations

import os

import click

from elt.cli.common import Context


@click.command()
@click.option(
    "--queues", "-Q", metavar="Q1,Q2", help="Queues to take steps from (default: the executor's, 'elt')."
)
@click.option(
    "--concurrency", "-c", type=click.IntRange(min=1), help="Steps run at once (default: CPU count)."
)
@click.option("--name", "-n", help="The worker's name in run history (default: elt-PID@HOST).")
@click.pass_obj
def worker(obj: Context, queues: str | None, concurrency: int | None, name: str | None) -> None:
    """Run the steps that `elt run` sends to the broker of the environment's celery executor."""
    from elt.errors import ProjectError
    from elt.orchestrator.executors import executor_settings
    from elt.orchestrator.worker import run_worker

    project = obj.project()
    settings = executor_settings(project)
    if settings.kind != "celery":
        raise ProjectError(
            f"environment '{project.environment or '(none)'}' has no celery executor: add "
            "`executor: {kind: celery, broker_url: redis://HOST:6379/0}` to its entry of `environments:`, "
            "or set ELT_EXECUTOR=celery and ELT_BROKER_URL"
        )
    chosen = [q.strip() for q in (queues or settings.queue).split(",") if q.strip()]
    run_worker(project, settings, queues=chosen, concurrency=concurrency or os.cpu_count() or 1, name=name)
