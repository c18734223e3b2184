"""Run a chain of Singer processes, tap | [mappers |] target, and watch over it.

The tap's output goes through a relay in this process, which counts rows per stream and checks each
message (JSON, SCHEMA before RECORD, known types) before passing it on; mappers and the target are joined
by OS pipes, so every buffer between the processes is bounded. The target's STATE messages are handed to
`on_state` as they come. When a process fails, the processes upstream of it are stopped at once and the
ones downstream get the end of their input and a grace period to finish what they already had (a target
commits the rows it holds, so their STATE is still valid); nothing is left running and nothing hangs.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import unquote, urlparse

from elt.errors import PluginError, RunError
from elt.logs import RateMeter, Redactor, Reporter

_STREAM = re.compile(rb'"stream"\s*:\s*"((?:[^"\\]|\\.)*)"')
_KNOWN_TYPES = {"SCHEMA", "RECORD", "STATE", "ACTIVATE_VERSION", "BATCH"}
_TAIL = 200
STOP_GRACE_SECONDS = 5.0
DRAIN_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class Stage:
    """One process of the chain: the plugin's name (for messages) and its command line."""

    name: str
    args: list[str]


@dataclass
class ChainResult:
    rows: dict[str, int] = field(default_factory=dict)
    streams: list[str] = field(default_factory=list)
    states: int = 0
    last_state: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


class _Relay:
    """Counters and findings of the relay thread."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.streams: list[str] = []
        self.current: str | None = None
        self.schemas: set[str] = set()
        self.tap_states = 0
        self.fatal: str | None = None
        self.error: BaseException | None = None
        self.broken_pipe = False


def run_chain(
    stages: list[Stage],
    *,
    env: dict[str, str],
    cwd: str,
    on_state: Callable[[dict[str, Any]], None],
    reporter: Reporter,
    log: IO[str],
    redact: Redactor,
    timeout: float | None = None,
    input_state: dict[str, Any] | None = None,
    selected_streams: set[str] | None = None,
) -> ChainResult:
    """Run `stages` (tap first, target last) to the end; RunError naming the culprit on failure."""
    if len(stages) < 2:
        raise ValueError("a chain needs a tap and a target")
    tails: dict[str, deque[str]] = {s.name: deque(maxlen=_TAIL) for s in stages}
    log_lock = threading.Lock()
    procs = _start(stages, env, cwd)
    tap, downstream, target = procs[0], procs[1:], procs[-1]
    relay = _Relay()
    result = ChainResult()
    state_errors: list[BaseException] = []
    bookmarks_in = _bookmarks(input_state or {})

    def copy_stderr(name: str, stream: IO[bytes]) -> None:
        for raw in stream:
            line = redact(raw.decode("utf-8", "replace").rstrip())
            tails[name].append(line)
            with log_lock:
                log.write(f"{name} | {line}\n")

    def warn(message: str, **fields: Any) -> None:
        result.warnings.append(message)
        reporter.event("warning", f"warning: {message}", **fields)
        with log_lock:
            log.write(f"elt | warning: {message}\n")

    def forward() -> None:
        assert tap.stdout is not None and downstream[0].stdin is not None
        out = downstream[0].stdin
        name = stages[0].name
        number = 0
        try:
            for line in tap.stdout:
                number += 1
                # Most lines are RECORDs with "type" first: found without parsing the JSON.
                stream: str | None = None
                if line[:1] == b"{" and b'"RECORD"' in line[:64]:
                    match = _STREAM.search(line, 0, 512)
                    stream = match.group(1).decode() if match else _field(line, "stream")
                else:
                    text = line.strip()
                    if not text:
                        continue
                    try:
                        message = json.loads(text)
                    except ValueError:
                        shown = redact(text[:120].decode("utf-8", "replace"))
                        relay.fatal = (
                            f"{name} wrote a line that is not a Singer message (line {number}): {shown!r}"
                        )
                        break
                    kind = message.get("type") if isinstance(message, dict) else None
                    if kind not in _KNOWN_TYPES:
                        warn(
                            f"{name} sent a message of unknown type {kind!r} (line {number}); ignored",
                            plugin=name,
                            line=number,
                        )
                        continue
                    if kind == "RECORD":
                        stream = str(message.get("stream"))
                    elif kind == "SCHEMA":
                        relay.schemas.add(str(message.get("stream")))
                    elif kind == "STATE":
                        relay.tap_states += 1
                        _check_state(message, number)
                    elif kind == "BATCH":
                        batch_stream = str(message.get("stream"))
                        if batch_stream not in relay.schemas:
                            relay.fatal = (
                                f"{name} sent a BATCH for stream '{batch_stream}' before its SCHEMA "
                                f"(line {number} of its output)"
                            )
                            break
                        count = batch_rows(message)
                        if batch_stream not in relay.rows:
                            relay.rows[batch_stream] = 0
                            relay.streams.append(batch_stream)
                        relay.rows[batch_stream] += count
                        relay.current = batch_stream
                if stream is not None:
                    if stream not in relay.schemas:
                        relay.fatal = (
                            f"{name} sent a RECORD for stream '{stream}' before its SCHEMA "
                            f"(line {number} of its output)"
                        )
                        break
                    if stream not in relay.rows:
                        relay.rows[stream] = 0
                        relay.streams.append(stream)
                    relay.rows[stream] += 1
                    relay.current = stream
                out.write(line)
        except BrokenPipeError:
            relay.broken_pipe = True
        except BaseException as exc:  # reported by the caller
            relay.error = exc
        finally:
            try:
                out.close()
            except BrokenPipeError:
                relay.broken_pipe = True

    def _check_state(message: dict[str, Any], number: int) -> None:
        if selected_streams is None:
            return
        value = message.get("value")
        for stream, bookmark in _bookmarks(value if isinstance(value, dict) else {}).items():
            if stream not in selected_streams and bookmark != bookmarks_in.get(stream):
                warn(
                    f"{stages[0].name} moved the bookmark of stream '{stream}', which is not selected "
                    f"(line {number})",
                    plugin=stages[0].name,
                    stream=stream,
                    line=number,
                )

    def read_states() -> None:
        assert target.stdout is not None
        try:
            for raw in target.stdout:
                value = _state_value(raw)
                if value is None:
                    continue
                on_state(value)
                result.states += 1
                result.last_state = value
        except BaseException as exc:  # reported by the caller
            state_errors.append(exc)

    threads = [
        threading.Thread(target=copy_stderr, args=(s.name, p.stderr), daemon=True)
        for s, p in zip(stages, procs, strict=True)
    ]
    threads += [
        threading.Thread(target=forward, daemon=True),
        threading.Thread(target=read_states, daemon=True),
    ]
    for thread in threads:
        thread.start()

    culprit, timed_out = _supervise(stages, procs, relay, reporter, timeout)
    for thread in threads:
        thread.join(timeout=10)
    reporter.done_progress()
    result.rows, result.streams = relay.rows, relay.streams

    if state_errors:
        raise RunError(f"could not save the state a target emitted: {state_errors[0]}")
    if relay.error is not None:
        raise RunError(f"relaying messages from {stages[0].name} failed: {relay.error}")
    durable = (
        "state kept at the last point the target made durable"
        if result.states
        else "no state was saved by this run"
    )
    if timed_out:
        raise RunError(f"the sync timed out after {timeout:g}s and was stopped; {durable}")
    if relay.fatal:
        raise RunError(f"{relay.fatal}; the sync was stopped, {durable}")
    if culprit is not None:
        index = [s.name for s in stages].index(culprit)
        tail = summarize_stderr(tails[culprit]) + f"\n  full output: {log.name}"
        code = procs[index].returncode
        what = _describe_exit(code) if code != 0 else "exited before reading all its input"
        raise RunError(f"{culprit} failed ({what}); {durable}. Last lines of its stderr:\n{tail}")
    if relay.tap_states and not result.states:
        warn(f"{stages[-1].name} emitted no STATE: the bookmarks did not advance", plugin=stages[-1].name)
    return result


def batch_rows(message: dict[str, Any]) -> int:
    """Rows in the files of a BATCH message: Parquet footers say it without reading the data."""
    encoding = message.get("encoding") or {}
    if not isinstance(encoding, dict) or encoding.get("format") != "parquet":
        return 0
    import pyarrow.parquet as pq

    total = 0
    for url in message.get("manifest") or []:
        parsed = urlparse(str(url))
        if parsed.scheme not in ("", "file"):
            continue
        try:
            total += pq.ParquetFile(unquote(parsed.path)).metadata.num_rows
        except (OSError, ValueError):
            continue  # the target reports a file it cannot read
    return total


def _start(stages: list[Stage], env: dict[str, str], cwd: str) -> list[subprocess.Popen[bytes]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        previous: subprocess.Popen[bytes] | None = None
        for stage in stages[1:]:
            proc = subprocess.Popen(
                stage.args,
                cwd=cwd,
                env=env,
                stdin=previous.stdout if previous else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=1 << 16,
                preexec_fn=_die_with_parent,
            )
            if previous is not None and previous.stdout is not None:
                previous.stdout.close()  # the next process holds it now
            procs.append(proc)
            previous = proc
        tap = subprocess.Popen(
            stages[0].args,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=1 << 20,
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        for proc in procs:
            _stop(proc)
        raise PluginError(f"cannot start a connector: {exc}") from None
    return [tap, *procs]


def _die_with_parent() -> None:
    """In the child, before exec: be sent SIGTERM if elt dies, so no connector outlives its run."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _supervise(
    stages: list[Stage],
    procs: list[subprocess.Popen[bytes]],
    relay: _Relay,
    reporter: Reporter,
    timeout: float | None,
) -> tuple[str | None, bool]:
    """Wait for every process; stop what must be stopped. Returns (culprit, timed_out)."""
    meter = RateMeter()
    started = time.monotonic()
    culprit: str | None = None
    draining_since: float | None = None
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            if culprit is None:
                # Several may have failed; the most downstream one is the cause (upstream ones die
                # of the broken pipe it leaves).
                failed = [stages[i].name for i, c in enumerate(codes) if c != 0]
                culprit = failed[-1] if failed else None
            return culprit, False
        if timeout is not None and time.monotonic() - started > timeout:
            for proc in procs:
                _stop(proc)
            return culprit, True
        if culprit is None:
            for index, code in enumerate(codes):
                upstream_running = any(c is None for c in codes[:index])
                early_exit = code == 0 and upstream_running and relay.broken_pipe
                if code is not None and (code != 0 or early_exit):
                    culprit = stages[index].name
                    for proc in procs[:index]:
                        _stop(proc)
                    draining_since = time.monotonic()
                    break
        if relay.fatal and procs[0].poll() is None:
            _stop(procs[0])
            draining_since = draining_since or time.monotonic()
        if draining_since is not None and time.monotonic() - draining_since > DRAIN_GRACE_SECONDS:
            for proc in procs:
                _stop(proc)
        rows = sum(relay.rows.values())
        if relay.current:
            reporter.progress(f"  {relay.current}: {rows:,} rows, {meter.rate(rows):,.0f} rows/s")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _bookmarks(state: dict[str, Any]) -> dict[str, Any]:
    bookmarks = state.get("bookmarks")
    return bookmarks if isinstance(bookmarks, dict) else {}


def _field(line: bytes, key: str) -> str:
    try:
        return str(json.loads(line).get(key))
    except (ValueError, AttributeError):
        return "?"


def _state_value(raw: bytes) -> dict[str, Any] | None:
    text = raw.strip()
    if not text:
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    if message.get("type") == "STATE" and isinstance(message.get("value"), dict):
        return dict(message["value"])
    if "type" not in message:  # older targets print the bare state object
        return message
    return None


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit {code}"


_EXCEPTION_CLASS = re.compile(r"^(?:[A-Za-z_][\w]*\.)+(?=[A-Za-z_]\w*(?:Error|Exception|Exit)\b)")
_CHATTER = re.compile(r"\|\s*(?:INFO|DEBUG)\s*\|")


def summarize_stderr(lines: list[str] | deque[str], keep: int = 8) -> str:
    """The last lines of a connector's stderr without Python traceback frames, indented.

    Frames (indented lines, "Traceback …" headers) say where in the connector's code it failed,
    which helps its authors, not its users; the exception line itself says what went wrong.
    """
    kept = [
        _EXCEPTION_CLASS.sub("", line)
        for line in lines
        if line.strip()
        and not line[:1].isspace()
        and not line.startswith(("Traceback (most recent call last)", "During handling", "The above"))
        and not _CHATTER.search(line)
    ]
    return "\n".join("  " + line for line in kept[-keep:]) or "  (no output on stderr)"
