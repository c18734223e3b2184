"""What a run tells the user while it works.

On a terminal: readable lines and a live progress line (rows, rate, stream) on stderr. Elsewhere (CI,
cron, pipes): one JSON object per event on stderr, and nothing else. Secrets known to the run are
masked in everything that goes out.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

MASK = "****"
# Shorter values are not registered: masking every "abc" of every log line would hide more than it keeps.
MIN_SECRET_LENGTH = 4

_registered: set[str] = set()
_registered_sorted: tuple[str, ...] = ()
_registry_version = 0
_registry_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Mask `value` in everything this process writes from now on: every `Redactor`, `mask`, run records.

    Its JSON-escaped and URL-encoded forms count too, since a value is often written inside JSON text or a
    URL. `${secret:…}` values are registered as they are resolved (elt/secrets/).
    """
    global _registered_sorted, _registry_version
    if len(value) < MIN_SECRET_LENGTH:
        return
    forms = {value, json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value)}
    with _registry_lock:
        if forms <= _registered:
            return
        _registered.update(forms)
        _registered_sorted = tuple(sorted(_registered, key=len, reverse=True))
        _registry_version += 1


def mask(text: str) -> str:
    """`text` with every registered secret value replaced by MASK."""
    for secret in _registered_sorted:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_json(value: Any) -> Any:
    """`value` (JSON-like) with every string masked, keys included."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask(str(k)): mask_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_json(v) for v in value]
    return value


class Redactor:
    """Masks secret values in text: its own and those registered with the process (`register_secret`)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._merged: tuple[str, ...] = ()
        self._version = -1

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({*self.secrets, *(s for s in secrets if s)}, key=len, reverse=True)
        self._version = -1

    def __call__(self, text: str) -> str:
        if self._version != _registry_version:
            # longest first, so that a secret containing another is masked whole
            self._merged = tuple(sorted({*self.secrets, *_registered_sorted}, key=len, reverse=True))
            self._version = _registry_version
        for secret in self._merged:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class MaskedStream(io.TextIOBase):
    """A text stream that masks registered secrets, a line at a time, before they reach `inner`.

    A step's attempt writes its log through one (sys.stdout and sys.stderr), so that whatever a step
    prints, a traceback included, reaches the log file masked.
    """

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            lines, _, self._pending = self._pending.rpartition("\n")
            self.inner.write(mask(lines + "\n"))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.inner.write(mask(self._pending))
            self._pending = ""
        self.inner.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8")


class Reporter:
    """Events and progress of a run, rendered for a terminal or as JSON lines."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        redact: Redactor | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.redact = redact or Redactor()
        self._lock = threading.Lock()
        self._progress_shown = False

    def event(self, event: str, message: str, **fields: Any) -> None:
        """A notable thing happened: `message` for people, `event` + `fields` for machines."""
        with self._lock:
            self._clear_progress()
            if self.tty:
                self.stream.write(self.redact(message) + "\n")
            else:
                record = {
                    "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "event": event,
                }
                record.update(fields)
                record["message"] = message
                self.stream.write(self.redact(json.dumps(record, default=str)) + "\n")
            self.stream.flush()

    def progress(self, text: str) -> None:
        """Replace the live progress line (terminal only)."""
        if not self.tty:
            return
        with self._lock:
            self.stream.write("\r\x1b[2K" + self.redact(text))
            self.stream.flush()
            self._progress_shown = True

    def done_progress(self) -> None:
        with self._lock:
            self._clear_progress()

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.stream.write("\r\x1b[2K")
            self._progress_shown = False


class RateMeter:
    """Rows per second over the life of a counter."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def rate(self, rows: int) -> float:
        elapsed = time.monotonic() - self.started
        return rows / elapsed if elapsed > 0 else 0.0
