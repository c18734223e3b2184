"""State as JSON files in a folder (`state_backend.uri: file://DIR`).

One file per state id, `DIR/<state id>.json` (the id percent-encoded: `dev%3Atap-to-target.json`),
replaced atomically: written to a temporary file in DIR, fsynced, renamed over the old one.

The lock of a state id is `DIR/<state id>.lock`, created with O_CREAT|O_EXCL (atomic, also on NFS) and
holding the holder as JSON; the heartbeat touches its mtime. A lock file whose mtime is older than the
timeout is expired: the next run renames it away (only one rename of it can succeed), checks that what
it renamed is the expired lock it saw, and creates its own. Ages compare the file's mtime with this
machine's clock, so machines sharing DIR over a network need synchronised clocks.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

from elt.errors import StateError
from elt.state.backend import LockHolder, StateBackend, StateRecord, file_name

STATE_SUFFIX = ".json"
LOCK_SUFFIX = ".lock"


class FileBackend(StateBackend):
    """State files and lock files in `directory` (created when first written)."""

    def __init__(self, directory: Path, label: str | None = None) -> None:
        self.directory = directory
        self.label = label or f"file://{directory}"

    def _state_path(self, state_id: str) -> Path:
        return self.directory / (file_name(state_id) + STATE_SUFFIX)

    def _lock_path(self, state_id: str) -> Path:
        return self.directory / (file_name(state_id) + LOCK_SUFFIX)

    def read(self, state_id: str) -> StateRecord | None:
        return self._read_file(self._state_path(state_id))

    def _read_file(self, path: Path) -> StateRecord | None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read the state file {path}: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateError(f"the state file {path} is not valid JSON: {exc}") from None
        return StateRecord.from_json(data, str(path))

    def write(self, record: StateRecord) -> None:
        self._ensure_directory()
        _write_atomically(self._state_path(record.state_id), json.dumps(record.to_json(), indent=2) + "\n")

    def delete(self, state_id: str) -> bool:
        try:
            self._state_path(state_id).unlink()
        except FileNotFoundError:
            return False
        _fsync_directory(self.directory)
        return True

    def records(self) -> list[StateRecord]:
        if not self.directory.is_dir():
            return []
        found = (self._read_file(p) for p in self.directory.glob("*" + STATE_SUFFIX))
        return [r for r in found if r is not None]

    def acquire_lock(self, holder: LockHolder, timeout: float) -> LockHolder | None:
        self._ensure_directory()
        path = self._lock_path(holder.state_id)
        body = json.dumps(holder.to_json()).encode()
        for _ in range(100):  # each turn sees the lock change hands; bounded so we never spin forever
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                current = self._read_lock_file(path, holder.state_id)
                if current is None:
                    continue  # released between our create and our read
                if (current.heartbeat_age or 0) <= timeout:
                    return current
                _break_expired(path, current, timeout)
                continue
            try:
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            return None
        return self._read_lock_file(path, holder.state_id)

    def refresh_lock(self, holder: LockHolder) -> bool:
        path = self._lock_path(holder.state_id)
        current = self._read_lock_file(path, holder.state_id)
        if current is None or current.token != holder.token:
            return False
        os.utime(path)
        return True

    def release_lock(self, holder: LockHolder) -> None:
        path = self._lock_path(holder.state_id)
        current = self._read_lock_file(path, holder.state_id)
        if current is not None and current.token == holder.token:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def read_lock(self, state_id: str) -> LockHolder | None:
        return self._read_lock_file(self._lock_path(state_id), state_id)

    def _read_lock_file(self, path: Path, state_id: str) -> LockHolder | None:
        try:
            with open(path, "rb") as handle:
                age = time.time() - os.fstat(handle.fileno()).st_mtime
                raw = handle.read()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw) if raw else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = {}  # being written by its creator: a holder we cannot name yet
        return LockHolder.from_json(data, state_id, max(0.0, age))

    def _ensure_directory(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the state folder {self.directory}: {exc}") from None


def _break_expired(path: Path, expired: LockHolder, timeout: float) -> None:
    """Remove the expired lock at `path`, unless another run replaced it since we read it."""
    grave = path.with_name(f"{path.name}.expired-{uuid.uuid4().hex}")
    try:
        os.rename(path, grave)
    except FileNotFoundError:
        return  # another run broke it first
    try:
        with open(grave, "rb") as handle:
            moved_age = time.time() - os.fstat(handle.fileno()).st_mtime
            raw = handle.read()
        try:
            moved_token = json.loads(raw).get("token") if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            moved_token = None
        if moved_token != expired.token and moved_age <= timeout:
            # We renamed a live lock another run took a moment ago: put it back.
            with contextlib.suppress(FileExistsError):
                os.link(grave, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            grave.unlink()


def _write_atomically(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
