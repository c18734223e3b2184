"""Per-stream bookmarks of syncs, kept in a state backend, and locks that let one run at a time write them.

Each state id (`<environment>:<tap>-to-<target>`) has a *completed* state (from the last successful run)
and a *partial* one (the latest state a target emitted, i.e. a durable point, in a run that has not
completed). What a run starts from is the completed state with the partial one merged on top.

    store = open_state_store(project)          # the backend elt.yml's state_backend.uri names
    with store.lock(state_id, run_id=run_id):  # one run per state id; LockedError names the holder
        store.save_partial(state_id, state)    # ... as the target makes rows durable
        store.complete(state_id, state)        # when the run succeeds

| module | concern |
|---|---|
| `store` | `StateStore`: completed/partial semantics, locks with a heartbeat, the same over every backend |
| `backend` | `StateRecord`, `LockHolder`, and `StateBackend`, the few operations backends implement |
| `systemdb`, `files`, `postgres`, `s3` | the backends: `systemdb`, `file://DIR`, `postgresql://…`, `s3://…` |
| `settings` | `open_state_store`: `state_backend` settings of elt.yml to a store |
| `transfer`, `meltano` | export/import files, and state read from a Meltano project |
"""

from elt.state.backend import LockHolder, StateBackend, StateRecord
from elt.state.settings import open_state_store
from elt.state.store import StateStore, state_id_for, without_streams

__all__ = [
    "LockHolder",
    "StateBackend",
    "StateRecord",
    "StateStore",
    "open_state_store",
    "state_id_for",
    "without_streams",
]
