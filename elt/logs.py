"""What a run tells the user while it works.

On a terminal: readable lines and a live progress line (rows, rate, stream) on stderr. Elsewhere (CI,
cron, pipes): one JSON object per event on stderr, and nothing else. Secrets known to the run are
masked in everything that goes out.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

MASK = "****"


class Redactor:
    """Masks secret values in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({*self.secrets, *(s for s in secrets if s)}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


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
