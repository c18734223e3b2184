"""`elt state`: read and change sync state bookmarks, in whichever backend elt.yml names."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from elt.cli.common import FORMAT, Context, print_json

if TYPE_CHECKING:
    from elt.state import StateStore

WAIT = click.option(
    "--wait", is_flag=True, help="If a sync holds the lock of the state id, wait for it instead of failing."
)
INPUT_FILE = click.option(
    "--input-file", type=click.File("r"), help="Read the state JSON from a file (- for stdin)."
)


def _store(obj: Context) -> StateStore:
    from elt.state import open_state_store

    return open_state_store(obj.project())


def _run_id(command: str) -> str:
    """Who holds a lock taken by a state command, as other runs' messages will name it."""
    return f"elt-state-{command}-{uuid.uuid4().hex[:8]}"


def _confirm(question: str, force: bool) -> None:
    if not force and sys.stdin.isatty():
        click.confirm(question, abort=True)


def _state_argument(state_id: str, value: str | None, input_file: IO[str] | None) -> dict[str, Any]:
    from elt.errors import StateError
    from elt.state.transfer import parse_state

    if (value is None) == (input_file is None):
        raise StateError("give the state as a JSON argument or with --input-file, not both")
    if value is not None:
        return parse_state(value, f"the state given for '{state_id}'")
    assert input_file is not None
    return parse_state(input_file.read(), f"{input_file.name} (state for '{state_id}')")


def _plural(count: int) -> str:
    return f"{count} state id{'' if count == 1 else 's'}"


@click.group()
def state() -> None:
    """Read and change sync state bookmarks (state id: ENV:TAP-to-TARGET)."""


@state.command("list")
@click.argument("pattern", required=False)
@FORMAT
@click.pass_obj
def state_list(obj: Context, pattern: str | None, fmt: str) -> None:
    """List state ids (matching a glob PATTERN).

    PATTERN is a glob on the state id, e.g. 'prod:*'. A state id a run holds the lock of says so.
    """
    with _store(obj) as store:
        rows = [(r, store.lock_holder(r.state_id)) for r in store.list(pattern)]
    if fmt == "json":
        print_json([{"state_id": r.state_id, "updated_at": r.updated_at, "partial": r.partial is not None,
                     "locked_by": h.run_id if h else None} for r, h in rows])  # fmt: skip
        return
    for r, holder in rows:
        flag = "  (partial: last run did not complete)" if r.partial is not None else ""
        lock = f"  [locked by {holder.describe()}]" if holder else ""
        click.echo(f"{r.state_id}  {r.updated_at}{flag}{lock}")


@state.command("get")
@click.argument("state_id")
@FORMAT
@click.pass_obj
def state_get(obj: Context, state_id: str, fmt: str) -> None:
    """Print the state a sync of STATE_ID would resume from."""
    with _store(obj) as store:
        record = store.require(state_id)
    print_json(record.effective, indent=None if fmt == "json" else 2)


@state.command("set")
@click.argument("state_id")
@click.argument("value", required=False)
@INPUT_FILE
@click.option("--force", is_flag=True, help="Do not ask before replacing an existing state.")
@WAIT
@click.pass_obj
def state_set(
    obj: Context, state_id: str, value: str | None, input_file: IO[str] | None, force: bool, wait: bool
) -> None:
    """Replace the state of STATE_ID with VALUE (a JSON object)."""
    parsed = _state_argument(state_id, value, input_file)
    with _store(obj) as store:
        if store.get(state_id):
            _confirm(f"Replace the existing state of {state_id}?", force)
        with store.lock(state_id, run_id=_run_id("set"), wait=wait):
            store.set(state_id, parsed)
        click.echo(f"state of {state_id} set in {store.label}")


@state.command("merge")
@click.argument("state_id")
@click.argument("value", required=False)
@INPUT_FILE
@click.option("--from-state-id", help="Merge the state of this other state id.")
@WAIT
@click.pass_obj
def state_merge(
    obj: Context,
    state_id: str,
    value: str | None,
    input_file: IO[str] | None,
    from_state_id: str | None,
    wait: bool,
) -> None:
    """Deep-merge a state into STATE_ID's.

    The state is VALUE (a JSON object), the content of --input-file, or the state of --from-state-id;
    its bookmarks win over those STATE_ID has.
    """
    from elt.errors import StateError

    with _store(obj) as store:
        if from_state_id is not None:
            if value is not None or input_file is not None:
                raise StateError("give one of: a JSON argument, --input-file, --from-state-id")
            parsed = store.require(from_state_id).effective
        else:
            parsed = _state_argument(state_id, value, input_file)
        with store.lock(state_id, run_id=_run_id("merge"), wait=wait):
            store.merge(state_id, parsed)
    source = f" from {from_state_id}" if from_state_id else ""
    click.echo(f"merged{source} into the state of {state_id}")


@state.command("copy")
@click.argument("source")
@click.argument("destination")
@click.option("--force", is_flag=True, help="Do not ask before replacing the destination's state.")
@WAIT
@click.pass_obj
def state_copy(obj: Context, source: str, destination: str, force: bool, wait: bool) -> None:
    """Copy the state of SOURCE to DESTINATION.

    DESTINATION gets the completed and partial state of SOURCE, replacing its own.
    """
    with _store(obj) as store:
        if store.get(destination):
            _confirm(f"Replace the existing state of {destination}?", force)
        with store.lock_all([source, destination], run_id=_run_id("copy"), wait=wait):
            store.copy(source, destination)
    click.echo(f"copied the state of {source} to {destination}")


@state.command("move")
@click.argument("source")
@click.argument("destination")
@click.option("--force", is_flag=True, help="Do not ask before replacing the destination's state.")
@WAIT
@click.pass_obj
def state_move(obj: Context, source: str, destination: str, force: bool, wait: bool) -> None:
    """Move the state of SOURCE to DESTINATION.

    As copy, then SOURCE is forgotten: e.g. after renaming a plugin or an environment.
    """
    with _store(obj) as store:
        if store.get(destination):
            _confirm(f"Replace the existing state of {destination}?", force)
        with store.lock_all([source, destination], run_id=_run_id("move"), wait=wait):
            store.move(source, destination)
    click.echo(f"moved the state of {source} to {destination}")


@state.command("clear")
@click.argument("state_id")
@click.option("--stream", help="Only forget this stream's bookmark.")
@click.option("--force", is_flag=True, help="Do not ask before forgetting.")
@WAIT
@click.pass_obj
def state_clear(obj: Context, state_id: str, stream: str | None, force: bool, wait: bool) -> None:
    """Forget the state of STATE_ID (the next sync reads everything)."""
    from elt.errors import StateError

    what = f"the bookmark of stream {stream} in {state_id}" if stream else f"the state of {state_id}"
    with _store(obj) as store:
        _confirm(f"Forget {what}?", force)
        with store.lock(state_id, run_id=_run_id("clear"), wait=wait):
            found = store.clear(state_id, stream)
    if not found:
        raise StateError(f"no state for state id '{state_id}'")
    click.echo(f"cleared {'stream ' + stream + ' of ' if stream else ''}{state_id}")


@state.command("export")
@click.argument("pattern", required=False)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of stdout.")  # fmt: skip
@click.pass_obj
def state_export(obj: Context, pattern: str | None, output: Path | None) -> None:
    """Write all state as one JSON object.

    The object is {state_id: {"completed": …, "partial": …}} for every state id (matching the glob
    PATTERN), on stdout or in --output FILE; `elt state import FILE` reads it back.
    """
    import json

    from elt.state.transfer import export_states

    with _store(obj) as store:
        exported = export_states(store, pattern)
    text = json.dumps(exported, indent=2)
    if output is None:
        click.echo(text)
        return
    output.write_text(text + "\n", encoding="utf-8")
    click.echo(f"exported {_plural(len(exported))} to {output}", err=True)


@state.command("import")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--from-meltano",
    type=click.Path(exists=True, path_type=Path),
    help="A Meltano project folder, its .meltano/meltano.db, or `meltano state get` output.",
)
@click.option("--state-id", help="With --from-meltano: the state id of a JSON state, or the one to take.")
@click.option("--force", is_flag=True, help="Do not ask before replacing existing states.")
@WAIT
@click.pass_obj
def state_import(obj: Context, file: Path | None, from_meltano: Path | None, state_id: str | None,
                 force: bool, wait: bool) -> None:  # fmt: skip
    """Import an export FILE, or Meltano's state.

    FILE is what `elt state export` wrote. --from-meltano reads a Meltano project folder, its system
    database (.meltano/meltano.db), or a JSON file of `meltano state get ID` output (name it with
    --state-id ID). State ids keep their names; each imported one replaces the state it had.
    """
    from elt.errors import StateError
    from elt.state.meltano import read_meltano_states
    from elt.state.transfer import import_records, read_export

    if (file is None) == (from_meltano is None):
        raise StateError("give either FILE (from `elt state export`) or --from-meltano PATH")
    if from_meltano is not None:
        records, source = read_meltano_states(from_meltano, state_id), from_meltano
    else:
        if state_id is not None:
            raise StateError("--state-id goes with --from-meltano; an export file names its state ids")
        assert file is not None
        records, source = read_export(file), file
    if not records:
        click.echo(f"no state to import in {source}")
        return
    with _store(obj) as store:
        existing = [r.state_id for r in records if store.get(r.state_id)]
        if existing:
            _confirm(f"Replace the state of {', '.join(existing)}?", force)
        result = import_records(store, records, run_id=_run_id("import"), wait=wait)
    replaced = f"; replaced {', '.join(result.replaced)}" if result.replaced else ""
    click.echo(f"imported {_plural(result.count)} from {source}{replaced}")
