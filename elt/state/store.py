"""`StateStore`: the semantics of state and locks, the same over every backend.

Each state id (`<environment>:<tap>-to-<target>`) has a *completed* state (from the last successful run)
and a *partial* one (the latest state a target emitted, i.e. a durable point, in a run that has not
completed). What a run starts from is the completed state with the partial one merged on top.

A lock per state id lets one run at a time write it, across processes and machines sharing the backend.
Its holder refreshes a heartbeat while it runs; a lock whose heartbeat is older than the lock timeout
(the holder was killed) is expired, and the next run takes it over.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from elt.errors import LockedError, StateError
from elt.project import deep_merge
from elt.state.backend import LockHolder, StateBackend, StateRecord, now

DEFAULT_LOCK_TIMEOUT_SECONDS = 30.0
DEFAULT_LOCK_RETRY_SECONDS = 1.0
# The heartbeat beats several times per timeout, so one slow beat does not expire a live lock.
MAX_HEARTBEAT_SECONDS = 5.0


def state_id_for(environment: str | None, tap: str, target: str) -> str:
    return f"{environment or 'default'}:{tap}-to-{target}"


class StateStore:
    """Read and write state, and lock state ids, in one backend.

    `backend` is a `StateBackend`, or the path of a system database (the default backend). Get the
    store of a project with `elt.state.open_state_store(project)`.
    """

    def __init__(
        self,
        backend: StateBackend | Path,
        *,
        lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
        lock_retry_seconds: float = DEFAULT_LOCK_RETRY_SECONDS,
    ) -> None:
        if isinstance(backend, Path):
            from elt.state.systemdb import SystemDbBackend

            backend = SystemDbBackend(backend)
        self.backend = backend
        self.lock_timeout_seconds = float(lock_timeout_seconds)
        self.lock_retry_seconds = float(lock_retry_seconds)

    @property
    def label(self) -> str:
        """The backend, for messages (credentials masked)."""
        return self.backend.label

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state ---------------------------------------------------------------------------------------

    def list(self, pattern: str | None = None) -> list[StateRecord]:
        """All state records, optionally filtered by a glob on the state id."""
        records = sorted(self.backend.records(), key=lambda r: r.state_id)
        if pattern:
            records = [r for r in records if fnmatchcase(r.state_id, pattern)]
        return records

    def get(self, state_id: str) -> StateRecord | None:
        return self.backend.read(state_id)

    def require(self, state_id: str) -> StateRecord:
        record = self.get(state_id)
        if record is None:
            known = ", ".join(r.state_id for r in self.list()) or "none yet"
            raise StateError(f"no state for state id '{state_id}' (known: {known})")
        return record

    def save_partial(self, state_id: str, value: dict[str, Any]) -> None:
        """Record a durable point reached by a running sync."""
        previous = self.get(state_id)
        self.backend.write(StateRecord(state_id, previous.completed if previous else None, value, now()))

    def complete(self, state_id: str, value: dict[str, Any], *, merge: bool = True) -> None:
        """Make `value` the completed state (merged into the previous one unless merge=False)."""
        previous = self.get(state_id)
        completed = deep_merge(previous.completed or {}, value) if (previous and merge) else value
        self.backend.write(StateRecord(state_id, completed, None, now()))

    def set(self, state_id: str, value: dict[str, Any]) -> None:
        """Replace the state of `state_id` by `value` (as completed; no partial)."""
        _require_object(state_id, value)
        self.backend.write(StateRecord(state_id, value, None, now()))

    def merge(self, state_id: str, value: dict[str, Any]) -> StateRecord:
        """Deep-merge `value` into the state of `state_id` (created if none); returns the new record.

        It goes into the completed state, and into the partial one if there is one, so that what
        `value` says wins in the state the next run starts from.
        """
        _require_object(state_id, value)
        previous = self.get(state_id)
        completed = deep_merge(previous.completed or {}, value) if previous else value
        partial = deep_merge(previous.partial, value) if previous and previous.partial else None
        record = StateRecord(state_id, completed, partial, now())
        self.backend.write(record)
        return record

    def put(self, record: StateRecord) -> None:
        """Store `record` as it is (completed and partial), replacing any state of its id."""
        self.backend.write(record)

    def delete(self, state_id: str) -> bool:
        """Forget the state of `state_id`. False if there was none."""
        return self.backend.delete(state_id)

    def clear(self, state_id: str, stream: str | None = None) -> bool:
        """Forget the state of `state_id`, or only the bookmark of one stream. False if none."""
        if stream is None:
            return self.delete(state_id)
        record = self.get(state_id)
        if record is None:
            return False
        completed = _without_stream(record.completed, stream)
        partial = _without_stream(record.partial, stream)
        self.backend.write(StateRecord(state_id, completed, partial, now()))
        return True

    def copy(self, source: str, destination: str) -> StateRecord:
        """Give `destination` the state (completed and partial) of `source`; returns the new record."""
        record = self.require(source)
        copied = StateRecord(destination, record.completed, record.partial, now())
        self.backend.write(copied)
        return copied

    def move(self, source: str, destination: str) -> StateRecord:
        """Copy the state of `source` to `destination`, then forget `source`."""
        moved = self.copy(source, destination)
        if source != destination:
            self.backend.delete(source)
        return moved

    # -- locks ---------------------------------------------------------------------------------------

    def lock(
        self,
        state_id: str,
        *,
        run_id: str,
        wait: bool = False,
        on_wait: Callable[[LockHolder], None] | None = None,
    ) -> AbstractContextManager[None]:
        """Hold the lock of `state_id` for run `run_id` inside a `with` block.

        Raises LockedError naming the holder if another run holds it; with `wait`, polls every
        `lock_retry_seconds` until it is released or expires (calling `on_wait` with the holder once).
        A heartbeat thread refreshes the lock while the block runs; it is released on exit, also on
        exceptions. If the lock was lost meanwhile (the heartbeat stalled beyond the lock timeout and
        another run took it over), leaving the block raises LockedError.
        """
        return self._locked(state_id, run_id, wait, on_wait)

    def lock_all(self, state_ids: Iterable[str], *, run_id: str, wait: bool = False) -> ExitStack:
        """Hold the locks of several state ids (taken in sorted order, so two callers cannot deadlock)."""
        stack = ExitStack()
        try:
            for state_id in sorted(set(state_ids)):
                stack.enter_context(self.lock(state_id, run_id=run_id, wait=wait))
        except BaseException:
            stack.close()
            raise
        return stack

    def lock_holder(self, state_id: str) -> LockHolder | None:
        """Who holds the lock of `state_id`, None if nobody (an expired lock counts as none)."""
        holder = self.backend.read_lock(state_id)
        if holder is None or (holder.heartbeat_age or 0) > self.lock_timeout_seconds:
            return None
        return holder

    @property
    def heartbeat_seconds(self) -> float:
        return min(MAX_HEARTBEAT_SECONDS, self.lock_timeout_seconds / 4)

    @contextmanager
    def _locked(
        self, state_id: str, run_id: str, wait: bool, on_wait: Callable[[LockHolder], None] | None
    ) -> Iterator[None]:
        holder = LockHolder(state_id, run_id, os.getpid(), socket.gethostname(), now(), uuid.uuid4().hex)
        self._acquire(holder, wait, on_wait)
        heartbeat = _Heartbeat(self.backend, holder, self.heartbeat_seconds)
        heartbeat.start()
        try:
            yield
        except BaseException as exc:
            heartbeat.stop()
            try:
                self.backend.release_lock(holder)
            except Exception as release_error:
                exc.add_note(f"releasing the lock of {state_id} failed too: {release_error}")
            raise
        heartbeat.stop()
        if heartbeat.lost is not None:
            raise LockedError(
                f"the lock of state id '{state_id}' was taken over by {heartbeat.lost.describe()} while "
                f"run {run_id} held it: its heartbeat stalled for over {self.lock_timeout_seconds:g}s",
                hint="the state may mix both runs' bookmarks; raise state_backend.lock_timeout_seconds",
            )
        self.backend.release_lock(holder)

    def _acquire(self, holder: LockHolder, wait: bool, on_wait: Callable[[LockHolder], None] | None) -> None:
        told = False
        while True:
            current = self.backend.acquire_lock(holder, self.lock_timeout_seconds)
            if current is None:
                return
            if not wait:
                raise LockedError(
                    f"state id '{holder.state_id}' is locked by {current.describe()}",
                    hint=(
                        "another run of this state id is in progress: pass --wait to wait for it; if that "
                        f"run was killed, its lock expires {self.lock_timeout_seconds:g}s after its last "
                        "heartbeat (state_backend.lock_timeout_seconds)"
                    ),
                )
            if on_wait is not None and not told:
                on_wait(current)
                told = True
            time.sleep(self.lock_retry_seconds)


class _Heartbeat:
    """Refreshes a held lock every few seconds on a daemon thread."""

    def __init__(self, backend: StateBackend, holder: LockHolder, seconds: float) -> None:
        self.backend = backend
        self.holder = holder
        self.seconds = seconds
        self.lost: LockHolder | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"elt-lock {holder.state_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                if self.backend.refresh_lock(self.holder):
                    continue
            except Exception:
                # A failed beat (network blip) is retried at the next one; the lock only expires if the
                # backend stays unreachable for the whole timeout, and then we find out below.
                continue
            try:
                self.lost = self.backend.read_lock(self.holder.state_id) or self.holder
            except Exception:
                self.lost = self.holder
            return


def without_streams(state: dict[str, Any], streams: set[str]) -> dict[str, Any]:
    """`state` with the bookmarks of `streams` removed (for a full refresh of those streams)."""
    result = state
    for stream in streams:
        result = _without_stream(result, stream) or {}
    return result


def _without_stream(state: dict[str, Any] | None, stream: str) -> dict[str, Any] | None:
    if not state:
        return state
    result = dict(state)
    bookmarks = dict(result.get("bookmarks") or {})
    bookmarks.pop(stream, None)
    result["bookmarks"] = bookmarks
    if isinstance(result.get("currently_syncing"), str) and result["currently_syncing"] == stream:
        result["currently_syncing"] = None
    return result


def _require_object(state_id: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise StateError(f"state for '{state_id}' must be a JSON object, got {type(value).__name__}")
