"""`elt config PLUGIN`: a plugin's effective config, with its secrets masked."""

from __future__ import annotations

import click

from elt.cli.common import FORMAT, Context, print_json


@click.command()
@click.argument("plugin")
@FORMAT
@click.pass_obj
def config(obj: Context, plugin: str, fmt: str) -> None:
    """Show PLUGIN's effective config (inheritance, environment, variables and ${secret:…} applied),
    secrets masked as ********."""
    import yaml

    from elt.plugins import effective_config

    shown = effective_config(obj.project(), plugin)
    if fmt == "json":
        print_json(shown)
        return
    click.echo(f"# {shown['plugin']} ({shown['type']}), environment {shown['environment'] or 'none'}")
    body = {"config": shown["config"], **({"env": shown["env"]} if shown["env"] else {})}
    click.echo(yaml.safe_dump(body, sort_keys=False, allow_unicode=True).rstrip())
