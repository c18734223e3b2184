"""The peers' virtualenvs: one per tool under bench/.venvs/<name>, made with uv and kept between runs.

A venv is reused while the requirements it was built from are unchanged; a failed install is returned as
a value (`Venv.error`) so that the cases needing it are reported as failed, not hidden.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Where the duckdb venv's postgres extension is placed for `LOAD postgres` (see place_postgres_extension).
EXTENSION_DIR = "duckdb_extensions"
MARKER = ".bench-requirements.json"


@dataclass(frozen=True)
class Venv:
    name: str
    path: Path
    versions: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, program: str) -> Path:
        return self.path / "bin" / program


@dataclass(frozen=True)
class VenvSpec:
    name: str
    requirements: tuple[str, ...]
    reported: tuple[str, ...]  # distributions whose versions the report shows
    after_install: Callable[[Venv], None] | None = None


def place_postgres_extension(venv: Venv) -> None:
    """Copy the wheel's extension to `<extension_directory>/v<version>/<platform>/postgres_scanner...`.

    That is where `LOAD postgres` looks before it would try to download (BASELINE.md).
    """
    probe = "import duckdb; print(duckdb.__version__); print(duckdb.sql('PRAGMA platform').fetchone()[0])"
    version, platform = _python(venv, probe).split()
    wheel_files = sorted(
        venv.path.glob("lib/python*/site-packages/duckdb_extension_postgres/**/*.duckdb_extension")
    )
    if not wheel_files:
        raise RuntimeError("duckdb-extension-postgres installed no *.duckdb_extension file")
    target = venv.path / EXTENSION_DIR / f"v{version}" / platform / "postgres_scanner.duckdb_extension"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(wheel_files[-1], target)


SPECS: dict[str, VenvSpec] = {
    spec.name: spec
    for spec in (
        VenvSpec(
            "duckdb",
            ("duckdb==1.5.5", "duckdb-extension-postgres==1.5.5"),
            ("duckdb", "duckdb-extension-postgres"),
            place_postgres_extension,
        ),
        VenvSpec(
            "dlt",
            # SQLAlchemy 2.1 reads postgresql:// URLs with psycopg 3.
            ("dlt[duckdb,parquet,sql_database]==1.31.0", "connectorx==0.4.6", "psycopg[binary]"),
            ("dlt", "pyarrow", "connectorx", "sqlalchemy", "duckdb"),
        ),
        VenvSpec(
            "tap-postgres", ("meltanolabs-tap-postgres==0.10.0",), ("meltanolabs-tap-postgres", "singer-sdk")
        ),
        VenvSpec("target-duckdb", ("target-duckdb==0.8.0",), ("target-duckdb", "duckdb")),
    )
}


def ensure_venv(spec: VenvSpec, root: Path, log: Callable[[str], None]) -> Venv:
    """The venv for `spec` under `root`, built with uv unless one from the same requirements exists."""
    path = root / spec.name
    venv = Venv(spec.name, path)
    marker = path / MARKER
    wanted = json.dumps(list(spec.requirements))
    if venv.python.exists() and marker.is_file() and marker.read_text(encoding="utf-8") == wanted:
        return Venv(spec.name, path, _versions(venv, spec.reported))
    log(f"installing {spec.name}: {' '.join(spec.requirements)}")
    shutil.rmtree(path, ignore_errors=True)
    try:
        uv = _uv()
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(path)])
        _run([uv, "pip", "install", "--quiet", "--python", str(venv.python), *spec.requirements])
        if spec.after_install:
            spec.after_install(venv)
        versions = _versions(venv, spec.reported)
    except (subprocess.CalledProcessError, RuntimeError, ValueError, OSError) as exc:
        return Venv(spec.name, path, error=f"install failed: {_reason(exc)}")
    marker.write_text(wanted, encoding="utf-8")
    return Venv(spec.name, path, versions)


def python_versions(python: Path, distributions: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of `distributions` in the environment of `python` ('not installed' if absent)."""
    return _versions(Venv("", python.parent.parent), distributions)


def _versions(venv: Venv, distributions: tuple[str, ...]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(d):\n"
        "    try:\n"
        "        return m.version(d)\n"
        "    except m.PackageNotFoundError:\n"
        "        return 'not installed'\n"
        "print(json.dumps({d: v(d) for d in sys.argv[1:]}))"
    )
    found: dict[str, str] = json.loads(_python(venv, code, *distributions))
    return found


def _python(venv: Venv, code: str, *args: str) -> str:
    return _run([str(venv.python), "-c", code, *args]).strip()


def _uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        raise RuntimeError("uv is not installed (expected next to the project's Python, or on PATH)")
    return found


def _run(args: list[str]) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def _reason(exc: Exception) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        lines = [line.strip() for line in (exc.stderr or "").splitlines() if line.strip()]
        return " ".join(lines[-3:])[:300] or f"exit {exc.returncode}"
    return str(exc)
