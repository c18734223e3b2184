"""State from a Meltano project, for `elt state import --from-meltano`.

Meltano keeps state in the `state` table of its system database (`.meltano/meltano.db`, SQLite, unless
its `database_uri` points elsewhere): columns `state_id`, `partial_state`, `completed_state` (JSON text)
and `updated_at`. Each JSON value wraps the Singer state: `{"singer_state": {...}}`, or `{}` when there
is none. `meltano state get ID` prints the effective state the same way, and Meltano's file and cloud
backends store `{"completed": {"singer_state": …}, "partial": {…}}` per state id.

State ids keep their names: Meltano's `<environment>:<tap>-to-<target>` is elt's form too.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from elt.errors import StateError
from elt.state.backend import StateRecord, now

SINGER_STATE = "singer_state"
SYSTEM_DB = Path(".meltano") / "meltano.db"
_SQLITE_HEADER = b"SQLite format 3\x00"


def read_meltano_states(path: Path, state_id: str | None = None) -> list[StateRecord]:
    """The state records in a Meltano project folder, its system database, or a JSON state file.

    For a database or folder, `state_id` picks one state id (default: all). A JSON file holds one
    state (`meltano state get` output, or a state.json of Meltano's file/S3 backends), so `state_id`
    names it and is required.
    """
    if path.is_dir():
        database = path / SYSTEM_DB
        if not database.is_file():
            raise StateError(
                f"{path} has no Meltano system database ({SYSTEM_DB} not found)",
                hint="if its database_uri points to another database, run `meltano state get ID > s.json` "
                "there and import that file with --state-id ID",
            )
        return _read_database(database, state_id)
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc}") from None
    if head == _SQLITE_HEADER:
        return _read_database(path, state_id)
    return [_read_json_file(path, state_id)]


def _read_database(database: Path, state_id: str | None) -> list[StateRecord]:
    uri = database.resolve().as_uri() + "?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(state)")}
            if not {"state_id", "completed_state", "partial_state"} <= columns:
                raise StateError(
                    f"{database} has no Meltano state table (state_id, partial_state, completed_state)",
                    hint="run `meltano state list` there to check it is a Meltano 2.x+ system database",
                )
            query = "SELECT state_id, completed_state, partial_state FROM state"
            params: tuple[str, ...] = ()
            if state_id is not None:
                query, params = query + " WHERE state_id = ?", (state_id,)
            rows = conn.execute(query + " ORDER BY state_id", params).fetchall()
    except sqlite3.Error as exc:
        raise StateError(f"cannot read the Meltano database {database}: {exc}") from None
    records = []
    stamp = now()
    for sid, completed, partial in rows:
        where = f"{database}: state id '{sid}'"
        record = StateRecord(
            sid,
            _unwrap(completed, f"{where}, completed_state"),
            _unwrap(partial, f"{where}, partial_state"),
            stamp,
        )
        if record.completed is not None or record.partial is not None:
            records.append(record)
    if state_id is not None and not records:
        raise StateError(f"{database} holds no state for state id '{state_id}'")
    return records


def _read_json_file(path: Path, state_id: str | None) -> StateRecord:
    if state_id is None:
        raise StateError(
            f"{path} holds one Meltano state without its state id",
            hint="name it: --state-id ENV:TAP-to-TARGET",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"{path} is neither a Meltano system database nor a JSON state: {exc}") from None
    if isinstance(data, dict) and SINGER_STATE in data:
        completed, partial = _unwrap(data, str(path)), None
    elif isinstance(data, dict) and data and set(data) <= {"completed", "partial"}:
        completed = _unwrap(data.get("completed"), f"{path}: completed")
        partial = _unwrap(data.get("partial"), f"{path}: partial")
    else:
        raise StateError(
            f'{path}: expected a Meltano state, {{"{SINGER_STATE}": {{…}}}} (what `meltano state get` prints)'
        )
    if completed is None and partial is None:
        raise StateError(f"{path}: the Meltano state is empty")
    return StateRecord(state_id, completed, partial, now())


def _unwrap(value: Any, where: str) -> dict[str, Any] | None:
    """The Singer state inside a Meltano state value (JSON text or parsed), None when it has none."""
    if isinstance(value, bytes | str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise StateError(f"{where}: not valid JSON: {exc}") from None
    if value is None or value == {}:
        return None
    if not isinstance(value, dict) or SINGER_STATE not in value:
        raise StateError(f'{where}: expected {{"{SINGER_STATE}": {{…}}}}, as Meltano stores state')
    singer = value[SINGER_STATE]
    if singer is None or singer == {}:
        return None
    if not isinstance(singer, dict):
        raise StateError(f"{where}: '{SINGER_STATE}' must be a JSON object, got {type(singer).__name__}")
    return singer
