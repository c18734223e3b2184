"""`make bench` runs end to end: a small table, the `\\copy` limit and elt's cases, a report either way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
