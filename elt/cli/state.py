"""`elt state`: read and change sync state bookmarks."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from elt.cli.common import FORMAT, Context, print_json


@click.group()
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
        print_json([{"state_id": r.state_id, "updated_at": r.updated_at,
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
    print_json(record.effective, indent=None if fmt == "json" else 2)


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
