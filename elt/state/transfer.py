"""State in and out of a store as JSON: a state given by a user, and export files.

An export file is one JSON object, `{state_id: {"completed": {...} | null, "partial": {...} | null}}`;
`import_records` writes what `read_export` (or `elt.state.meltano`) read back into a store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elt.errors import StateError
from elt.state.backend import StateRecord, now
from elt.state.store import StateStore


def parse_state(text: str, where: str) -> dict[str, Any]:
    """A Singer state given by a user (argument or file); StateError naming `where` if not an object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise StateError(f"{where} must be a JSON object (a Singer state), got {type(value).__name__}")
    return value


def export_states(store: StateStore, pattern: str | None = None) -> dict[str, dict[str, Any]]:
    """Every state id (matching the glob `pattern`) with its completed and partial state."""
    return {r.state_id: {"completed": r.completed, "partial": r.partial} for r in store.list(pattern)}


def read_export(path: Path) -> list[StateRecord]:
    """The records of an export file; StateError naming the file and state id if it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StateError(f"{path}: expected an object of state ids (what `elt state export` writes)")
    records = []
    stamp = now()
    for state_id, entry in data.items():
        if not isinstance(entry, dict) or not set(entry) <= {"completed", "partial"} or not entry:
            raise StateError(
                f'{path}: state id \'{state_id}\': expected {{"completed": …, "partial": …}}',
                hint="a single Singer state goes in with `elt state set ID --input-file FILE`",
            )
        for key in ("completed", "partial"):
            if entry.get(key) is not None and not isinstance(entry[key], dict):
                raise StateError(f"{path}: state id '{state_id}': '{key}' must be a JSON object or null")
        records.append(StateRecord(state_id, entry.get("completed"), entry.get("partial"), stamp))
    return records


@dataclass(frozen=True)
class ImportResult:
    """Which state ids an import created and which it replaced."""

    created: tuple[str, ...]
    replaced: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.created) + len(self.replaced)


def import_records(
    store: StateStore, records: list[StateRecord], *, run_id: str, wait: bool = False
) -> ImportResult:
    """Put `records` into `store`, each replacing the state of its id, holding their locks meanwhile."""
    created: list[str] = []
    replaced: list[str] = []
    with store.lock_all([r.state_id for r in records], run_id=run_id, wait=wait):
        for record in records:
            (replaced if store.get(record.state_id) else created).append(record.state_id)
            store.put(record)
    return ImportResult(tuple(created), tuple(replaced))
