"""The `elt` command line: parse arguments, call the library, render the result.

Each module here holds the commands of one concern and holds no logic of its own. Heavy modules (dbt,
singer-sdk, duckdb) are imported inside the commands that need them, so that `elt --help` answers at once.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click

from elt.cli import config as config_commands
from elt.cli import convert as convert_commands
from elt.cli import core
from elt.cli import docs as docs_commands
from elt.cli import install as install_commands
from elt.cli import lineage as lineage_commands
from elt.cli import preview as preview_commands
from elt.cli import schedule as schedule_commands
from elt.cli import secrets as secrets_commands
from elt.cli import server as server_commands
from elt.cli import state as state_commands
from elt.cli import worker as worker_commands
from elt.cli.common import Context


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


for command in (
    core.init, core.validate, core.sync, core.select, core.build, core.dbt_test, core.seed, core.snapshot,
    core.dbt, core.run, core.runs,
):  # fmt: skip
    cli.add_command(command)
cli.add_command(state_commands.state)
cli.add_command(config_commands.config)
cli.add_command(secrets_commands.secrets)
cli.add_command(install_commands.install)
cli.add_command(preview_commands.preview)
cli.add_command(docs_commands.docs)
cli.add_command(lineage_commands.lineage)
cli.add_command(convert_commands.convert)
cli.add_command(schedule_commands.schedule)
cli.add_command(schedule_commands.scheduler)
cli.add_command(schedule_commands.trigger)
cli.add_command(server_commands.serve)
cli.add_command(server_commands.tokens)
cli.add_command(worker_commands.worker)


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
        from elt.logs import mask  # secret values the command resolved never reach the terminal

        if debug:
            click.echo(mask(traceback.format_exc()), err=True, nl=False)
        if isinstance(exc, EltError):
            click.echo(mask(f"error: {exc}"), err=True)
            sys.exit(exc.exit_code)
        click.echo(mask(f"internal error: {type(exc).__name__}: {exc}"), err=True)
        if not debug:
            click.echo("  (run again with --debug for the traceback)", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
