"""`elt preview` of a dbt model, a stream and a Python block, as a user runs it: nothing is written."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import duckdb

from tests.conftest import run_elt

SCORE_BLOCK = """
    from elt.blocks import ref, transformer

    @transformer(table="customer_scores")
    def score():
        customers = ref("tap_files.customers")
        customers["score"] = customers["customer_id"] * 10
        return customers[["customer_id", "score"]].sort_values("customer_id")
    """


def preview(project: Path, *args: str) -> str:
    return run_elt("preview", *args, cwd=project).stdout


def relations(project: Path) -> set[str]:
    with duckdb.connect(str(project / ".elt" / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables"
        ).fetchall()
    return {r[0] for r in rows}


def test_preview_of_a_stream_a_model_and_a_block_shows_rows_and_writes_nothing(sample_project: Path) -> None:
    project = sample_project
    (project / "blocks").mkdir()
    (project / "blocks" / "score.py").write_text(textwrap.dedent(SCORE_BLOCK))

    # a stream, before anything was synced: no target, no state
    stream = json.loads(preview(project, "tap-files.orders", "--limit", "3", "--format", "json"))
    assert [r["order_id"] for r in stream] == [1, 2, 3]
    assert {"customer_id", "status", "updated_at"} <= set(stream[0])
    table = preview(project, "orders", "-n", "2").splitlines()  # a stream name unique among the taps
    assert table[0].split(" | ")[0].strip() == "order_id" and set(table[1]) <= {"-", "+"}
    assert [line.split(" | ")[0].strip() for line in table[2:4]] == ["1", "2"]
    assert table[-1] == "(2 rows of stream tap-files.orders)"
    assert not (project / ".elt" / "warehouse.duckdb").exists()
    assert json.loads(run_elt("state", "list", "--format", "json", cwd=project).stdout) in (
        [],
        {},
        {"states": []},
    )

    run_elt("sync", "tap-files", "target-duckdb", cwd=project)
    before = relations(project)

    # a model: dbt show, no view or table built
    model = json.loads(preview(project, "stg_customers", "--limit", "4", "--format", "json"))
    assert len(model) == 4 and {"customer_id", "email", "country_code"} <= set(model[0])
    text = preview(project, "stg_customers", "--limit", "2")
    assert text.splitlines()[-1] == "(2 rows of model stg_customers)"
    header, rule, *rows, footer = text.splitlines()
    assert all(len(cell) <= 40 for line in [header, *rows] for cell in line.split(" | "))

    # a block, by spec and by function name: its result, no table written
    block = json.loads(preview(project, "blocks/score.py:score", "--limit", "2", "--format", "json"))
    assert block == [{"customer_id": 1, "score": 10}, {"customer_id": 2, "score": 20}]
    lines = preview(project, "score", "--limit", "1").splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["customer_id", "score"]
    assert [c.strip() for c in lines[2].split("|")] == ["1", "10"]
    assert relations(project) == before


def test_preview_of_unknown_names_says_what_was_not_found_and_what_is_close(sample_project: Path) -> None:
    project = sample_project
    (project / "blocks").mkdir()
    (project / "blocks" / "score.py").write_text(textwrap.dedent(SCORE_BLOCK))

    def error(name: str) -> str:
        proc = run_elt("preview", name, cwd=project, check=False)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        return proc.stderr

    assert "no model, stream or block named 'stg_customer'" in error("stg_customer")
    assert "did you mean stg_customers" in error("stg_customer")
    assert "tap-files has no stream 'order'" in error("tap-files.order")
    assert "did you mean orders" in error("tap-files.order")
    missing = error("blocks/score.py:scor")
    assert "score.py has no function 'scor'" in missing and "did you mean 'score'" in missing
