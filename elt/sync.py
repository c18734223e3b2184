"""Run one sync: a tap's Singer messages piped into a target, with state bookmarks.

    plugin config ─► catalog (discover + selection) ─► state (completed ⊕ partial)
    tap ──RECORD/SCHEMA/STATE──► relay (counts rows per stream) ──► target
    target ──STATE (after rows before it are durable)──► saved as partial state
    success ─► the last STATE becomes the completed state

If either process fails, the other is stopped, the run fails naming the culprit and its last stderr
lines, and the state stays at the last point the target made durable.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from elt import handoff, inprocess
from elt.chain import ChainResult, Stage, run_chain, summarize_stderr
from elt.errors import EltError, RunError
from elt.logs import Redactor, Reporter
from elt.plugins import Plugin, check_builtin_config, executable_path, find_plugin, secret_values
from elt.project import Project
from elt.singer import StreamSelection, select_catalog, selection_report, stream_names
from elt.state import LockHolder, StateRecord, open_state_store, state_id_for, without_streams

if TYPE_CHECKING:
    from elt.lineage.openlineage import SyncEvents

STATE_STRATEGIES = ("auto", "merge", "overwrite")
# Built-in connectors that speak the fast path (Parquet BATCH messages, docs/connectors.md).
BATCH_TAPS = frozenset({"tap-files", "tap-postgres", "tap-mysql"})
BATCH_TARGETS = frozenset({"target-duckdb", "target-postgres"})
BATCH_SIZE_ROWS = {
    # Two of DuckDB's 122,880-row row groups: DuckDB writes the row groups of so large an insert
    # straight to the database file, where a smaller one goes through its WAL and is written again
    # at the checkpoint (1M rows: 0.38 s in batches of 245,760, 0.71 s in batches of 100,000).
    "target-duckdb": 245_760,
    "target-postgres": 100_000,
}
IN_PROCESS = "in-process"
PARQUET = "parquet"
FAST_PATHS = {IN_PROCESS: "Arrow batches, tap and target in one process", PARQUET: "Parquet batch files"}


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
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "state_id": self.state_id,
            "streams": {name: {"rows": s.rows} for name, s in self.streams.items()},
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
        }


def run_sync(
    project: Project,
    tap_name: str,
    target_name: str,
    *,
    mappers: tuple[str, ...] = (),
    full_refresh: bool = False,
    select: tuple[str, ...] = (),
    state_strategy: str = "auto",
    refresh_catalog: bool = False,
    timeout: float | None = None,
    wait: bool = False,
    run_id: str | None = None,
    reporter: Reporter | None = None,
    log_file: Path | None = None,
) -> SyncResult:
    """Sync `tap_name` [through `mappers`] into `target_name`, resuming from its state bookmarks.

    `state_strategy` says what the run's final state does to the stored one: `overwrite` replaces it,
    `merge` merges it in (bookmarks of streams this run did not touch stay), `auto` merges for a run
    restricted with `select` and overwrites otherwise. Only one sync of a state id runs at a time:
    another one fails at once with LockedError, or waits for it with `wait`. Raises RunError on failure,
    with the state kept at the last point the target made durable.
    """
    if state_strategy not in STATE_STRATEGIES:
        raise EltError(
            f"unknown state strategy '{state_strategy}', expected one of {', '.join(STATE_STRATEGIES)}"
        )
    tap = find_plugin(project, tap_name, "extractors")
    mapper_plugins = [find_plugin(project, name, "mappers") for name in mappers]
    target = find_plugin(project, target_name, "loaders")
    for plugin in (tap, *mapper_plugins, target):
        check_builtin_config(project, plugin)
    executables = [executable_path(project, p) for p in (tap, *mapper_plugins, target)]
    secrets: set[str] = set()
    for plugin in (tap, *mapper_plugins, target):
        secrets |= secret_values(plugin.config)
    reporter = reporter or Reporter()
    reporter.redact.add(secrets)
    state_id = state_id_for(project.environment, tap.name, target.name)
    started = time.monotonic()

    def waiting(holder: LockHolder) -> None:
        reporter.event(
            "waiting_for_lock",
            f"waiting for run {holder.run_id} (pid {holder.pid} on {holder.host}) to release {state_id}",
            state_id=state_id,
            holder=holder.run_id,
        )

    from elt.lineage.openlineage import sync_events

    events = sync_events(project, tap, target, reporter)  # OpenLineage; does nothing unless configured
    with (
        open_state_store(project) as store,
        store.lock(state_id, run_id=run_id or "sync", wait=wait, on_wait=waiting),
    ):
        try:
            result = _locked_sync(
                project, tap, mapper_plugins, target, executables, store, state_id, started, reporter,
                log_file, full_refresh, select, state_strategy, refresh_catalog, timeout, events,
            )  # fmt: skip
        except BaseException as error:
            events.fail(error)
            raise
        events.complete(result)
        return result


def sync_partition(
    project: Project,
    tap_name: str,
    target_name: str,
    stream: str,
    *,
    tap_partition: dict[str, Any],
    target_partition: dict[str, Any],
    reporter: Reporter | None = None,
    timeout: float | None = None,
    log_file: Path | None = None,
) -> SyncResult:
    """Sync one range of one stream (elt/partitions.py): the tap's config gets `tap_partition` (the
    rows to read), the target's `target_partition` (the partition id its ledger records).

    It reads no state, writes none and takes no lock: the partitioned sync's commit step moves the
    stream's bookmark, so that the partitions of one stream run side by side.
    """
    tap = find_plugin(project, tap_name, "extractors")
    target = find_plugin(project, target_name, "loaders")
    for plugin in (tap, target):
        check_builtin_config(project, plugin)
    tap = replace(tap, config={**tap.config, "partition": tap_partition})
    target = replace(target, config={**target.config, "partition": target_partition})
    executables = [executable_path(project, p) for p in (tap, target)]
    reporter = reporter or Reporter()
    reporter.redact.add(secret_values(tap.config) | secret_values(target.config))
    state_id = state_id_for(project.environment, tap.name, target.name)
    # a folder of its own: the partitions of one state id (a partition delivered twice too) run at once
    token = uuid.uuid4().hex[:12]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    folder = re.sub(r"[^A-Za-z0-9_.-]", "_", state_id)
    log_file = log_file or project.system_dir / "logs" / folder / f"{stamp}-partition-{token}.log"
    from elt.lineage.openlineage import SyncEvents

    return _locked_sync(
        project, tap, [], target, executables, _NO_STATE, state_id, time.monotonic(), reporter, log_file,
        False, (glob.escape(stream),), "merge", False, timeout, SyncEvents(None, project, tap, target),
        workdir_name=f"{state_id}-{token}",
    )  # fmt: skip


class _StateIO(Protocol):
    """What a sync reads and writes of its state id (a StateStore's methods)."""

    def get(self, state_id: str) -> StateRecord | None: ...

    def save_partial(self, state_id: str, value: dict[str, Any]) -> None: ...

    def complete(self, state_id: str, value: dict[str, Any], *, merge: bool = True) -> None: ...


class _NoState:
    """No state in, none kept: a partition's sync (its bookmark is the commit step's business)."""

    def get(self, state_id: str) -> StateRecord | None:
        return None

    def save_partial(self, state_id: str, value: dict[str, Any]) -> None:
        return None

    def complete(self, state_id: str, value: dict[str, Any], *, merge: bool = True) -> None:
        return None


_NO_STATE = _NoState()


def _locked_sync(
    project: Project,
    tap: Plugin,
    mapper_plugins: list[Plugin],
    target: Plugin,
    executables: list[Path],
    store: _StateIO,
    state_id: str,
    started: float,
    reporter: Reporter,
    log_file: Path | None,
    full_refresh: bool,
    select: tuple[str, ...],
    state_strategy: str,
    refresh_catalog: bool,
    timeout: float | None,
    events: SyncEvents,
    workdir_name: str | None = None,
) -> SyncResult:
    redact = reporter.redact
    workdir = project.system_dir / "run" / re.sub(r"[^A-Za-z0-9_.-]", "_", workdir_name or state_id)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    log_file = log_file or (project.system_dir / "logs" / workdir.name / f"{stamp}.log")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, mode=0o700)
    try:
        env = process_env(project, tap, target)
        fast = fast_path(tap, mapper_plugins, target)
        batches = handoff.ROOT if fast == IN_PROCESS else (workdir / "batches").resolve().as_uri()
        tap_settings = {**tap.config, **(_batch_config(batches, target) if fast else {})}
        if fast:
            reporter.event("fast_path", f"columnar fast path: {FAST_PATHS[fast]}", state_id=state_id)
        if fast == PARQUET:
            (workdir / "batches").mkdir()
        tap_config = write_json(workdir / "tap.config.json", tap_settings)
        if fast == IN_PROCESS:
            with log_file.open("a", encoding="utf-8") as log, connector_context(project, env):
                catalog = inprocess.discover(tap.name, str(tap.builtin), tap_settings, log, redact)
        else:
            catalog = tap_catalog(
                project, tap, executables[0], tap_config, env, redact, log_file, refresh_catalog
            )
        known = stream_names(catalog)
        wanted = _match_streams(select, known, tap.name) if select else None
        selected = select_catalog(catalog, tap.select, wanted, tap.metadata, tap.schema)
        catalog_file = write_json(workdir / "catalog.json", selected)
        events.start(selected, target_config(tap, target))

        previous = store.get(state_id)
        state: dict[str, Any] = {} if previous is None else previous.effective
        if full_refresh:
            state = without_streams(state, wanted) if wanted else {}
        if fast == IN_PROCESS:
            chain_name = f"{tap.name} → {target.name}"
            _started(reporter, chain_name, "in one process", state_id, tap, target, full_refresh)
            with log_file.open("a", encoding="utf-8") as log, connector_context(project, env):
                chain = inprocess.run_in_process(
                    tap_name=tap.name,
                    tap_builtin=str(tap.builtin),
                    tap_config=tap_settings,
                    catalog=selected,
                    state=state,
                    target_name=target.name,
                    target_builtin=str(target.builtin),
                    target_config=target_config(tap, target),
                    on_state=lambda value: store.save_partial(state_id, value),
                    reporter=reporter,
                    log=log,
                    timeout=timeout,
                )
        else:
            chain = _run_processes(
                project, tap, mapper_plugins, target, executables, store, state_id, reporter, log_file,
                full_refresh, timeout, workdir, env, tap_config, catalog_file, selected, state,
            )  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    merge = state_strategy == "merge" or (state_strategy == "auto" and wanted is not None)
    if chain.last_state is not None:
        store.complete(state_id, chain.last_state, merge=merge)
    elif previous is not None and previous.partial is not None:
        store.complete(state_id, previous.effective)
    seconds = time.monotonic() - started
    streams = {name: StreamStats(chain.rows.get(name, 0)) for name in chain.streams}
    for name in wanted or _selected_streams(selected):
        streams.setdefault(name, StreamStats(0))
    return SyncResult(
        state_id=state_id,
        streams=dict(sorted(streams.items())),
        rows=sum(chain.rows.values()),
        seconds=seconds,
        state=chain.last_state,
        log_file=str(log_file),
        warnings=tuple(chain.warnings),
    )


def _run_processes(
    project: Project,
    tap: Plugin,
    mapper_plugins: list[Plugin],
    target: Plugin,
    executables: list[Path],
    store: _StateIO,
    state_id: str,
    reporter: Reporter,
    log_file: Path,
    full_refresh: bool,
    timeout: float | None,
    workdir: Path,
    env: dict[str, str],
    tap_config: Path,
    catalog_file: Path,
    selected: dict[str, Any],
    state: dict[str, Any],
) -> ChainResult:
    """The chain of processes: tap | mappers | target, STATE from the target saved as it comes."""
    stages = [
        Stage(tap.name, [str(executables[0]), "--config", str(tap_config), "--catalog", str(catalog_file)])
    ]
    if state:
        stages[0].args.extend(["--state", str(write_json(workdir / "state.json", state))])
    for index, mapper in enumerate(mapper_plugins):
        config = write_json(workdir / f"mapper{index}.config.json", mapper.config)
        stages.append(Stage(mapper.name, [str(executables[1 + index]), "--config", str(config)]))
    target_file = write_json(workdir / "target.config.json", target_config(tap, target))
    stages.append(Stage(target.name, [str(executables[-1]), "--config", str(target_file)]))
    _started(reporter, " → ".join(s.name for s in stages), "", state_id, tap, target, full_refresh)
    with log_file.open("a", encoding="utf-8") as log:
        chain = run_chain(
            stages,
            env=env,
            cwd=str(project.root),
            on_state=lambda value: store.save_partial(state_id, value),
            reporter=reporter,
            log=log,
            redact=reporter.redact,
            timeout=timeout,
            input_state=state,
            selected_streams=set(_selected_streams(selected)),
        )
    return chain


def _started(
    reporter: Reporter, chain: str, how: str, state_id: str, tap: Plugin, target: Plugin, full_refresh: bool
) -> None:
    reporter.event(
        "sync_started",
        f"syncing {chain} ({state_id}{', ' + how if how else ''})"
        + (" — full refresh" if full_refresh else ""),
        state_id=state_id,
        tap=tap.name,
        target=target.name,
        full_refresh=full_refresh,
    )


def tap_selection(project: Project, tap_name: str, *, refresh_catalog: bool = False) -> list[StreamSelection]:
    """The tap's streams and properties with what its `select` rules make of them (`elt select --list`)."""
    tap = find_plugin(project, tap_name, "extractors")
    check_builtin_config(project, tap)
    exe = executable_path(project, tap)
    redact = Redactor(secret_values(tap.config))
    workdir = project.system_dir / "run" / f"select-{tap.name}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, mode=0o700)
    log_file = project.system_dir / "logs" / f"select-{tap.name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        config = write_json(workdir / "tap.config.json", tap.config)
        env = process_env(project, tap, None)
        catalog = tap_catalog(project, tap, exe, config, env, redact, log_file, refresh_catalog)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return selection_report(select_catalog(catalog, tap.select, None, tap.metadata, tap.schema))


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


def fast_path(tap: Plugin, mappers: list[Plugin], target: Plugin) -> str | None:
    """How a built-in tap feeds a built-in target directly: IN_PROCESS, PARQUET, or None (records).

    A mapper in between works on records, so the chain stays on the record path; so does a tap whose
    config already asks for batches of its own, one with inline `stream_maps` or flattening, and
    any sync while `ELT_FAST_PATH=0` is set. `ELT_FAST_PATH=parquet` keeps the connectors in their own
    processes, exchanging Parquet files.
    """
    if mappers or tap.builtin not in BATCH_TAPS or target.builtin not in BATCH_TARGETS:
        return None
    setting = os.environ.get("ELT_FAST_PATH", "1").strip().lower()
    if "batch_config" in tap.config or setting in ("0", "false", "off", "no"):
        return None
    if any("stream_maps" in p.config or p.config.get("flattening_enabled") for p in (tap, target)):
        return None  # inline stream maps and flattening work on records
    if setting == PARQUET or tap.executable or target.executable:
        return PARQUET  # an `executable:` asks for that program to run
    return IN_PROCESS


def _batch_config(root: str, target: Plugin) -> dict[str, Any]:
    """singer-sdk's `batch_config` that puts a built-in tap on the fast path, batches under `root`."""
    return {
        "batch_config": {
            "encoding": {"format": "parquet", "compression": "none"},
            "storage": {"root": root, "prefix": ""},
            # the target's transaction size is the batch size: one batch, one commit, one STATE
            "batch_size": int(target.config.get("batch_size_rows") or BATCH_SIZE_ROWS[str(target.builtin)]),
        }
    }


_DIRECTORY_LOCK = threading.Lock()


@contextmanager
def connector_context(project: Project, env: dict[str, str]) -> Iterator[None]:
    """The folder and environment the connectors' processes get (relative paths such as files and
    the warehouse, libpq's PG* variables, plugin `env:`), for connectors run in elt's own process.
    One in-process run at a time changes them."""
    with _DIRECTORY_LOCK:
        before_dir = os.getcwd()
        before_env = dict(os.environ)
        os.chdir(project.root)
        os.environ.update(env)
        try:
            yield
        finally:
            os.chdir(before_dir)
            os.environ.clear()
            os.environ.update(before_env)


def target_config(tap: Plugin, target: Plugin) -> dict[str, Any]:
    """The config a sync gives `target` (with the tap's load schema as its default schema)."""
    config = dict(target.config)
    # One schema per tap, as Meltano does: a built-in target loads into the tap's namespace.
    if target.builtin and "default_target_schema" not in config:
        config["default_target_schema"] = tap.load_schema
    return config


def process_env(project: Project, tap: Plugin, target: Plugin | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(project.env())
    env.update(tap.env)
    env["ELT_EXTRACTOR"] = tap.name
    if target is not None:
        env.update(target.env)
        env["ELT_LOADER"] = target.name
    env["ELT_ENVIRONMENT"] = project.environment or ""
    # Meltano's name for it, which many PyPI targets' configs refer to.
    env.setdefault("MELTANO_EXTRACT__LOAD_SCHEMA", tap.load_schema)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def write_json(path: Path, value: Any) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
    return path


def tap_catalog(
    project: Project,
    tap: Plugin,
    exe: Path,
    config: Path,
    env: dict[str, str],
    redact: Redactor,
    log_file: Path,
    refresh: bool,
) -> dict[str, Any]:
    """The tap's catalog: discovered, or from the cache kept per tap config.

    Built-in taps discover every time: it is cheap, and their streams follow the files they read.
    """
    if tap.builtin:
        return _discover(tap, exe, config, env, project.root, redact, log_file)
    fingerprint = hashlib.sha256(
        json.dumps([tap.config, tap.pip_url, str(exe)], sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    cached = catalog_cache_dir(project) / tap.name / f"{fingerprint}.json"
    if cached.is_file() and not refresh:
        try:
            catalog: dict[str, Any] = json.loads(cached.read_text(encoding="utf-8"))
            return catalog
        except ValueError:
            pass  # a damaged cache file is discovered again
    catalog = _discover(tap, exe, config, env, project.root, redact, log_file)
    cached.parent.mkdir(parents=True, exist_ok=True)
    for old in cached.parent.glob("*.json"):
        old.unlink()
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps(catalog), encoding="utf-8")
    tmp.replace(cached)
    return catalog


def catalog_cache_dir(project: Project) -> Path:
    return project.system_dir / "catalogs"


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
