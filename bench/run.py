"""`make bench`: elt against its peers on the same PostgreSQL table, side by side, in one run.

    .venv/bin/python bench/run.py [--rows N] [--only NAME[,NAME]] [--list]

Builds `elt_bench.events` (BASELINE.md's table) with N rows, makes each peer's venv under bench/.venvs/,
runs every case once under the same measurement (bench/measure.py) and counts what arrived, times
`elt docs generate` on a synthetic 1,000-model dbt project (`docs_1000_models`, bench/docs_bench.py;
it alone needs no PostgreSQL), a partitioned sync of the table on 1 and 2 Celery workers
(`partitioned_workers`, bench/workers_bench.py), then writes results.json and results.md (in bench/
unless --output says otherwise) and prints the Markdown. A case that fails, or a peer that does not
install, is a row saying why; the exit code is 0 whenever the report was written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from cases import CASES, Arrived, Bench, Case, CaseFailed, CaseResult, singer_file
from docs_bench import CASE as DOCS_CASE
from docs_bench import TITLE as DOCS_TITLE
from docs_bench import DocsResult, run_docs_bench
from events_table import (
    DEFAULT_SCHEMA,
    Postgres,
    ensure_events,
    restore_updates,
    server_version,
    touch_one_percent,
)
from measure import RSS_METHOD
from peer_venvs import SPECS, Venv, ensure_venv, python_versions
from report import render_markdown
from workers_bench import CASE as WORKERS_CASE
from workers_bench import TITLE as WORKERS_TITLE
from workers_bench import run_workers_bench

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for case in CASES:
            print(f"{case.name:<20} {case.group:<12} {case.title}")
        print(f"{DOCS_CASE:<20} {'docs':<12} {DOCS_TITLE}")
        print(f"{WORKERS_CASE:<20} {'workers':<12} {WORKERS_TITLE}")
        return 0
    selected = select_cases(args.only)
    docs = wants_docs(args.only)
    on_workers = not args.only or WORKERS_CASE in _names(args.only)
    started_at = datetime.now(UTC)
    machine = machine_info()
    names = (
        [c.name for c in selected] + ([DOCS_CASE] if docs else []) + ([WORKERS_CASE] if on_workers else [])
    )
    say(f"elt bench: {args.rows:,} rows, cases: {', '.join(names)}")

    report: dict[str, Any] = {
        "started_at": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "rows": args.rows,
        "command": " ".join([Path(sys.executable).name, "bench/run.py", *(argv or sys.argv[1:])]),
        "machine": machine,
        "rss_method": RSS_METHOD,
        "cases": [],
    }
    if selected:  # the cases that move the PostgreSQL table
        moved = run_table_cases(args, selected)
        if moved is None:
            return 2
        report |= moved
    if docs:
        report["docs"] = run_docs_case(args)
    if on_workers:
        report["workers"] = run_workers_case(args)
    machine["load_end"] = round(os.getloadavg()[0], 2)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = render_markdown(report)
    (args.output / "results.md").write_text(markdown, encoding="utf-8")
    print()
    print(markdown)
    say(f"written: {args.output / 'results.json'}, {args.output / 'results.md'}")
    return 0


def run_table_cases(args: argparse.Namespace, selected: list[Case]) -> dict[str, Any] | None:
    """Prepare the table and the peers' venvs, run the cases; the report's part about them (None: no
    PostgreSQL)."""
    timeout = args.timeout or 120 + args.rows / 2000
    pg = Postgres.from_env(args.schema)
    try:
        data = ensure_events(pg, args.rows)
        postgres_version = server_version(pg)
    except psycopg.Error as exc:  # the database is the one thing every case needs
        say(f"error: cannot prepare {pg.table} in PostgreSQL at {pg.host}:{pg.port}/{pg.database}: {exc}")
        return None
    say(f"{pg.table}: {args.rows:,} rows {'built' if data.created else 'reused'} in {data.seconds:.1f} s")
    work = args.work.resolve()

    venvs = make_venvs({name for case in selected for name in case.venvs})
    versions = collect_versions(venvs, postgres_version, args.elt_tap_executable)
    bench = Bench(args.rows, pg, work, venvs, versions, timeout, data.oid, args.elt_tap_executable)

    results = run_cases(bench, selected)
    return {
        "versions": versions,
        "data": {
            "table": pg.table,
            "rows": data.rows,
            "created": data.created,
            "seconds": round(data.seconds, 2),
        },
        "singer_file": bench.singer or None,
        "updated_rows": bench.updated_rows or None,
        "install_errors": {name: venv.error for name, venv in venvs.items() if venv.error},
        "cases": [result.to_json() for result in results],
    }


def run_docs_case(args: argparse.Namespace) -> dict[str, Any]:
    """`elt docs generate` on a synthetic dbt project of --docs-models models (bench/docs_bench.py)."""
    say(f"{DOCS_CASE}: generating and compiling {args.docs_models:,} models (not timed), then timing docs")
    try:
        result = run_docs_bench(args.work.resolve() / DOCS_CASE, args.docs_models)
    except Exception as exc:  # a bug of this harness: the section says so, the traceback goes to stderr
        traceback.print_exc()
        result = DocsResult(args.docs_models, "failed", f"harness error: {type(exc).__name__}: {exc}")
    seconds = f"{result.seconds:.2f} s" if result.seconds is not None else "—"
    say(f"{DOCS_CASE:<20}{seconds:>10}  {result.status}" + (f": {result.reason}" if result.reason else ""))
    return result.to_json()


def run_workers_case(args: argparse.Namespace) -> dict[str, Any]:
    """The events table synced in partitions on 1 and 2 Celery workers (bench/workers_bench.py)."""
    say(f"{WORKERS_CASE}: {args.rows:,} rows in {args.partitions} partitions, local, on 1 and on 2 workers")
    try:
        result = run_workers_bench(
            args.work.resolve() / WORKERS_CASE,
            Postgres.from_env(args.schema),
            args.rows,
            args.partitions,
            "redis",
        )
    except Exception as exc:  # a bug of this harness or no broker: the section says so
        traceback.print_exc()
        return {"case": WORKERS_CASE, "error": f"{type(exc).__name__}: {exc}", "settings": []}
    for row in result["settings"]:
        seconds = f"{row['seconds']:.2f} s" if row["seconds"] is not None else "—"
        say(f"{WORKERS_CASE} {row['setting']:<22}{seconds:>10}  {row['status']} {row['reason']}")
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description="elt against its peers, side by side.")
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows in the events table (default 1,000,000)"
    )
    parser.add_argument("--only", help="comma-separated case names (see --list); default: all")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--docs-models", type=int, default=1000,
        help=f"models of the synthetic dbt project of {DOCS_CASE} (default 1000)",
    )  # fmt: skip
    parser.add_argument(
        "--partitions", type=int, default=8, help=f"key ranges of {WORKERS_CASE}'s sync (default 8)"
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds before a case is stopped (default 120 + rows/2000)"
    )
    parser.add_argument(
        "--schema", default=DEFAULT_SCHEMA, help="PostgreSQL schema of the table (default elt_bench)"
    )
    parser.add_argument("--output", type=Path, default=BENCH, help="folder for results.json and results.md")
    parser.add_argument("--work", type=Path, default=BENCH / ".work", help="folder for the cases' files")
    parser.add_argument(
        "--elt-tap-executable",
        type=Path,
        help="run elt's cases with this tap-postgres program instead of the built-in (to try the harness)",
    )
    args = parser.parse_args(argv)
    if args.elt_tap_executable:  # elt runs it from the throwaway project's folder
        args.elt_tap_executable = args.elt_tap_executable.resolve()
    if args.rows < 100:
        parser.error("--rows must be at least 100 (the incremental cases update 1%% of them)")
    return args


def select_cases(only: str | None) -> list[Case]:
    """The table cases --only names (all without it); the docs case is asked about with `wants_docs`."""
    if not only:
        return list(CASES)
    names = _names(only)
    known = {case.name for case in CASES} | {DOCS_CASE, WORKERS_CASE}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"error: unknown case(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [case for case in CASES if case.name in names]


def wants_docs(only: str | None) -> bool:
    return not only or DOCS_CASE in _names(only)


def _names(only: str) -> list[str]:
    return [name.strip() for name in only.split(",") if name.strip()]


def make_venvs(names: set[str]) -> dict[str, Venv]:
    venvs = {}
    for name in sorted(names):
        started = time.perf_counter()
        venvs[name] = ensure_venv(SPECS[name], BENCH / ".venvs", say)
        state = venvs[name].error or "ready"
        say(f"venv {name}: {state} ({time.perf_counter() - started:.1f} s)")
    return venvs


def collect_versions(
    venvs: dict[str, Venv], postgres_version: str, elt_tap: Path | None
) -> dict[str, dict[str, str]]:
    versions: dict[str, dict[str, str]] = {
        "system": {
            "postgresql": postgres_version,
            "psql": _output(["psql", "--version"]).removeprefix("psql (PostgreSQL) "),
            "uv": _output([str(Path(sys.executable).parent / "uv"), "--version"]).removeprefix("uv "),
            "python": platform.python_version(),
        },
        "elt": python_versions(Path(sys.executable), ("elt", "duckdb", "pyarrow", "singer-sdk", "psycopg")),
    }
    commit = _output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _output(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    versions["elt"]["elt"] += f" ({commit}{', uncommitted changes' if dirty else ''})"
    versions["elt"]["tap-postgres"] = f"from {elt_tap}" if elt_tap else "built in"
    for name, venv in venvs.items():
        versions[name] = venv.versions
    return versions


def run_cases(b: Bench, selected: list[Case]) -> list[CaseResult]:
    """Every case in order; the incremental ones together, around one update of 1% of the rows."""
    results: list[CaseResult] = []
    incremental = [case for case in selected if case.setup is not None]
    for case in selected:
        if case.setup is None:
            results.append(run_one(b, case))
        elif case is incremental[0]:
            results += run_incremental(b, incremental)
    return results


def run_incremental(b: Bench, cases: list[Case]) -> list[CaseResult]:
    ready, results = [], {}
    for case in cases:
        say(f"{case.name}: initial load (not timed)")
        try:
            for name in case.venvs:
                b.venv(name)
            assert case.setup is not None
            case.setup(b, case)
            ready.append(case)
        except CaseFailed as failed:
            results[case.name] = failed_result(b, case, failed)
            report_line(results[case.name])
    if ready:
        b.updated_rows = touch_one_percent(b.pg)
        say(f"{b.pg.table}: {b.updated_rows:,} rows got a new updated_at")
        try:
            for case in ready:
                results[case.name] = run_one(b, case)
        finally:
            restore_updates(b.pg)
    return [results[case.name] for case in cases]


def run_one(b: Bench, case: Case) -> CaseResult:
    say(f"{case.name}: running")
    try:
        for name in case.venvs:
            b.venv(name)
        measurement, arrived = case.run(b, case)
    except CaseFailed as failed:
        result = failed_result(b, case, failed)
    except Exception as exc:  # a bug of this harness: the row says so, the traceback goes to stderr
        traceback.print_exc()
        result = failed_result(b, case, CaseFailed(f"harness error: {type(exc).__name__}: {exc}"))
    else:
        expected, problems = check_arrived(b, case, arrived)
        result = CaseResult(
            case.name,
            case.group,
            case.title,
            case.tools_text(b.versions),
            "rows differ" if problems else "ok",
            "; ".join(problems),
            measurement.seconds,
            measurement.peak_rss_mb,
            expected,
            arrived,
        )
    report_line(result)
    return result


def failed_result(b: Bench, case: Case, failed: CaseFailed) -> CaseResult:
    m = failed.measurement
    return CaseResult(
        case.name,
        case.group,
        case.title,
        case.tools_text(b.versions),
        "failed",
        b.redact(failed.reason),
        m.seconds if m else None,
        m.peak_rss_mb if m else None,
    )


def check_arrived(b: Bench, case: Case, arrived: Arrived) -> tuple[int, list[str]]:
    """The rows the case should have delivered, and what is wrong with what it did deliver."""
    expected = b.rows
    if case.group == "file":
        singer_file(b)
        expected = int(b.singer["records"])
    problems = []
    if arrived.rows < expected:
        problems.append(f"{expected - arrived.rows:,} of {expected:,} rows missing")
    elif arrived.rows > expected:
        problems.append(f"{arrived.rows - expected:,} rows more than {expected:,}")
    if arrived.distinct_ids is not None and arrived.distinct_ids != arrived.rows:
        problems.append(f"{arrived.rows - arrived.distinct_ids:,} duplicate ids")
    if arrived.updated is not None and case.group == "incremental" and arrived.updated != b.updated_rows:
        problems.append(f"{arrived.updated:,} of {b.updated_rows:,} updated rows carry the new updated_at")
    if arrived.moved is not None and arrived.moved < b.updated_rows:
        problems.append(f"moved {arrived.moved:,} rows, fewer than the {b.updated_rows:,} updated")
    return expected, problems


def report_line(result: CaseResult) -> None:
    rate = f"{result.rows_per_s:>12,.0f} rows/s" if result.rows_per_s else " " * 19
    seconds = f"{result.seconds:8.2f} s" if result.seconds is not None else " " * 10
    rss = f"{result.peak_rss_mb:7.0f} MB" if result.peak_rss_mb is not None else " " * 10
    rows = f"{result.arrived.rows:>12,} rows" if result.arrived else " " * 17
    status = result.status + (f": {result.reason}" if result.reason else "")
    say(f"{result.name:<20}{seconds} {rate} {rss} {rows}  {status}")


def machine_info() -> dict[str, Any]:
    cpu = "unknown CPU"
    memory_kb = 0
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "system": f"{platform.system()} {platform.release()}",
        "load_start": round(os.getloadavg()[0], 2),
    }


def _output(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
