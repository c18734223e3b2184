"""`elt docs generate` on a synthetic 1,000-model dbt project: the issue's limit is 30 s, dbt parse excluded.

    .venv/bin/python bench/docs_bench.py [--models 1000] [--seed 7] [--work DIR]

Writes the project with bench/dbt_project_gen.py into a fresh folder (a temporary one unless --work),
runs `elt dbt compile` once (measured, but not part of the figure: the manifest and compiled SQL are what
docs reads, and dbt's parse is excluded), then times `elt docs generate --rebuild --format json` (the
lineage built from its inputs, column lineage included, and the site written) and once more without
--rebuild (the lineage from its cache). Each command runs under bench/measure.py: wall seconds and the
process tree's peak RSS. Nodes, columns and column coverage are what `elt docs generate` printed.

`make bench` runs this as the case `docs_1000_models` (bench/run.py); alone it prints the result as JSON
and exits 1 when the command failed or went over the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cases import PROJECT_BIN, ROOT, failure_reason
from dbt_project_gen import DEFAULT_MODELS, DEFAULT_SEED, generate_project
from measure import Measurement, run_measured
from peer_venvs import python_versions

CASE = "docs_1000_models"
TITLE = "elt docs generate on a synthetic dbt project (bench/dbt_project_gen.py)"
LIMIT_SECONDS = 30.0
TOOLS = ("elt", "dbt-core", "dbt-duckdb", "sqlglot")
# Variables that would point the generated project elsewhere (another environment, another warehouse).
PROJECT_VARIABLES = ("ELT_ENVIRONMENT", "ELT_WAREHOUSE")


@dataclass(frozen=True)
class DocsResult:
    """One run of the docs benchmark; `seconds` and `peak_rss_mb` are the cold `elt docs generate`'s."""

    models: int
    status: str  # ok | over limit | failed
    reason: str = ""
    project: str = ""
    tools: str = ""
    limit_seconds: float = LIMIT_SECONDS
    seconds: float | None = None
    peak_rss_mb: float | None = None
    warm_seconds: float | None = None  # the same command again, the lineage read from its cache
    compile_seconds: float | None = None  # `elt dbt compile` before, not part of the figure
    compile_peak_rss_mb: float | None = None
    nodes: int | None = None
    edges: int | None = None
    columns: int | None = None
    coverage: float | None = None  # columns whose lineage was resolved / all columns
    lineage_seconds: float | None = None  # elt's own split of `seconds`: building the lineage ...
    site_seconds: float | None = None  # ... and writing the site
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        for key in ("seconds", "warm_seconds", "compile_seconds", "lineage_seconds", "site_seconds"):
            value[key] = round(value[key], 3) if value[key] is not None else None
        for key in ("peak_rss_mb", "compile_peak_rss_mb"):
            value[key] = round(value[key], 1) if value[key] is not None else None
        return value


def run_docs_bench(
    folder: Path, models: int = DEFAULT_MODELS, seed: int = DEFAULT_SEED, *, timeout: float = 900.0
) -> DocsResult:
    """Generate the project in `folder`/project, compile it, time `elt docs generate` twice.

    The commands' logs and output are left in `folder`."""
    project = folder / "project"
    generate_project(project, models, seed, force=True)
    tools = ", ".join(
        f"{name} {version}" for name, version in python_versions(Path(sys.executable), TOOLS).items()
    )
    base = DocsResult(models, "failed", project=str(project), tools=tools)
    elt = str(PROJECT_BIN / "elt")
    env = {k: v for k, v in os.environ.items() if k not in PROJECT_VARIABLES}

    compiled = _run([elt, "dbt", "compile"], folder / "compile.log", project, env, timeout)
    base = replace(base, compile_seconds=compiled.seconds, compile_peak_rss_mb=compiled.peak_rss_mb)
    if problem := _problem(compiled, folder / "compile.log", timeout):
        return replace(base, reason=f"elt dbt compile: {problem}")
    if not (ROOT / "elt" / "cli" / "docs.py").is_file():
        return replace(base, reason="`elt docs generate` is not there yet (no elt/cli/docs.py)")

    command = [elt, "docs", "generate", "--format", "json"]
    cold = _run([*command, "--rebuild"], folder / "docs.log", project, env, timeout, folder / "docs.json")
    base = replace(base, seconds=cold.seconds, peak_rss_mb=cold.peak_rss_mb)
    if problem := _problem(cold, folder / "docs.log", timeout):
        return replace(base, reason=f"elt docs generate: {problem}")
    try:
        printed = json.loads((folder / "docs.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return replace(base, reason=f"elt docs generate printed no JSON ({folder / 'docs.json'}): {exc}")
    warm = _run(command, folder / "docs-warm.log", project, env, timeout, folder / "docs-warm.json")
    over = cold.seconds > LIMIT_SECONDS
    return replace(
        base,
        status="over limit" if over else "ok",
        reason=f"{cold.seconds:.1f} s, over the {LIMIT_SECONDS:.0f} s limit" if over else "",
        warm_seconds=warm.seconds if warm.returncode == 0 else None,
        nodes=_count(printed.get("nodes")),
        edges=_count(printed.get("edges")),
        columns=_count(printed.get("columns")),
        coverage=_ratio(printed.get("coverage")),
        lineage_seconds=printed.get("lineage_seconds"),
        site_seconds=printed.get("site_seconds"),
        notes=[str(note) for note in printed.get("notes") or []],
    )


def _run(
    args: list[str], log: Path, cwd: Path, env: dict[str, str], timeout: float, stdout: Path | None = None
) -> Measurement:
    return run_measured(
        args, log=log, stdout=stdout or log.with_suffix(".out"), env=env, cwd=cwd, timeout=timeout
    )


def _problem(m: Measurement, log: Path, timeout: float) -> str | None:
    if m.timed_out:
        return f"timed out after {timeout:.0f} s ({log})"
    if m.returncode != 0:
        return f"exit {m.returncode}: {failure_reason(log)}"
    return None


def _count(value: Any) -> int | None:
    """A count elt printed: a number, or a list/object of the things counted."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, list | dict):
        return len(value)
    return None


def _ratio(value: Any) -> float | None:
    """Column coverage as printed: a ratio, or an object holding one (`ratio`, else resolved/total)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        if isinstance(value.get("ratio"), int | float):
            return float(value["ratio"])
        resolved, total = value.get("resolved"), value.get("total")
        if isinstance(resolved, int | float) and isinstance(total, int | float) and total:
            return resolved / total
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/docs_bench.py", description="Time elt docs generate on a synthetic dbt project."
    )
    parser.add_argument("--models", type=int, default=DEFAULT_MODELS, help="dbt models (default 1000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed (default 7)")
    parser.add_argument(
        "--work", type=Path, help="folder for the project and logs (default: a new temporary one)"
    )
    args = parser.parse_args(argv)
    folder = (args.work or Path(tempfile.mkdtemp(prefix="elt-docs-bench-"))).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    print(f"[docs bench] {args.models} models in {folder}", file=sys.stderr, flush=True)
    result = run_docs_bench(folder, args.models, args.seed)
    print(json.dumps(result.to_json(), indent=2))
    return 0 if result.status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
