"""`elt secrets`: the project's encrypted secrets store, and what a `${secret:…}` reference resolves to."""

from __future__ import annotations

import sys

import click

from elt.cli.common import FORMAT, Context, print_json


@click.group()
def secrets() -> None:
    """Secrets for ${secret:NAME} in elt.yml: `set`, `get`, `list`, `delete` (the encrypted store), `keygen`.

    \b
    export ELT_SECRET_KEY=$(elt secrets keygen)   # once; keep it outside the project
    elt secrets set DB_PASSWORD                   # asks for the value
    password: ${secret:store:DB_PASSWORD}         # in elt.yml
    """


@secrets.command("set")
@click.argument("name")
@click.argument("value", required=False)
@click.option(
    "--from-stdin", is_flag=True, help="Read the value from standard input (one trailing newline dropped)."
)
@click.pass_obj
def secrets_set(obj: Context, name: str, value: str | None, from_stdin: bool) -> None:
    """Store secret NAME, encrypted with ELT_SECRET_KEY. Without VALUE or --from-stdin it is asked for;
    a VALUE on the command line stays in the shell's history."""
    from elt.errors import EltError
    from elt.secrets.store import check_name, open_store

    check_name(name)
    if value is not None and from_stdin:
        raise EltError("give the value either as VALUE or with --from-stdin, not both")
    if from_stdin:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
    elif value is None:
        if not sys.stdin.isatty():
            hint = f"`elt secrets set {name} --from-stdin < FILE`, or run it on a terminal to be asked"
            raise EltError("no value given", hint=hint)
        value = click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    if not value:
        raise EltError(f"empty value for secret '{name}'")
    open_store(obj.project()).set(name, value)
    click.echo(f"stored secret '{name}'")


@secrets.command("get")
@click.argument("reference", metavar="NAME")
@click.option("--reveal", is_flag=True, help="Print the value itself (else masked).")
@FORMAT
@click.pass_obj
def secrets_get(obj: Context, reference: str, reveal: bool, fmt: str) -> None:
    """Resolve NAME as ${secret:NAME} in elt.yml would: the default backend, or BACKEND:NAME
    (store:NAME, aws:NAME#FIELD, vault:PATH#FIELD). Masked unless --reveal."""
    from elt.plugins import SHOWN_MASK
    from elt.secrets import resolve_reference

    found = resolve_reference(obj.project(), reference)
    value = found.value if reveal else SHOWN_MASK
    if fmt == "json":
        print_json({"backend": found.backend, "name": found.name, "value": value, "from": found.where})
    elif reveal:
        click.echo(value)
    else:
        click.echo(f"{found.name}: {value} (backend '{found.backend}': {found.where}; --reveal to print it)")


@secrets.command("list")
@FORMAT
@click.pass_obj
def secrets_list(obj: Context, fmt: str) -> None:
    """The names in the encrypted store (no key needed)."""
    from dataclasses import asdict

    from elt.secrets.store import open_store

    store = open_store(obj.project())
    stored = store.list()
    if fmt == "json":
        print_json([asdict(s) for s in stored])
        return
    if not stored:
        click.echo(f"no secrets in {store.describe()}")
    for secret in stored:
        click.echo(f"{secret.name}  (updated {secret.updated_at})")


@secrets.command("delete")
@click.argument("name")
@click.pass_obj
def secrets_delete(obj: Context, name: str) -> None:
    """Remove secret NAME from the encrypted store."""
    from elt.errors import EltError
    from elt.secrets.store import open_store

    if not open_store(obj.project()).delete(name):
        raise EltError(f"no secret '{name}' in the store", hint="`elt secrets list` shows the names")
    click.echo(f"deleted secret '{name}'")


@secrets.command("keygen")
def secrets_keygen() -> None:
    """Print a new key for the store: export it as ELT_SECRET_KEY, keep it out of the project."""
    from elt.secrets.store import generate_key

    click.echo(generate_key())
