"""Run one sync: a tap's Singer messages piped into a target, with state bookmarks.

    plugin config ─► catalog (discover + selection) ─► state (completed ⊕ partial)
    tap ──RECORD/SCHEMA/STATE──► relay (counts rows per stream) ──► target
    target ──STATE (after rows before it are durable)──► saved as partial state
    success ─► the last STATE becomes the completed state

If either process fails, the other is stopped, the run fails naming the culprit and its last stderr
lines, and the state stays at the last point the target made durable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from elt.errors import EltError, PluginError, RunError
from elt.logs import RateMeter, Redactor, Reporter
from elt.plugins import Plugin, check_builtin_config, executable_path, find_plugin, secret_values
from elt.project import Project
from elt.singer import select_catalog, stream_names
from elt.state import StateStore, state_id_for, without_streams

_STREAM = re.compile(rb'"stream"\s*:\s*"((?:[^"\\]|\\.)*)"')
_STDERR_TAIL = 200


@dataclass(frozen=True)
class StreamStats:
    rows: int


@dataclass(frozen=True)
class SyncResult:
    """What a finished sync did; `to_json` is the shape of `elt sync --format json`."""

    state_id: str
    streams: dict[str, StreamStats]
    rows: int
    seconds: float
    state: dict[str, Any] | None = None
    log_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "state_id": self.state_id,
            "streams": {name: {"rows": s.rows} for name, s in self.streams.items()},
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Relay:
    """Counters shared between the relay thread and the progress ticker."""

    rows: dict[str, int] = field(default_factory=dict)
    streams_seen: list[str] = field(default_factory=list)
    current: str | None = None
    error: BaseException | None = None
    broken_pipe: bool = False


def run_sync(
    project: Project,
    tap_name: str,
    target_name: str,
    *,
    full_refresh: bool = False,
    select: tuple[str, ...] = (),
    reporter: Reporter | None = None,
    log_file: Path | None = None,
) -> SyncResult:
    """Sync `tap_name` into `target_name`; raise RunError (state kept at the durable point) on failure."""
    tap = find_plugin(project, tap_name, "extractors")
    target = find_plugin(project, target_name, "loaders")
    check_builtin_config(project, tap)
    check_builtin_config(project, target)
    tap_exe, target_exe = executable_path(project, tap), executable_path(project, target)
    redact = Redactor(secret_values(tap.config) | secret_values(target.config))
    reporter = reporter or Reporter(redact=redact)
    reporter.redact.add(redact.secrets)
    state_id = state_id_for(project.environment, tap.name, target.name)
    store = StateStore(project.system_db)
    started = time.monotonic()

    workdir = project.system_dir / "run" / re.sub(r"[^A-Za-z0-9_.-]", "_", state_id)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    log_file = log_file or (project.system_dir / "logs" / workdir.name / f"{stamp}.log")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        env = _process_env(project, tap, target)
        tap_config = _write_json(workdir / "tap.config.json", tap.config)
        target_config = _write_json(workdir / "target.config.json", _target_config(tap, target))
        catalog = _discover(tap, tap_exe, tap_config, env, project.root, redact, log_file)
        known = stream_names(catalog)
        wanted = _match_streams(select, known, tap.name) if select else None
        selected = select_catalog(catalog, tap.select, wanted, tap.metadata, tap.schema)
        catalog_file = _write_json(workdir / "catalog.json", selected)

        previous = store.get(state_id)
        state: dict[str, Any] = {} if previous is None else previous.effective
        if full_refresh:
            state = without_streams(state, wanted) if wanted else {}
        tap_args = [str(tap_exe), "--config", str(tap_config), "--catalog", str(catalog_file)]
        if state:
            tap_args += ["--state", str(_write_json(workdir / "state.json", state))]
        reporter.event(
            "sync_started",
            f"syncing {tap.name} → {target.name} ({state_id})" + (" — full refresh" if full_refresh else ""),
            state_id=state_id,
            tap=tap.name,
            target=target.name,
            full_refresh=full_refresh,
        )
        with log_file.open("a", encoding="utf-8") as log:
            relay, last_state = _pipe(
                tap, tap_args, target, [str(target_exe), "--config", str(target_config)],
                env, project.root, store, state_id, reporter, log, redact,
            )  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    if last_state is not None:
        store.complete(state_id, last_state, merge=not (full_refresh and not wanted))
    elif previous is not None and previous.partial is not None:
        store.complete(state_id, previous.effective)
    seconds = time.monotonic() - started
    streams = {name: StreamStats(relay.rows.get(name, 0)) for name in relay.streams_seen}
    for name in wanted or _selected_streams(selected):
        streams.setdefault(name, StreamStats(0))
    return SyncResult(
        state_id=state_id,
        streams=dict(sorted(streams.items())),
        rows=sum(relay.rows.values()),
        seconds=seconds,
        state=last_state,
        log_file=str(log_file),
    )


def _selected_streams(catalog: dict[str, Any]) -> list[str]:
    names = []
    for entry in catalog.get("streams", []):
        for item in entry.get("metadata", []):
            if not item.get("breadcrumb") and item.get("metadata", {}).get("selected"):
                names.append(entry.get("tap_stream_id") or entry["stream"])
    return names


def _match_streams(patterns: tuple[str, ...], known: list[str], tap: str) -> set[str]:
    from fnmatch import fnmatchcase

    wanted: set[str] = set()
    for pattern in patterns:
        matched = {name for name in known if fnmatchcase(name, pattern)}
        if not matched:
            raise EltError(
                f"--select '{pattern}' matches no stream of {tap}",
                hint=f"streams: {', '.join(known) or 'none'}",
            )
        wanted |= matched
    return wanted


def _target_config(tap: Plugin, target: Plugin) -> dict[str, Any]:
    config = dict(target.config)
    # One schema per tap, as Meltano does: a built-in target loads into the tap's namespace.
    if target.builtin and "default_target_schema" not in config:
        config["default_target_schema"] = tap.load_schema
    return config


def _process_env(project: Project, tap: Plugin, target: Plugin) -> dict[str, str]:
    env = dict(os.environ)
    env.update(project.env())
    env.update(tap.env)
    env.update(target.env)
    env["ELT_EXTRACTOR"] = tap.name
    env["ELT_LOADER"] = target.name
    env["ELT_ENVIRONMENT"] = project.environment or ""
    # Meltano's name for it, which many PyPI targets' configs refer to.
    env.setdefault("MELTANO_EXTRACT__LOAD_SCHEMA", tap.load_schema)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _write_json(path: Path, value: Any) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
    return path


def _discover(
    tap: Plugin, exe: Path, config: Path, env: dict[str, str], cwd: Path, redact: Redactor, log_file: Path
) -> dict[str, Any]:
    proc = subprocess.run(
        [str(exe), "--config", str(config), "--discover"],
        cwd=cwd,
        env=env,
        capture_output=True,
        check=False,
    )
    lines = [redact(line) for line in proc.stderr.decode("utf-8", "replace").splitlines()]
    with log_file.open("a", encoding="utf-8") as log:
        log.writelines(f"{tap.name} | {line}\n" for line in lines)
    if proc.returncode != 0:
        raise RunError(
            f"{tap.name} failed to discover its streams (exit {proc.returncode}):\n"
            f"{summarize_stderr(lines)}\n  full output: {log_file}"
        )
    try:
        catalog = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise RunError(f"{tap.name} --discover printed no JSON catalog: {exc}") from None
    if not isinstance(catalog, dict) or not isinstance(catalog.get("streams"), list):
        raise RunError(f"{tap.name} --discover printed a catalog without a 'streams' list")
    return catalog


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


def _pipe(
    tap: Plugin,
    tap_args: list[str],
    target: Plugin,
    target_args: list[str],
    env: dict[str, str],
    cwd: Path,
    store: StateStore,
    state_id: str,
    reporter: Reporter,
    log: IO[str],
    redact: Redactor,
) -> tuple[_Relay, dict[str, Any] | None]:
    tails: dict[str, deque[str]] = {
        tap.name: deque(maxlen=_STDERR_TAIL),
        target.name: deque(maxlen=_STDERR_TAIL),
    }
    log_lock = threading.Lock()
    try:
        target_proc = subprocess.Popen(
            target_args, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, bufsize=1 << 20,
        )  # fmt: skip
        tap_proc = subprocess.Popen(
            tap_args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            bufsize=1 << 20,
        )  # fmt: skip
    except OSError as exc:
        raise PluginError(f"cannot start a connector: {exc}") from None
    assert tap_proc.stdout and tap_proc.stderr and target_proc.stdin
    assert target_proc.stdout and target_proc.stderr
    relay = _Relay()
    states: list[dict[str, Any]] = []
    state_error: list[BaseException] = []

    def copy_stderr(name: str, stream: IO[bytes]) -> None:
        for raw in stream:
            line = redact(raw.decode("utf-8", "replace").rstrip())
            tails[name].append(line)
            with log_lock:
                log.write(f"{name} | {line}\n")

    def forward() -> None:
        out = target_proc.stdin
        assert out is not None and tap_proc.stdout is not None
        try:
            for line in tap_proc.stdout:
                if b'"RECORD"' in line[:64]:
                    match = _STREAM.search(line, 0, 512)
                    name = match.group(1).decode() if match else _stream_of(line)
                    if name not in relay.rows:
                        relay.rows[name] = 0
                        relay.streams_seen.append(name)
                    relay.rows[name] += 1
                    relay.current = name
                out.write(line)
        except BrokenPipeError:
            relay.broken_pipe = True
        except BaseException as exc:  # recorded and re-raised by the caller
            relay.error = exc
        finally:
            try:
                out.close()
            except BrokenPipeError:
                relay.broken_pipe = True

    def read_states() -> None:
        assert target_proc.stdout is not None
        try:
            for raw in target_proc.stdout:
                value = _state_value(raw)
                if value is None:
                    continue
                store.save_partial(state_id, value)
                states.append(value)
        except BaseException as exc:  # recorded and re-raised by the caller
            state_error.append(exc)

    threads = [
        threading.Thread(target=copy_stderr, args=(tap.name, tap_proc.stderr), daemon=True),
        threading.Thread(target=copy_stderr, args=(target.name, target_proc.stderr), daemon=True),
        threading.Thread(target=forward, daemon=True),
        threading.Thread(target=read_states, daemon=True),
    ]
    for thread in threads:
        thread.start()

    meter = RateMeter()
    culprit: str | None = None
    while True:
        tap_code, target_code = tap_proc.poll(), target_proc.poll()
        if target_code is not None and tap_code is None and (target_code != 0 or relay.broken_pipe):
            culprit = target.name
            _stop(tap_proc)
            continue
        if tap_code is not None and target_code is not None:
            break
        rows = sum(relay.rows.values())
        if relay.current:
            reporter.progress(f"  {relay.current}: {rows:,} rows, {meter.rate(rows):,.0f} rows/s")
        time.sleep(0.2)
    for thread in threads:
        thread.join(timeout=10)
    reporter.done_progress()

    if state_error:
        raise RunError(f"could not save the state of {state_id}: {state_error[0]}")
    if relay.error is not None:
        raise RunError(f"relaying messages from {tap.name} to {target.name} failed: {relay.error}")
    failures = []
    if target_proc.returncode != 0 and culprit is None:
        culprit = target.name
    for name, proc in ((tap.name, tap_proc), (target.name, target_proc)):
        if proc.returncode != 0 and not (name == tap.name and culprit == target.name):
            failures.append(name)
    if failures or culprit:
        who = culprit or failures[0]
        code = (target_proc if who == target.name else tap_proc).returncode
        tail = summarize_stderr(tails[who]) + f"\n  full output: {log.name}"
        durable = (
            "state kept at the last point the target made durable"
            if states
            else ("no state was saved by this run")
        )
        raise RunError(f"{who} failed ({_describe_exit(code)}); {durable}. Last lines of its stderr:\n{tail}")
    return relay, (states[-1] if states else None)


def _stream_of(line: bytes) -> str:
    try:
        return str(json.loads(line).get("stream"))
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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"exit {code}"
    return f"exit {code}"
