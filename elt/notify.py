"""Webhook notifications of pipeline runs: `notify:` in a pipeline (or at the top of elt.yml).

    notify:
      - url: https://hooks.example.com/elt
        on: [failure, retry]          # success | failure | retry; default [failure]
        headers: {Authorization: "Bearer ${HOOK_TOKEN}"}
        timeout: 10                   # seconds per delivery attempt; default 10

Each event is POSTed as one JSON object (`payload` below). A hook that cannot be reached or answers with an
error is retried twice, then reported as a warning: a notification never fails the run it reports on.
Secret values known to the run are masked in the payload.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from elt.errors import EltError

EVENTS = ("success", "failure", "retry")
DEFAULT_EVENTS = frozenset({"failure"})
DEFAULT_TIMEOUT = 10.0
DELIVERY_ATTEMPTS = 3
_BACKOFF_SECONDS = 0.5


@dataclass(frozen=True)
class Hook:
    """One webhook and the events it wants."""

    url: str
    events: frozenset[str] = DEFAULT_EVENTS
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT


def hooks_from_config(entries: Any, where: str) -> list[Hook]:
    """The hooks of a `notify:` list; EltError naming `where` (e.g. `pipelines.daily.notify`) if malformed."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise EltError(f"{where}: expected a list of webhooks, got {type(entries).__name__}")
    hooks = []
    for index, entry in enumerate(entries):
        at = f"{where}[{index}]"
        if isinstance(entry, str):
            entry = {"url": entry}
        if not isinstance(entry, Mapping) or not isinstance(entry.get("url"), str):
            raise EltError(f"{at}: expected a mapping with a `url`")
        url = entry["url"]
        if not url.startswith(("http://", "https://")):
            raise EltError(f"{at}.url: expected an http:// or https:// address, got {url!r}")
        events = entry.get("on", sorted(DEFAULT_EVENTS))
        events = [events] if isinstance(events, str) else events
        unknown = [event for event in events if event not in EVENTS]
        if unknown or not events:
            raise EltError(f"{at}.on: expected some of {', '.join(EVENTS)}, got {events!r}")
        headers = entry.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise EltError(f"{at}.headers: expected a mapping of header names to values")
        timeout = entry.get("timeout", DEFAULT_TIMEOUT)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise EltError(f"{at}.timeout: expected a number of seconds above 0, got {timeout!r}")
        hooks.append(
            Hook(url, frozenset(events), {str(k): str(v) for k, v in headers.items()}, float(timeout))
        )
    return hooks


def payload(
    event: str,
    *,
    pipeline: str,
    run_id: str,
    environment: str | None,
    status: str,
    error: str | None = None,
    step: str | None = None,
    attempt: int | None = None,
    steps: Iterable[Mapping[str, Any]] = (),
    started_at: str | None = None,
    ended_at: str | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """The JSON body of a notification."""
    body: dict[str, Any] = {
        "event": event,
        "pipeline": pipeline,
        "run_id": run_id,
        "environment": environment,
        "status": status,
        "error": error,
        "started_at": started_at,
        "ended_at": ended_at,
        "seconds": None if seconds is None else round(seconds, 3),
        "steps": [dict(s) for s in steps],
    }
    if step is not None:
        body["step"] = step
        body["attempt"] = attempt
    return body


def send(
    hooks: Iterable[Hook],
    event: str,
    body: Mapping[str, Any],
    *,
    warn: Callable[[str], None],
    redact: Callable[[str], str] = lambda text: text,
) -> int:
    """POST `body` to each hook that wants `event`; how many accepted it. Failures go to `warn`."""
    data = redact(json.dumps(body, default=str)).encode()
    delivered = 0
    for hook in hooks:
        if event not in hook.events:
            continue
        problem = _deliver(hook, data)
        if problem is None:
            delivered += 1
        else:
            warn(redact(f"notification '{event}' to {hook.url} failed: {problem}"))
    return delivered


def _deliver(hook: Hook, data: bytes) -> str | None:
    """None once the hook answered 2xx, else what went wrong the last time."""
    problem = "not attempted"
    for attempt in range(DELIVERY_ATTEMPTS):
        if attempt:
            time.sleep(_BACKOFF_SECONDS * 2 ** (attempt - 1))
        request = urllib.request.Request(
            hook.url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "elt", **hook.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=hook.timeout) as response:  # noqa: S310 (http(s) only)
                response.read()
            return None
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code} {exc.reason}"
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                return problem  # the hook refuses this request; sending it again changes nothing
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            problem = f"{type(reason).__name__}: {reason}"
    return f"{problem} (after {DELIVERY_ATTEMPTS} attempts)"
