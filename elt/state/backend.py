"""What a state backend stores, and the few operations in which backends differ.

A backend keeps one `StateRecord` per state id and one lock per state id. Everything else (how partial
and completed state combine, waiting for a lock, the heartbeat) lives in `StateStore`, the same for all.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from elt.errors import StateError
from elt.project import deep_merge


@dataclass(frozen=True)
class StateRecord:
    """What is stored for one state id."""

    state_id: str
    completed: dict[str, Any] | None
    partial: dict[str, Any] | None
    updated_at: str

    @property
    def effective(self) -> dict[str, Any]:
        """The state a run resumes from."""
        return deep_merge(self.completed or {}, self.partial or {})

    def to_json(self) -> dict[str, Any]:
        return {"state_id": self.state_id, "completed": self.completed, "partial": self.partial,
                "updated_at": self.updated_at}  # fmt: skip

    @classmethod
    def from_json(cls, data: Any, where: str) -> StateRecord:
        """A record from what `to_json` wrote; StateError naming `where` if it is not that."""
        if not isinstance(data, dict) or not isinstance(data.get("state_id"), str):
            raise StateError(f"{where}: not a state record (expected an object with a state_id)")
        for key in ("completed", "partial"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise StateError(f"{where}: '{key}' must be a JSON object or null")
        return cls(data["state_id"], data.get("completed"), data.get("partial"),
                   str(data.get("updated_at") or now()))  # fmt: skip


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or asks for) the lock of a state id.

    `token` is unique to one acquisition, so a run only ever refreshes or releases its own lock, even
    after another run took an expired one over. `heartbeat_age` is how many seconds ago the holder last
    refreshed it, as seen by whoever read the lock (None for a lock being asked for).
    """

    state_id: str
    run_id: str
    pid: int
    host: str
    since: str
    token: str
    heartbeat_age: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("heartbeat_age")
        return data

    @classmethod
    def from_json(cls, data: Any, state_id: str, heartbeat_age: float | None) -> LockHolder:
        """A holder from a stored lock; an unreadable one (half written) is an unknown holder."""
        if not isinstance(data, dict):
            data = {}
        return cls(
            state_id=state_id,
            run_id=str(data.get("run_id") or "unknown"),
            pid=int(data.get("pid") or 0),
            host=str(data.get("host") or "unknown host"),
            since=str(data.get("since") or "unknown"),
            token=str(data.get("token") or ""),
            heartbeat_age=heartbeat_age,
        )

    def describe(self) -> str:
        """`run R (pid 12 on host, since 2024-…, last heartbeat 3s ago)` for messages."""
        beat = "" if self.heartbeat_age is None else f", last heartbeat {self.heartbeat_age:.1f}s ago"
        return f"run {self.run_id} (pid {self.pid} on {self.host}, since {self.since}{beat})"


class StateBackend(ABC):
    """Where state records and locks live. Subclasses implement storage; `StateStore` the semantics."""

    #: The backend's URI with any password masked, for messages.
    label: str = ""

    @abstractmethod
    def read(self, state_id: str) -> StateRecord | None:
        """The record of `state_id`, None if there is none."""

    @abstractmethod
    def write(self, record: StateRecord) -> None:
        """Create or replace the record of `record.state_id` (all or nothing)."""

    @abstractmethod
    def delete(self, state_id: str) -> bool:
        """Remove the record of `state_id`; False if there was none."""

    @abstractmethod
    def records(self) -> list[StateRecord]:
        """Every record, in any order."""

    @abstractmethod
    def acquire_lock(self, holder: LockHolder, timeout: float) -> LockHolder | None:
        """Take the lock of `holder.state_id` for `holder`, atomically, unless a live one exists.

        A lock whose heartbeat is older than `timeout` seconds is expired and is taken over. Returns None
        when `holder` now holds the lock, else the current holder.
        """

    @abstractmethod
    def refresh_lock(self, holder: LockHolder) -> bool:
        """Renew the heartbeat of `holder`'s lock; False if it is no longer `holder`'s."""

    @abstractmethod
    def release_lock(self, holder: LockHolder) -> None:
        """Remove the lock if it is still `holder`'s."""

    @abstractmethod
    def read_lock(self, state_id: str) -> LockHolder | None:
        """The holder of the lock of `state_id` (live or expired), None if it is not locked."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing open
        """Release connections the backend holds."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def file_name(state_id: str) -> str:
    """A state id as a file or object name: readable, no separators (`dev%3Atap-to-target`)."""
    return quote(state_id, safe="-_.@+=,")


# Up to the last "@": an AWS secret key may hold "/" and an unencoded password "@".
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@]*):(?P<secret>.*)@")


def mask_uri(uri: str) -> str:
    """`uri` with the password (or secret key) in it replaced by ****."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:****@", uri)
