"""The cases of `make bench`: each peer, and elt, moving `elt_bench.events`, measured the same way.

A case is a name, a group (what it is compared with), the venvs it needs and a function that runs it
once under `measure.run_measured` and says what arrived. Anything that goes wrong is raised as
`CaseFailed` with a reason a person can act on; the runner turns it into a "failed: <reason>" row.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from events_table import Postgres
from measure import Measurement, run_measured
from peer_venvs import EXTENSION_DIR, Venv

SCRIPTS = Path(__file__).resolve().parent / "scripts"
ROOT = SCRIPTS.parent.parent
PROJECT_BIN = Path(sys.executable).parent  # elt's own venv: elt, target-duckdb, built-in taps

GROUPS: dict[str, str] = {
    "full": "Full load, PostgreSQL → destination",
    "incremental": "Incremental: after 1% of the rows got a new updated_at",
    "file": "Singer RECORD file (MeltanoLabs tap-postgres output) → DuckDB",
    "tap": "Tap alone → /dev/null (plain Singer JSON)",
}
# The elt case each group's peers are compared with.
ELT_CASE = {"full": "elt_full", "incremental": "elt_incremental", "file": "elt_target_file", "tap": "elt_tap"}


class CaseFailed(Exception):
    def __init__(self, reason: str, measurement: Measurement | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.measurement = measurement


@dataclass(frozen=True)
class Arrived:
    """What a case delivered: rows (and distinct ids) in its destination, or records it counted."""

    rows: int
    distinct_ids: int | None = None
    updated: int | None = None  # incremental: rows in the destination carrying the new updated_at
    moved: int | None = None  # incremental: rows the tool says it moved


@dataclass(frozen=True)
class CaseResult:
    name: str
    group: str
    title: str
    tools: str
    status: str  # ok | rows differ | failed
    reason: str = ""
    seconds: float | None = None
    peak_rss_mb: float | None = None
    expected_rows: int | None = None
    arrived: Arrived | None = None
    command: str = ""

    @property
    def rows_per_s(self) -> float | None:
        if self.arrived is None or not self.seconds:
            return None
        moved = self.arrived.moved if self.arrived.moved is not None else self.arrived.rows
        return moved / self.seconds

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["rows_per_s"] = round(self.rows_per_s) if self.rows_per_s is not None else None
        value["seconds"] = round(self.seconds, 3) if self.seconds is not None else None
        value["peak_rss_mb"] = round(self.peak_rss_mb, 1) if self.peak_rss_mb is not None else None
        return value


@dataclass
class Bench:
    """What every case needs: the data's size, the database, the work folder, venvs and versions."""

    rows: int
    pg: Postgres
    work: Path
    venvs: dict[str, Venv]
    versions: dict[str, dict[str, str]]
    timeout: float
    table_oid: int  # the source table's identity: a Singer file made from another table is not reused
    elt_tap_executable: Path | None = None
    updated_rows: int = 0  # set by the runner while the incremental cases run
    singer: dict[str, Any] = field(default_factory=dict)  # the Singer file, once made
    catalogs: dict[str, Path] = field(default_factory=dict)  # discovered in this run, by tap

    def venv(self, name: str) -> Venv:
        venv = self.venvs[name]
        if venv.error:
            raise CaseFailed(f"{name} venv: {venv.error}")
        return venv

    def case_dir(self, case: Case, fresh: bool = True) -> Path:
        path = self.work / case.name
        if fresh:
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def measure(
        self,
        case: Case,
        args: list[str | Path],
        *,
        stdin: Path | None = None,
        stdout: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log_name: str = "stderr.log",
    ) -> Measurement:
        """Run one timed command of `case`; CaseFailed with its error when it exits non-zero."""
        log = self.work / case.name / log_name
        m = run_measured(
            [str(a) for a in args],
            log=log,
            stdin=stdin,
            stdout=stdout,
            env=env,
            cwd=cwd,
            timeout=self.timeout,
        )
        if m.timed_out:
            raise CaseFailed(f"timed out after {self.timeout:.0f} s (stderr: {log})", m)
        if m.returncode != 0:
            raise CaseFailed(f"exit {m.returncode}: {failure_reason(log)}", m)
        return m

    def count(self, python: Path, duckdb_file: Path, table: str) -> Arrived:
        """Rows, distinct ids and updated rows of `table` in `duckdb_file`, read by `python`."""
        args = [str(python), str(SCRIPTS / "count_rows.py"), str(duckdb_file), table]
        proc = subprocess.run(args, capture_output=True, text=True)
        try:
            found = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise CaseFailed(f"could not count rows in {duckdb_file}: {_last_line(proc.stderr)}") from None
        if "error" in found:
            raise CaseFailed(f"{duckdb_file}: {found['error']}")
        return Arrived(found["rows"], found["distinct_ids"], found["updated"])

    def redact(self, text: str) -> str:
        return text.replace(self.pg.password, "***") if self.pg.password else text


@dataclass(frozen=True)
class Case:
    name: str
    group: str
    title: str
    tools: tuple[tuple[str, str], ...]  # (venv or "system"/"elt", distribution) shown with their versions
    venvs: tuple[str, ...]
    run: Callable[[Bench, Case], tuple[Measurement, Arrived]]
    setup: Callable[[Bench, Case], None] | None = None  # untimed work before the update (incremental)

    def tools_text(self, versions: dict[str, dict[str, str]]) -> str:
        return ", ".join(f"{dist} {versions.get(where, {}).get(dist, '?')}" for where, dist in self.tools)


# ---- full load ---------------------------------------------------------------------------------------


def run_copy(b: Bench, case: Case) -> tuple[Measurement, Arrived]:
    out = b.case_dir(case) / "stdout.txt"
    env = {**os.environ, "PGPASSWORD": b.pg.password}
    query = rf"\copy (select * from {b.pg.table}) to /dev/null"
    args = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", b.pg.host, "-p", str(b.pg.port), "-U", b.pg.user]
    m = b.measure(case, [*args, "-d", b.pg.database, "-c", query], stdout=out, env=env)
    copied = re.search(r"COPY (\d+)", out.read_text(encoding="utf-8"))
    if not copied:
        raise CaseFailed(f"psql printed no 'COPY <rows>' line ({out})", m)
    return m, Arrived(int(copied.group(1)))


def run_duckdb_scan(b: Bench, case: Case) -> tuple[Measurement, Arrived]:
    venv = b.venv("duckdb")
    out = b.case_dir(case) / "scan.duckdb"
    script = SCRIPTS / "duckdb_scan.py"
    extensions = venv.path / EXTENSION_DIR
    args: list[str | Path] = [venv.python, script, "--dsn", b.pg.dsn, "--schema", b.pg.schema]
    args += ["--extension-dir", extensions]
    m = b.measure(case, [*args, "--duckdb", out])
    return m, b.count(venv.python, out, "main.events")


def dlt_runner(
    backend: str, incremental: bool = False
) -> Callable[[Bench, Case], tuple[Measurement, Arrived]]:
    def run(b: Bench, case: Case) -> tuple[Measurement, Arrived]:
        venv = b.venv("dlt")
        folder = b.case_dir(case, fresh=not incremental)  # the incremental run keeps the setup's state
        out = folder / "stdout.json"
        m = b.measure(case, _dlt_args(b, venv, folder, backend, incremental), stdout=out, env=_dlt_env())
        arrived = b.count(venv.python, folder / "dlt.duckdb", b.pg.table)
        if incremental:
            moved = json.loads(out.read_text(encoding="utf-8"))["rows_moved"]
            arrived = Arrived(arrived.rows, arrived.distinct_ids, arrived.updated, moved)
        return m, arrived

    return run


def setup_dlt_incremental(b: Bench, case: Case) -> None:
    venv = b.venv("dlt")
    folder = b.case_dir(case)
    try:
        b.measure(case, _dlt_args(b, venv, folder, "pyarrow", True), env=_dlt_env(), log_name="setup.log")
    except CaseFailed as failed:
        raise CaseFailed(f"initial load failed: {failed.reason}") from None


def _dlt_args(b: Bench, venv: Venv, folder: Path, backend: str, incremental: bool) -> list[str | Path]:
    args: list[str | Path] = [venv.python, SCRIPTS / "dlt_load.py", "--backend", backend]
    args += [
        "--schema",
        b.pg.schema,
        "--credentials",
        b.pg.url,
        "--duckdb",
        folder / "dlt.duckdb",
        "--pipelines-dir",
        folder / "pipelines",
    ]
    return [*args, "--incremental"] if incremental else args


def _dlt_env() -> dict[str, str]:
    # No network here but PyPI: dlt's anonymous telemetry would only wait for a connection.
    return {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}


def run_meltano(b: Bench, case: Case) -> tuple[Measurement, Arrived]:
    tap, target = b.venv("tap-postgres"), b.venv("target-duckdb")
    folder = b.case_dir(case)
    catalog = meltano_catalog(b)
    out = folder / "target.duckdb"
    tap_cmd = [tap.bin("tap-postgres"), "--config", _write(folder / "tap.json", b.pg.tap_config())]
    target_config = {"filepath": str(out), "default_target_schema": b.pg.schema}
    target_cmd = [target.bin("target-duckdb"), "--config", _write(folder / "target.json", target_config)]
    pipeline = (
        f"{shlex.join(map(str, [*tap_cmd, '--catalog', catalog]))} | {shlex.join(map(str, target_cmd))}"
    )
    m = b.measure(case, ["bash", "-o", "pipefail", "-c", pipeline])
    return m, b.count(target.python, out, b.pg.table)


# ---- elt ----------------------------------------------------------------------------------------------


def elt_table(b: Bench) -> str:
    """Where `elt sync` lands the stream: the tap's namespace as schema, the stream id as table name."""
    return f"tap_postgres.{b.pg.schema}_events"


def write_elt_project(b: Bench, folder: Path, incremental: bool) -> Path:
    """A throwaway elt project: built-in tap-postgres into built-in target-duckdb."""
    tap: dict[str, Any] = {"name": "tap-postgres", "config": b.pg.tap_config()}
    if b.elt_tap_executable:
        tap["executable"] = str(b.elt_tap_executable)
    if incremental:
        tap["metadata"] = {
            b.pg.stream: {"replication-method": "INCREMENTAL", "replication-key": "updated_at"}
        }
    project = {
        "version": 1,
        "default_environment": "bench",
        "plugins": {
            "extractors": [tap],
            "loaders": [{"name": "target-duckdb", "config": {"path": str(folder / "warehouse.duckdb")}}],
        },
        "environments": [{"name": "bench"}],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "elt.yml").write_text(yaml.safe_dump(project, sort_keys=False), encoding="utf-8")
    return folder


def _elt_sync(
    b: Bench, case: Case, project: Path, log_name: str, env: dict[str, str] | None = None
) -> tuple[Measurement, int]:
    out = project / f"{Path(log_name).stem}.json"
    args: list[str | Path] = [
        PROJECT_BIN / "elt",
        "sync",
        "tap-postgres",
        "target-duckdb",
        "--format",
        "json",
    ]
    m = b.measure(case, args, stdout=out, cwd=project, log_name=log_name, env=env)
    try:
        moved = int(json.loads(out.read_text(encoding="utf-8"))["rows"])
    except (ValueError, KeyError) as exc:
        raise CaseFailed(f"elt sync printed no JSON result with 'rows' ({out}): {exc}", m) from None
    return m, moved


def run_elt_full(b: Bench, case: Case) -> tuple[Measurement, Arrived]:
    project = write_elt_project(b, b.case_dir(case), incremental=False)
    m, _ = _elt_sync(b, case, project, "stderr.log")
    return m, b.count(PROJECT_BIN / "python", project / "warehouse.duckdb", elt_table(b))


def run_elt_full_parquet(b: Bench, case: Case) -> tuple[Measurement, Arrived]:
    """elt's other fast path: tap and target in processes of their own, exchanging Parquet files."""
    project = write_elt_project(b, b.case_dir(case), incremental=False)
    m, _ = _elt_sync(b, case, project, "stderr.log", env={**os.environ, "ELT_FAST_PATH": "parquet"})
    return m, b.count(PROJECT_BIN / "python", project / "warehouse.duckdb", elt_table(b))


def setup_elt_incremental(b: Bench, case: Case) -> None:
    project = write_elt_project(b, b.case_dir(case), incremental=True)
    try:
        _elt_sync(b, case, project, "setup.log")
    except CaseFailed as failed:
        raise CaseFailed(f"initial sync failed: {failed.reason}") from None


def run_elt_incremental(b: Bench, case: Case) -> tuple[Measurement, Arrived]:
    project = b.case_dir(case, fresh=False)
    m, moved = _elt_sync(b, case, project, "stderr.log")
    found = b.count(PROJECT_BIN / "python", project / "warehouse.duckdb", elt_table(b))
    return m, Arrived(found.rows, found.distinct_ids, found.updated, moved)


def builtin_tap_command() -> list[str | Path]:
    """How to run elt's built-in tap-postgres: its console script, else its package as a module."""
    script = PROJECT_BIN / "tap-postgres"
    if script.exists():
        return [script]
    if (ROOT / "taps" / "tap_postgres" / "__main__.py").is_file():
        return [PROJECT_BIN / "python", "-m", "taps.tap_postgres"]
    raise CaseFailed(
        f"elt's built-in tap-postgres is not there yet: no {script}, no taps/tap_postgres/__main__.py"
    )


# ---- Singer file → DuckDB ----------------------------------------------------------------------------


def singer_file(b: Bench) -> Path:
    """The MeltanoLabs tap's Singer output for the table, made once and kept while the table is the same.

    Counts its RECORD messages into b.singer (the rows each file case should deliver).
    """
    if b.singer:
        return Path(b.singer["path"])
    folder = b.work / "singer"
    path, meta_file = folder / f"{b.pg.stream}.jsonl", folder / f"{b.pg.stream}.json"
    if path.is_file() and meta_file.is_file():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("table_oid") == b.table_oid and meta.get("rows") == b.rows:
            b.singer.update(meta)
            return path
    tap = b.venv("tap-postgres")
    folder.mkdir(parents=True, exist_ok=True)
    config = _write(folder / "tap.json", b.pg.tap_config())
    partial = path.with_suffix(".partial")
    args = [str(tap.bin("tap-postgres")), "--config", str(config), "--catalog", str(meltano_catalog(b))]
    m = run_measured(args, log=folder / "tap.log", stdout=partial, timeout=b.timeout)
    if m.returncode != 0:
        raise CaseFailed(
            f"making the Singer file failed: exit {m.returncode}: {failure_reason(folder / 'tap.log')}"
        )
    meta = {"path": str(path), "rows": b.rows, "table_oid": b.table_oid, "seconds": round(m.seconds, 3)}
    meta |= {"records": count_records(partial), "bytes": partial.stat().st_size}
    partial.replace(path)
    _write(meta_file, meta)
    b.singer.update(meta)
    return path


def count_records(path: Path) -> int:
    """RECORD messages in a Singer file (one message per line; the data holds no such text)."""
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            count += line.startswith(b'{"type":"RECORD"') or line.startswith(b'{"type": "RECORD"')
    return count


def run_elt_target_file(b: Bench, case: Case) -> tuple[Measurement, Arrived]:
    source = singer_file(b)
    folder = b.case_dir(case)
    out = folder / "elt.duckdb"
    config = _write(folder / "target.json", {"path": str(out)})
    m = b.measure(case, [PROJECT_BIN / "target-duckdb", "--config", config], stdin=source)
    return m, b.count(PROJECT_BIN / "python", out, f"main.{b.pg.schema}_events")


def run_target_duckdb_file(b: Bench, case: Case) -> tuple[Measurement, Arrived]:
    source = singer_file(b)
    target = b.venv("target-duckdb")
    folder = b.case_dir(case)
    out = folder / "target.duckdb"
    config = _write(folder / "target.json", {"filepath": str(out), "default_target_schema": b.pg.schema})
    m = b.measure(case, [target.bin("target-duckdb"), "--config", config], stdin=source)
    return m, b.count(target.python, out, b.pg.table)


def run_duckdb_ndjson(b: Bench, case: Case) -> tuple[Measurement, Arrived]:
    source = singer_file(b)
    venv = b.venv("duckdb")
    out = b.case_dir(case) / "ndjson.duckdb"
    m = b.measure(case, [venv.python, SCRIPTS / "duckdb_ndjson.py", "--singer", source, "--duckdb", out])
    return m, b.count(venv.python, out, "main.events")


# ---- tap alone ----------------------------------------------------------------------------------------


def tap_alone(
    command: Callable[[Bench], list[str | Path]],
) -> Callable[[Bench, Case], tuple[Measurement, Arrived]]:
    def run(b: Bench, case: Case) -> tuple[Measurement, Arrived]:
        tap = command(b)
        folder = b.case_dir(case)
        config = _write(folder / "tap.json", b.pg.tap_config())
        catalog = discover_catalog(b, tap, config, folder / "catalog.json")
        m = b.measure(case, [*tap, "--config", config, "--catalog", catalog])
        records = metric_record_count(folder / "stderr.log", b.pg.stream)
        if records is None:
            raise CaseFailed("the tap logged no record_count metric, so its records could not be counted", m)
        return m, Arrived(records)

    return run


def _elt_tap(b: Bench) -> list[str | Path]:
    return [b.elt_tap_executable] if b.elt_tap_executable else builtin_tap_command()


def _meltano_tap(b: Bench) -> list[str | Path]:
    return [b.venv("tap-postgres").bin("tap-postgres")]


def metric_record_count(log: Path, stream: str) -> int | None:
    """Sum of singer-sdk's `record_count` counters for the stream in a tap's stderr (they reset each log)."""
    total, seen = 0, False
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        _, found, payload = line.partition("METRIC: ")
        if not found:
            continue
        try:
            metric = json.loads(payload)
        except json.JSONDecodeError:
            continue
        if metric.get("metric") == "record_count" and metric.get("tags", {}).get("stream") == stream:
            total += int(metric.get("value", 0))
            seen = True
    return total if seen else None


# ---- shared helpers -----------------------------------------------------------------------------------


def meltano_catalog(b: Bench) -> Path:
    """The MeltanoLabs tap's catalog with the events stream selected, discovered once per run."""
    if "meltano" not in b.catalogs:
        folder = b.work / "catalogs"
        config = _write(folder / "tap.json", b.pg.tap_config())
        b.catalogs["meltano"] = discover_catalog(b, _meltano_tap(b), config, folder / "meltano.json")
    return b.catalogs["meltano"]


def discover_catalog(b: Bench, tap: list[str | Path], config: Path, path: Path) -> Path:
    """Run the tap's discovery and write its catalog with only the events stream selected."""
    proc = subprocess.run(
        [*map(str, tap), "--config", str(config), "--discover"],
        capture_output=True,
        text=True,
        timeout=b.timeout,
    )
    if proc.returncode != 0:
        raise CaseFailed(f"discovery failed (exit {proc.returncode}): {_last_line(proc.stderr)}")
    try:
        catalog = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise CaseFailed("discovery printed no JSON catalog") from None
    streams = [entry.get("tap_stream_id") or entry.get("stream") for entry in catalog.get("streams", [])]
    if b.pg.stream not in streams:
        raise CaseFailed(
            f"discovery found no stream {b.pg.stream} (found: {', '.join(map(str, streams)) or 'none'})"
        )
    for entry in catalog["streams"]:
        selected = (entry.get("tap_stream_id") or entry.get("stream")) == b.pg.stream
        root = [item for item in entry.setdefault("metadata", []) if not item.get("breadcrumb")]
        if not root:
            root = [{"breadcrumb": [], "metadata": {}}]
            entry["metadata"].append(root[0])
        root[0].setdefault("metadata", {})["selected"] = selected
    return _write(path, catalog)


def failure_reason(log: Path) -> str:
    """The line of a stderr log that says what went wrong: the last error-looking line, else the last one."""
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return f"no stderr ({log})"
    lines = [line for line in lines if line]
    for line in reversed(lines):
        if re.search(r"\b(error|Error|ERROR|FATAL|Exception|Traceback)\b", line) and "Traceback" not in line:
            return line[:300]
    return (lines[-1][:300] if lines else "no output") + f" ({log})"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _write(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")
    return path


# ---- the table of cases, in the order they run and are reported ---------------------------------------

ELT_TOOLS = (("elt", "elt"), ("elt", "tap-postgres"), ("elt", "duckdb"), ("elt", "pyarrow"))
CASES: tuple[Case, ...] = (
    Case(
        "copy", "full", r"psql `\copy` to /dev/null (text) — the limit", (("system", "psql"),), (), run_copy
    ),
    Case(
        "duckdb_scan",
        "full",
        "DuckDB postgres_scan → DuckDB file",
        (("duckdb", "duckdb"), ("duckdb", "duckdb-extension-postgres")),
        ("duckdb",),
        run_duckdb_scan,
    ),
    Case(
        "dlt_connectorx",
        "full",
        "dlt sql_table backend=connectorx → duckdb",
        (("dlt", "dlt"), ("dlt", "connectorx")),
        ("dlt",),
        dlt_runner("connectorx"),
    ),
    Case(
        "dlt_pyarrow",
        "full",
        "dlt sql_table backend=pyarrow → duckdb",
        (("dlt", "dlt"), ("dlt", "pyarrow")),
        ("dlt",),
        dlt_runner("pyarrow"),
    ),
    Case(
        "meltano",
        "full",
        "MeltanoLabs tap-postgres | target-duckdb (PyPI)",
        (
            ("tap-postgres", "meltanolabs-tap-postgres"),
            ("target-duckdb", "target-duckdb"),
            ("target-duckdb", "duckdb"),
        ),
        ("tap-postgres", "target-duckdb"),
        run_meltano,
    ),
    Case("elt_full", "full", "elt sync tap-postgres target-duckdb", ELT_TOOLS, (), run_elt_full),
    Case(
        "elt_full_parquet",
        "full",
        "elt sync, ELT_FAST_PATH=parquet (tap and target processes)",
        ELT_TOOLS,
        (),
        run_elt_full_parquet,
    ),
    Case(
        "dlt_incremental",
        "incremental",
        "dlt sql_table pyarrow, incremental(updated_at), merge on id",
        (("dlt", "dlt"), ("dlt", "pyarrow")),
        ("dlt",),
        dlt_runner("pyarrow", incremental=True),
        setup_dlt_incremental,
    ),
    Case(
        "elt_incremental",
        "incremental",
        "elt sync, INCREMENTAL by updated_at",
        ELT_TOOLS,
        (),
        run_elt_incremental,
        setup_elt_incremental,
    ),
    Case(
        "target_duckdb_file",
        "file",
        "target-duckdb (PyPI) < file",
        (("target-duckdb", "target-duckdb"), ("target-duckdb", "duckdb")),
        ("target-duckdb", "tap-postgres"),
        run_target_duckdb_file,
    ),
    Case(
        "duckdb_ndjson",
        "file",
        "DuckDB read_ndjson of the file (RECORD rows, unnest record)",
        (("duckdb", "duckdb"),),
        ("duckdb", "tap-postgres"),
        run_duckdb_ndjson,
    ),
    Case(
        "elt_target_file",
        "file",
        "elt's target-duckdb < file (record path)",
        (("elt", "elt"), ("elt", "duckdb"), ("elt", "pyarrow")),
        ("tap-postgres",),
        run_elt_target_file,
    ),
    Case(
        "meltano_tap",
        "tap",
        "MeltanoLabs tap-postgres > /dev/null",
        (("tap-postgres", "meltanolabs-tap-postgres"), ("tap-postgres", "singer-sdk")),
        ("tap-postgres",),
        tap_alone(_meltano_tap),
    ),
    Case(
        "elt_tap",
        "tap",
        "elt's tap-postgres > /dev/null",
        (("elt", "elt"), ("elt", "tap-postgres"), ("elt", "singer-sdk")),
        (),
        tap_alone(_elt_tap),
    ),
)
