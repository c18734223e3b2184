"""Install plugins that have a `pip_url` into venvs of their own under `.elt/plugins/`.

    plugin ─► the plugin owning its venv (itself, or the parent it inherits the same pip_url from)
    record says same pip_url and Python ─► "unchanged"
    else ─► build a venv in a staging folder ─► move it into place ─► write the record

A venv appears at `.elt/plugins/<type>/<name>/venv` only once it is complete, so a failed or interrupted
install never leaves one that looks installed; a failed reinstall keeps the previous venv. The record
(`install.json`, next to the venv) says what was installed, from which pip_url, with which Python.
Installs of different venvs run in parallel.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from elt.errors import PluginError, ProjectError
from elt.logs import Redactor, Reporter
from elt.plugins import Plugin, declared_plugins, find_plugin, plugin_dir, venv_owner
from elt.project import PLUGIN_TYPES, Project

RECORD_FILE = "install.json"
LOG_FILE = "install.log"
MAX_PARALLEL = 4
_ERROR_TAIL = 12
_STAGING_PREFIX = ".building-"
# Credentials in URLs (git+https://user:token@host/...), masked in messages and logs.
_URL_CREDENTIALS = re.compile(r"://([^/@\s]+)@")
# uv's lines about which interpreter it uses: they name the staging folder and explain no failure.
_CHATTER = re.compile(r"^(Using (C?Python|Python \d)|Creating virtual environment|Activate with)")


@dataclass(frozen=True)
class InstallResult:
    """What `elt install` did for one plugin; `to_json` is its shape in `--format json`."""

    name: str
    type: str
    status: str  # installed | unchanged | builtin | skipped (no pip_url, runs from PATH) | failed
    seconds: float = 0.0
    venv: str | None = None
    error: str | None = None
    packages: tuple[str, ...] = ()  # name==version of what the venv holds

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "venv": self.venv,
            "error": self.error,
            "packages": list(self.packages),
        }


@dataclass(frozen=True)
class InstallRecord:
    """`install.json` next to a venv: enough to tell whether the venv is still what elt.yml asks for."""

    pip_url: str
    python: str  # version of the interpreter the venv was built from, e.g. 3.11.7
    installed_at: str
    installer: str  # uv | pip
    packages: tuple[str, ...]
    executables: tuple[str, ...]

    @classmethod
    def read(cls, path: Path) -> InstallRecord | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                pip_url=data["pip_url"],
                python=data["python"],
                installed_at=data["installed_at"],
                installer=data.get("installer", "pip"),
                packages=tuple(data.get("packages") or ()),
                executables=tuple(data.get("executables") or ()),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no record, or one elt cannot read: the venv is rebuilt


@dataclass(frozen=True)
class _Job:
    """One venv to build, for the plugins sharing it."""

    owner: Plugin
    folder: Path
    plugins: tuple[Plugin, ...]


def install_plugins(
    project: Project,
    names: tuple[str, ...] | list[str] = (),
    plugin_type: str | None = None,
    force: bool = False,
    reporter: Reporter | None = None,
) -> list[InstallResult]:
    """Install `names` (default: every plugin of the project, or of `plugin_type`) into their venvs.

    A venv is rebuilt only when its plugin's pip_url or elt's Python version changed since the last
    install, or with `force`. Unknown names raise PluginError before anything is installed; a failed
    install is a result with status "failed" and the installer's last lines in `error`.
    """
    ptype = _plural_type(plugin_type)
    plugins = _plugins_to_install(project, tuple(names), ptype)
    reporter = reporter or Reporter()
    redact = Redactor(secret for p in plugins for secret in _url_credentials(p.pip_url or ""))
    reporter.redact.add(redact.secrets)

    results: dict[str, InstallResult] = {}
    jobs: dict[Path, _Job] = {}
    for plugin in plugins:
        if plugin.builtin and not plugin.pip_url:
            results[plugin.name] = InstallResult(plugin.name, plugin.type, "builtin")
        elif not plugin.pip_url:
            results[plugin.name] = InstallResult(plugin.name, plugin.type, "skipped")
        else:
            folder = plugin_dir(project, plugin)
            job = jobs.get(folder)
            owner = job.owner if job else venv_owner(project, plugin)
            jobs[folder] = _Job(owner, folder, (*(job.plugins if job else ()), plugin))

    if jobs:
        outcomes = _run_jobs(project, list(jobs.values()), force, reporter, redact)
        for job, outcome in zip(jobs.values(), outcomes, strict=True):
            for plugin in job.plugins:
                results[plugin.name] = InstallResult(
                    plugin.name, plugin.type, outcome.status, outcome.seconds, outcome.venv,
                    outcome.error, outcome.packages,
                )  # fmt: skip
    return [results[p.name] for p in plugins]


def _plural_type(plugin_type: str | None) -> str | None:
    if plugin_type is None:
        return None
    for ptype in PLUGIN_TYPES:
        if plugin_type in (ptype, ptype[:-1]):
            return ptype
    raise PluginError(f"unknown plugin type '{plugin_type}'", hint=f"one of: {', '.join(PLUGIN_TYPES)}")


def _plugins_to_install(project: Project, names: tuple[str, ...], ptype: str | None) -> list[Plugin]:
    # Installing needs no config: a `${PASSWORD}` unset on a build machine must not stop it. Only a
    # variable in a pip_url matters, and it is checked below.
    view = replace(project, missing=())
    if names:
        wanted = list(dict.fromkeys(names))
    else:
        wanted = [n for n, (t, _, _) in declared_plugins(project).items() if ptype in (None, t)]
    plugins = [find_plugin(view, name, ptype) for name in wanted]
    for plugin in plugins:
        paths = _pip_url_paths(project, plugin)
        for miss in project.missing:
            if miss.path in paths:
                raise ProjectError(
                    f"{project.where(miss.path)}: key '{miss.path}': environment variable "
                    f"'{miss.variable}' is not set",
                    hint=f"set it, add it to .env, or give a default: ${{{miss.variable}:-value}}",
                )
    return plugins


def _pip_url_paths(project: Project, plugin: Plugin) -> set[str]:
    """Key paths a plugin's pip_url can come from: its entry, its ancestors', the environment's overrides."""
    declared = declared_plugins(project)
    chain, name = [], plugin.name
    while name in declared and name not in chain:
        chain.append(name)
        name = declared[name][2].get("inherit_from") or ""
    paths = {f"plugins.{declared[n][0]}[{declared[n][1]}].pip_url" for n in chain}
    for i, env in enumerate(project.data.get("environments") or []):
        if env.get("name") != project.environment:
            continue
        for ptype, entries in ((env.get("config") or {}).get("plugins") or {}).items():
            for j, entry in enumerate(entries or []):
                if entry.get("name") in chain:
                    paths.add(f"environments[{i}].config.plugins.{ptype}[{j}].pip_url")
    return paths


def _url_credentials(pip_url: str) -> list[str]:
    return [match.group(1) for match in _URL_CREDENTIALS.finditer(pip_url)]


# -- running the installs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    status: str
    seconds: float
    venv: str | None
    error: str | None = None
    packages: tuple[str, ...] = ()


def _run_jobs(
    project: Project, jobs: list[_Job], force: bool, reporter: Reporter, redact: Redactor
) -> list[_Outcome]:
    running: dict[str, float] = {}
    lock = threading.Lock()
    finished = threading.Event()

    def one(job: _Job) -> _Outcome:
        name = job.owner.name
        started = time.monotonic()
        with lock:
            running[name] = started
        try:
            outcome = _install_venv(project, job, force, reporter, redact)
        except Exception as exc:  # reported as this plugin's failure, never lost
            outcome = _Outcome("failed", time.monotonic() - started, None, f"{type(exc).__name__}: {exc}")
        with lock:
            running.pop(name, None)
        _report(reporter, job, outcome)
        return outcome

    def tick() -> None:
        while not finished.wait(0.5):
            with lock:
                now = time.monotonic()
                busy = ", ".join(f"{n} {now - t:.0f}s" for n, t in running.items())
            if busy:
                reporter.progress(f"  installing: {busy}")

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(jobs))) as pool:
            return list(pool.map(one, jobs))
    finally:
        finished.set()
        ticker.join()
        reporter.done_progress()


def _report(reporter: Reporter, job: _Job, outcome: _Outcome) -> None:
    names = ", ".join(p.name for p in job.plugins)
    fields = {"plugins": [p.name for p in job.plugins], "status": outcome.status,
              "seconds": round(outcome.seconds, 3), "venv": outcome.venv}  # fmt: skip
    if outcome.status == "failed":
        reporter.event("install_failed", f"✗ {names}: failed after {outcome.seconds:.1f}s",
                       error=outcome.error, **fields)  # fmt: skip
    elif outcome.status == "unchanged":
        if not reporter.tty:  # on a terminal the summary says it; no line to watch for
            reporter.event("install_unchanged", f"  {names}: already installed", **fields)
    else:
        reporter.event("install_finished", f"✓ {names}: installed in {outcome.seconds:.1f}s", **fields)


def _install_venv(project: Project, job: _Job, force: bool, reporter: Reporter, redact: Redactor) -> _Outcome:
    pip_url = job.owner.pip_url or ""
    recorded = redact(pip_url)  # credentials never reach the disk; changing only them needs no reinstall
    venv = job.folder / "venv"
    started = time.monotonic()
    job.folder.mkdir(parents=True, exist_ok=True)
    with _locked(job.folder):
        record = InstallRecord.read(job.folder / RECORD_FILE)
        if not force and _is_current(record, venv, recorded):
            assert record is not None
            return _Outcome("unchanged", 0.0, str(venv), packages=record.packages)
        reporter.event(
            "install_started",
            f"  installing {job.owner.name} ({recorded})",
            plugins=[p.name for p in job.plugins],
            pip_url=recorded,
        )
        for stale in job.folder.glob(f"{_STAGING_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=job.folder))
        try:
            built = staging / "venv"
            installer, error = _build(project, built, pip_url, job.folder / LOG_FILE, redact)
            if error is not None:
                kept = " (the previous install is kept)" if venv.is_dir() else ""
                return _Outcome("failed", time.monotonic() - started, None, error + kept)
            _relocate(built, venv)
            packages, executables = _contents(built)
            _swap_into_place(built, venv, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        record = InstallRecord(
            pip_url=recorded,
            python=_python_version(),
            installed_at=datetime.now(UTC).isoformat(timespec="seconds"),
            installer=installer,
            packages=packages,
            executables=executables,
        )
        _write_record(job.folder / RECORD_FILE, record)
    return _Outcome("installed", time.monotonic() - started, str(venv), packages=packages)


def _is_current(record: InstallRecord | None, venv: Path, pip_url: str) -> bool:
    if record is None or record.pip_url != pip_url:
        return False
    # A new patch release of the same Python keeps a venv working; a new minor version does not.
    same_python = record.python.split(".")[:2] == _python_version().split(".")[:2]
    return same_python and (venv / "bin" / "python").exists()


def _python_version() -> str:
    return ".".join(str(part) for part in sys.version_info[:3])


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One install of a venv at a time, across processes too."""
    with (folder / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def uv_executable() -> Path | None:
    """uv next to elt's Python (installed with elt), used instead of pip because it is much faster."""
    candidate = Path(sys.executable).parent / "uv"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def _build(
    project: Project, venv: Path, pip_url: str, log_file: Path, redact: Redactor
) -> tuple[str, str | None]:
    """Create `venv` and install `pip_url` into it; (installer, None) or (installer, error message)."""
    try:
        requirements = shlex.split(pip_url)
    except ValueError as exc:
        return "", f"pip_url cannot be split into words: {exc}"
    uv = uv_executable()
    python = venv / "bin" / "python"
    if uv is not None:
        installer = "uv"
        # No --seed: a connector's venv needs no pip, and seeding it would need the network.
        steps = [
            [str(uv), "venv", "--no-project", "--python", sys.executable, str(venv)],
            [str(uv), "pip", "install", "--python", str(python), *requirements],
        ]
    else:
        installer = "pip"
        # --no-compile: bytecode written now would name the staging folder in tracebacks.
        pip = [str(python), "-m", "pip", "install", "--no-compile", "--disable-pip-version-check"]
        steps = [[sys.executable, "-m", "venv", str(venv)], [*pip, *requirements]]
    env = {**os.environ, **project.env(), "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONHOME", None)
    with log_file.open("w", encoding="utf-8") as log:
        for command in steps:
            log.write(redact(f"$ {shlex.join(command)}\n"))
            log.flush()
            # From the project root, so that relative paths in pip_url (-e ./taps/tap-x) resolve there.
            proc = subprocess.run(command, cwd=project.root, env=env, capture_output=True, text=True,
                                  check=False)  # fmt: skip
            output = redact(proc.stdout + proc.stderr)
            log.write(output)
            if proc.returncode != 0:
                lines = [line for line in output.splitlines() if line.strip() and not _CHATTER.match(line)]
                tail = "\n".join("  " + line for line in lines[-_ERROR_TAIL:]) or "  (no output)"
                what = "install" if "install" in command else "create the venv"
                return installer, (
                    f"{installer} could not {what} (exit {proc.returncode}):\n{tail}\n"
                    f"  full output: {log_file}"
                )
    return installer, None


def _relocate(built: Path, venv: Path) -> None:
    """Point the staging venv's scripts at where it will live: shebangs and activate scripts hold its path."""
    old, new = str(built).encode(), str(venv).encode()
    for path in [*(built / "bin").iterdir(), built / "pyvenv.cfg"]:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1 << 20:
            continue
        content = path.read_bytes()
        if old in content and b"\0" not in content:  # scripts only: a binary's length must not change
            path.write_bytes(content.replace(old, new))


def _contents(venv: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(name==version of each distribution, its console scripts) in `venv`."""
    site = next((venv / "lib").glob("python*/site-packages"), None)
    if site is None:
        return (), ()
    packages, scripts = set(), set()
    for dist in metadata.distributions(path=[str(site)]):
        name = dist.metadata["Name"]
        if not name:
            continue
        packages.add(f"{name}=={dist.version}")
        scripts |= {ep.name for ep in dist.entry_points if ep.group == "console_scripts"}
    return tuple(sorted(packages, key=str.lower)), tuple(sorted(scripts))


def _swap_into_place(built: Path, venv: Path, staging: Path) -> None:
    """Replace `venv` with `built` by renames (same folder, so each is atomic)."""
    previous = staging / "previous"
    if venv.exists():
        venv.rename(previous)
    built.rename(venv)


def _write_record(path: Path, record: InstallRecord) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(record), indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
