"""`elt install`: give plugins with a pip_url their venvs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from elt.cli.common import FORMAT, Context, make_reporter, print_json

if TYPE_CHECKING:
    from elt.install import InstallResult

_SAYS = {
    "installed": "installed",
    "unchanged": "already installed",
    "builtin": "built in, nothing to install",
    "skipped": "no pip_url: runs the executable on PATH",
    "failed": "FAILED",
}


@click.command()
@click.argument("names", nargs=-1)
@click.option("--plugin-type", help="Only plugins of this type (extractors, loaders, mappers, utilities…).")
@click.option("--force", is_flag=True, help="Rebuild the venvs even when their pip_url did not change.")
@FORMAT
@click.pass_obj
def install(obj: Context, names: tuple[str, ...], plugin_type: str | None, force: bool, fmt: str) -> None:
    """Install plugins with a pip_url (default: all of them) into venvs under .elt/plugins/.

    A venv is rebuilt only when the plugin's pip_url or elt's Python changed, or with --force.
    """
    from elt.errors import RunError
    from elt.install import install_plugins

    results = install_plugins(obj.project(), names, plugin_type, force, reporter=make_reporter())
    if fmt == "json":
        print_json({"plugins": [r.to_json() for r in results]})
    else:
        _print_results(results)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        details = "\n".join(f"{r.name}: {r.error}" for r in failed)
        raise RunError(f"{len(failed)} of {len(results)} plugin(s) could not be installed:\n{details}")


def _print_results(results: list[InstallResult]) -> None:
    if not results:
        click.echo("no plugins to install")
        return
    width = max(len(r.name) for r in results)
    for r in results:
        line = f"  {r.name:<{width}}  {_SAYS.get(r.status, r.status)}"
        if r.status == "installed":
            line += f" in {r.seconds:.1f}s ({len(r.packages)} packages) → {r.venv}"
        click.echo(line)
