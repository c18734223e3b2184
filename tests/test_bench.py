"""`make bench` runs end to end: a small table, the `\\copy` limit and elt's cases, a report either way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_elt

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.postgres
def test_bench_reports_copy_and_elt_cases_on_a_small_table(pg_schema: str, tmp_path: Path) -> None:
    args = ["--rows", "2000", "--only", "copy,elt_full,elt_tap", "--schema", pg_schema]
    args += ["--output", str(tmp_path), "--work", str(tmp_path / "work")]

    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    cases = {case["name"]: case for case in results["cases"]}
    assert list(cases) == ["copy", "elt_full", "elt_tap"]
    assert cases["copy"]["status"] == "ok"
    assert cases["copy"]["arrived"]["rows"] == 2000
    assert cases["copy"]["seconds"] > 0 and cases["copy"]["peak_rss_mb"] > 0
    for name in ("elt_full", "elt_tap"):
        case = cases[name]
        assert case["status"] == "ok", case
        assert case["arrived"]["rows"] == 2000
    markdown = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "| `copy` |" in markdown and "| `elt_full` |" in markdown
    assert proc.stdout.strip() == markdown.strip()


def generate(out: Path, models: int, *extra: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "dbt_project_gen.py"),
            str(out),
            "--models",
            str(models),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_synthetic_dbt_project_is_the_same_for_the_same_seed(tmp_path: Path) -> None:
    generate(tmp_path / "a", 60)
    generate(tmp_path / "b", 60)
    generate(tmp_path / "c", 60, "--seed", "8")

    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    models = sorted(f for f in files if f.suffix == ".sql" and f.parts[1] == "models")
    assert len(models) == 60
    sql = {name: "".join(p.read_text() for p in sorted((tmp_path / name).rglob("*.sql"))) for name in "ac"}
    assert sql["a"] != sql["c"]


def test_synthetic_dbt_project_compiles_and_builds_through_elt(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    generate(project, 40, "--rows", "5")

    run_elt("dbt", "compile", cwd=project, timeout=120)

    manifest = json.loads((project / "models" / "target" / "manifest.json").read_text(encoding="utf-8"))
    nodes = manifest["nodes"].values()
    models = [n for n in nodes if n["resource_type"] == "model"]
    assert len(models) == 40
    assert {m["config"]["materialized"] for m in models} >= {"view", "table", "incremental"}
    assert all(m["compiled_code"] for m in models if m["config"]["materialized"] != "ephemeral")
    assert len([n for n in nodes if n["resource_type"] == "test"]) >= 40
    assert len(manifest["sources"]) == 3 and manifest["exposures"]
    macros = {"macro.bench_shop.cents_to_dollars", "macro.bench_shop.safe_divide", "macro.dbt.concat"}
    assert macros <= {m for n in models for m in n["depends_on"]["macros"]}

    built = run_elt("run", "build", cwd=project, timeout=300)  # the SQL is valid, every test passes
    assert "2 step(s) succeeded" in built.stdout, built.stdout


def test_bench_times_elt_docs_generate_on_a_synthetic_project_without_postgres(tmp_path: Path) -> None:
    args = ["--only", "docs_1000_models", "--docs-models", "30"]
    args += ["--output", str(tmp_path), "--work", str(tmp_path / "work")]
    env = {**os.environ, "PGPORT": "1"}  # no PostgreSQL: the docs case needs none

    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )

    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    docs = results["docs"]
    assert results["cases"] == []
    assert docs["status"] == "ok", docs
    assert docs["models"] == 30 and docs["nodes"] > 30 and docs["columns"] > 30
    assert 0 < docs["seconds"] <= docs["limit_seconds"] and docs["peak_rss_mb"] > 0
    assert 0 <= docs["coverage"] <= 1 and docs["compile_seconds"] > 0
    assert "| `docs_1000_models` |" in (tmp_path / "results.md").read_text(encoding="utf-8")
