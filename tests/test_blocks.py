"""Python blocks (`elt.blocks`) in pipelines, through the CLI: SQL and Python interleaved, checks."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import yaml

from tests.conftest import run_elt


def write(project: Path, relative: str, text: str) -> None:
    path = project / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def run(project: Path, *args: str, code: int = 0) -> dict[str, Any]:
    proc = run_elt("run", *args, "--format", "json", cwd=project, check=False)
    assert proc.returncode == code, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def steps(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in result["steps"]}


def query(project: Path, sql: str) -> list[Any]:
    with duckdb.connect(str(project / ".elt" / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_transformer_between_dbt_staging_and_a_mart_that_selects_its_table_as_a_source(
    sample_project: Path,
) -> None:
    project = sample_project
    write(project, "blocks/scores.py", """
        from elt.blocks import check, ref, transformer

        @transformer(table="customer_scores")
        def score():
            customers = ref("stg_customers")
            customers["score"] = customers["customer_id"] % 7
            return customers[["customer_id", "country_code", "score"]]

        @check
        def scores_in_range(score):
            return score[(score["score"] < 0) | (score["score"] > 6)]
        """)  # fmt: skip
    write(project, "models/models/marts/country_scores.sql", """
        select country_code, count(*) as customers, sum(score) as total_score
        from {{ source('blocks', 'customer_scores') }}
        group by country_code
        """)  # fmt: skip
    pipelines = {"scored": {"steps": [
        {"name": "load", "sync": "tap-files target-duckdb"},
        {"name": "staging", "dbt": "run --select staging", "needs": ["load"]},
        {"name": "score", "python": "blocks/scores.py:score", "needs": ["staging"]},
        {"name": "in_range", "python": "blocks/scores.py:scores_in_range", "needs": ["score"]},
        {"name": "mart", "dbt": "run --select country_scores", "needs": ["in_range"]},
    ]}}  # fmt: skip
    config = yaml.safe_load((project / "elt.yml").read_text())
    config["pipelines"] = pipelines
    (project / "elt.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    result = steps(run(project, "scored"))

    assert {name: s["status"] for name, s in result.items()} == dict.fromkeys(result, "success")
    customers = query(project, "SELECT count(*) FROM analytics.stg_customers")[0][0]
    assert result["score"]["rows"] == customers > 0
    assert query(project, "SELECT count(*) FROM blocks.customer_scores") == [(customers,)]
    assert query(project, "SELECT sum(customers) FROM analytics.country_scores") == [(customers,)]
    sources = yaml.safe_load((project / "models" / "models" / "_elt_blocks.yml").read_text())
    assert sources["sources"] == [{
        "name": "blocks", "schema": "blocks", "description": sources["sources"][0]["description"],
        "tables": [{"name": "customer_scores"}],
    }]  # fmt: skip

    # --only: the check reads the transformer's table of the last run
    only = steps(run(project, "scored", "--only", "in_range"))
    assert list(only) == ["in_range"] and only["in_range"]["status"] == "success"


BLOCKS_PROJECT = """
    version: 1
    pipelines:
      p:
        steps:
          - {name: orders, python: blocks/shop.py:orders}
          - {name: totals, python: blocks/shop.py:totals, needs: [orders]}
          - {name: positive, python: blocks/shop.py:positive, needs: [orders]}
          - {name: report, python: blocks/shop.py:report, needs: [totals, positive]}
    """

SHOP_BLOCKS = """
    import json

    import pandas as pd
    from elt.blocks import check, exporter, loader, transformer

    @loader
    def orders():
        return pd.DataFrame({"order_id": [1, 2, 3], "total": [10.0, -5.0, -1.0]})

    @transformer(schema="marts")
    def totals(orders):
        return orders.groupby(orders["total"] > 0).size().reset_index(name="n")

    @check
    def positive(orders):
        bad = orders[orders["total"] < 0]
        return f"{len(bad)} orders have a negative total" if len(bad) else True

    @exporter
    def report(totals, inputs):
        report = {"groups": len(totals), "columns": list(totals.columns), "from": sorted(inputs)}
        with open("report.json", "w") as out:
            json.dump(report, out)
        return report
    """


def test_blocks_write_tables_pass_dataframes_and_a_failing_check_fails_the_run(write_project) -> None:
    project = write_project(BLOCKS_PROJECT)
    write(project, "blocks/shop.py", SHOP_BLOCKS)

    result = steps(run(project, "p", code=1))

    assert result["orders"]["status"] == "success" and result["totals"]["status"] == "success"
    assert query(project, "SELECT count(*) FROM blocks.orders") == [(3,)]
    assert query(project, "SELECT n FROM marts.totals ORDER BY n") == [(1,), (2,)]
    assert result["positive"]["status"] == "failed"
    assert (
        result["positive"]["error"] == "check blocks/shop.py:positive failed: 2 orders have a negative total"
    )
    assert result["report"]["status"] == "skipped"  # the run stopped after the check failed

    # --only runs one block with the cached outputs of its upstream steps
    only = steps(run(project, "p", "--only", "report"))
    assert list(only) == ["report"] and only["report"]["status"] == "success"
    report = json.loads((project / "report.json").read_text())
    assert report == {"groups": 2, "columns": ["total", "n"], "from": ["positive", "totals"]}


def test_isolated_blocks_run_in_their_own_process_with_the_same_outputs_and_errors(write_project) -> None:
    isolated = BLOCKS_PROJECT
    for block in ("totals", "positive"):
        isolated = isolated.replace(f"shop.py:{block},", f"shop.py:{block}, isolate: true,")
    project = write_project(isolated)
    write(project, "blocks/shop.py", SHOP_BLOCKS.replace(
        "def totals(orders):\n", "def totals(orders):\n        import os\n        print('pid', os.getpid())\n"
    ))  # fmt: skip

    result = steps(run(project, "p", code=1))

    assert result["totals"]["status"] == "success" and result["totals"]["rows"] == 2
    assert query(project, "SELECT n FROM marts.totals ORDER BY n") == [(1,), (2,)]
    log = Path(result["totals"]["log_file"]).read_text()
    assert "pid" in log
    assert (
        result["positive"]["error"] == "check blocks/shop.py:positive failed: 2 orders have a negative total"
    )


def test_only_gives_a_python_step_its_upstream_values_of_the_last_run(write_project) -> None:
    project = write_project("""
        version: 1
        pipelines:
          p:
            steps:
              - {name: count, shell: 'cat n.txt > "$ELT_STEP_OUTPUT"'}
              - {name: double, python: blocks/calc.py:double, needs: [count]}
        """)  # fmt: skip
    write(project, "blocks/calc.py", """
        import json

        def double(count, inputs):
            with open("double.json", "w") as out:
                json.dump([count * 2, sorted(inputs)], out)
        """)  # fmt: skip
    (project / "n.txt").write_text("21")
    assert steps(run(project, "p"))["double"]["status"] == "success"
    (project / "n.txt").write_text("50")  # not read again: `count` does not run

    only = steps(run(project, "p", "--only", "double"))

    assert list(only) == ["double"] and only["double"]["status"] == "success"
    assert json.loads((project / "double.json").read_text()) == [42, ["count"]]


def outputs(project: Path, run_id: str) -> dict[str, Any]:
    shown = json.loads(run_elt("runs", "show", run_id, "--format", "json", cwd=project).stdout)
    return {s["name"]: (s.get("output") or {}).get("value") for s in shown["steps"]}


def test_arguments_give_a_block_earlier_steps_values_the_item_and_variables_by_parameter(
    write_project,
) -> None:
    project = write_project("""
        version: 1
        pipelines:
          p:
            variables: {factor: 3, folder: out}
            steps:
              - {name: numbers, python: blocks/calc.py:numbers, arguments: {count: 3}}
              - name: frame
                python: blocks/calc.py:frame
                needs: [numbers]
                arguments: {values: "${steps.numbers.output}"}
              - name: scaled
                python: blocks/calc.py:scale
                needs: [numbers, frame]
                arguments:
                  values: "${steps.numbers.output}"
                  by: "${vars.factor}"
                  table: "${steps.frame.output}"
              - name: each
                python: blocks/calc.py:each
                needs: [scaled]
                for_each: "${steps.scaled.output}"
                arguments: {value: "${for_each.item}", path: "${vars.folder}/${for_each.item}.txt"}
              - name: total
                python: blocks/calc.py:total
                needs: [each]
                arguments: {parts: ["${steps.numbers.output}", "${steps.each.output}"]}
        """)  # fmt: skip
    write(project, "blocks/calc.py", """
        import asyncio

        import pandas as pd
        from elt.blocks import exporter, loader, transformer

        @loader(strict=False)
        def numbers(count):
            return list(range(1, count + 1))

        @transformer
        def frame(values):
            return pd.DataFrame({"v": values})

        @transformer(strict=False)
        async def scale(values, by, table):
            await asyncio.sleep(0)
            return [v * by + int(table["v"].sum()) for v in values]

        @exporter
        def each(value, path):
            return f"{path}={value}"

        @exporter
        def total(parts, numbers=None):
            return {"parts": parts, "by_name": numbers}
        """)  # fmt: skip

    result = run(project, "p")

    assert {s["name"]: s["status"] for s in result["steps"]}["total"] == "success", result
    values = outputs(project, result["run_id"])
    assert values["numbers"] == [1, 2, 3]  # a @loader(strict=False) that returns no table: its value
    assert values["frame"] is None and query(project, "SELECT sum(v) FROM blocks.frame") == [(6,)]
    assert values["scaled"] == [9, 12, 15]  # awaited; `table` was the DataFrame of `frame`
    assert values["each"] == ["out/9.txt=9", "out/12.txt=12", "out/15.txt=15"]
    # a reference to a step two steps up; a parameter named after a step that is not upstream: default
    assert values["total"] == {"parts": [[1, 2, 3], values["each"]], "by_name": None}


def test_a_strict_transformer_still_refuses_a_value_and_arguments_name_real_parameters(
    write_project,
) -> None:
    project = write_project("""
        version: 1
        pipelines:
          p:
            steps:
              - {name: strict, python: blocks/b.py:strict}
          q:
            steps:
              - {name: wrong, python: blocks/b.py:plain, arguments: {nope: 1}}
        """)  # fmt: skip
    write(project, "blocks/b.py", """
        from elt.blocks import transformer

        @transformer
        def strict():
            return [1, 2]

        def plain(x):
            return x
        """)  # fmt: skip

    failed = steps(run(project, "p", code=1))["strict"]
    assert "returned list, but the block is a @transformer that writes blocks.strict" in failed["error"]
    wrong = steps(run(project, "q", code=1))["wrong"]
    assert "`arguments` names 'nope', which is no parameter of the function" in wrong["error"]
    write(project, "elt.yml", """
        version: 1
        pipelines:
          r:
            steps:
              - {name: a, python: blocks/b.py:plain, arguments: {x: 1}}
              - {name: b, python: blocks/b.py:plain, arguments: {x: "${steps.a.output}"}}
        """)  # fmt: skip
    invalid = run_elt("validate", cwd=project, check=False)
    assert invalid.returncode != 0
    assert "pipelines.r.steps[1].arguments.x" in invalid.stderr
    assert "expected ${steps.NAME.output} of a step this one needs" in invalid.stderr
