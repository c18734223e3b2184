"""Lineage through the CLI on the sample project: the graph, column lineage checked column by column
against what the SQL says, impact, formats, the cache, and columns that cannot be traced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elt.lineage.columns import Relation, trace_query
from tests.conftest import run_elt

P = "model.elt_demo."
SRC = "source.elt_demo.tap_files."

# Direct upstream columns of every column of the sample project's models and snapshot, written from
# reading their SQL: column -> {(node, column, kind)}. An empty set: derived from no column (count(*),
# a constant).
EXPECTED: dict[str, dict[str, set[tuple[str, str, str]]]] = {
    "stg_customers": {
        "customer_id": {(SRC + "customers", "customer_id", "transform")},
        "first_name": {(SRC + "customers", "first_name", "transform")},
        "last_name": {(SRC + "customers", "last_name", "transform")},
        "email": {(SRC + "customers", "email", "transform")},
        "country_code": {(SRC + "customers", "country", "transform")},
        "created_at": {(SRC + "customers", "created_at", "transform")},
        "updated_at": {(SRC + "customers", "updated_at", "transform")},
        "synced_at": {(SRC + "customers", "_elt_synced_at", "transform")},
    },
    "stg_orders": {
        "order_id": {(SRC + "orders", "order_id", "transform")},
        "customer_id": {(SRC + "orders", "customer_id", "transform")},
        "order_status": {(SRC + "orders", "status", "transform")},
        "ordered_at": {(SRC + "orders", "ordered_at", "transform")},
        "updated_at": {(SRC + "orders", "updated_at", "transform")},
        "synced_at": {(SRC + "orders", "_elt_synced_at", "transform")},
    },
    "stg_order_items": {
        "order_item_id": {(SRC + "order_items", "order_item_id", "transform")},
        "order_id": {(SRC + "order_items", "order_id", "transform")},
        "product_id": {(SRC + "order_items", "product_id", "transform")},
        "quantity": {(SRC + "order_items", "quantity", "transform")},
        "unit_price": {(SRC + "order_items", "unit_price", "transform")},
        "line_total": {
            (SRC + "order_items", "quantity", "transform"),
            (SRC + "order_items", "unit_price", "transform"),
        },
        "synced_at": {(SRC + "order_items", "_elt_synced_at", "transform")},
    },
    "stg_payments": {
        "payment_id": {(SRC + "payments", "payment_id", "transform")},
        "order_id": {(SRC + "payments", "order_id", "transform")},
        "payment_method": {(SRC + "payments", "method", "transform")},
        "amount": {(SRC + "payments", "amount", "transform")},
        "paid_at": {(SRC + "payments", "paid_at", "transform")},
        "synced_at": {(SRC + "payments", "_elt_synced_at", "transform")},
    },
    "stg_products": {
        "product_id": {(SRC + "products", "product_id", "transform")},
        "product_name": {(SRC + "products", "name", "transform")},
        "category": {(SRC + "products", "category", "transform")},
        "list_price": {(SRC + "products", "price", "transform")},
        "updated_at": {(SRC + "products", "updated_at", "transform")},
        "synced_at": {(SRC + "products", "_elt_synced_at", "transform")},
    },
    "fct_orders": {
        "order_id": {(P + "stg_orders", "order_id", "copy")},
        "customer_id": {(P + "stg_orders", "customer_id", "copy")},
        "order_status": {(P + "stg_orders", "order_status", "copy")},
        "ordered_at": {(P + "stg_orders", "ordered_at", "copy")},
        "order_date": {(P + "stg_orders", "ordered_at", "transform")},
        "updated_at": {(P + "stg_orders", "updated_at", "copy")},
        "line_count": set(),
        "item_quantity": {(P + "stg_order_items", "quantity", "aggregate")},
        "order_total": {(P + "stg_order_items", "line_total", "aggregate")},
        "payment_count": set(),
        "amount_paid": {(P + "stg_payments", "amount", "aggregate")},
        "is_revenue": {("seed.elt_demo.order_statuses", "is_revenue", "transform")},
        "dbt_invocation_id": set(),
    },
    "dim_customers": {
        "customer_id": {(P + "stg_customers", "customer_id", "copy")},
        "first_name": {(P + "stg_customers", "first_name", "copy")},
        "last_name": {(P + "stg_customers", "last_name", "copy")},
        "full_name": {
            (P + "stg_customers", "first_name", "transform"),
            (P + "stg_customers", "last_name", "transform"),
        },
        "email": {(P + "stg_customers", "email", "copy")},
        "country_code": {(P + "stg_customers", "country_code", "copy")},
        "created_at": {(P + "stg_customers", "created_at", "copy")},
        "first_ordered_at": {(P + "fct_orders", "ordered_at", "aggregate")},
        "last_ordered_at": {(P + "fct_orders", "ordered_at", "aggregate")},
        "order_count": set(),
        "revenue_order_count": {(P + "fct_orders", "is_revenue", "aggregate")},
        "lifetime_value": {
            (P + "fct_orders", "is_revenue", "aggregate"),
            (P + "fct_orders", "order_total", "aggregate"),
        },
    },
    "daily_revenue": {
        "order_date": {(P + "fct_orders", "order_date", "copy")},
        "order_count": set(),
        "revenue_order_count": {(P + "fct_orders", "is_revenue", "aggregate")},
        "customer_count": {(P + "fct_orders", "customer_id", "aggregate")},
        "items_sold": {
            (P + "fct_orders", "is_revenue", "aggregate"),
            (P + "fct_orders", "item_quantity", "aggregate"),
        },
        "gross_revenue": {
            (P + "fct_orders", "order_status", "aggregate"),
            (P + "fct_orders", "order_total", "aggregate"),
        },
        "returned_revenue": {
            (P + "fct_orders", "order_status", "aggregate"),
            (P + "fct_orders", "order_total", "aggregate"),
        },
        "net_revenue": {
            (P + "fct_orders", "is_revenue", "aggregate"),
            (P + "fct_orders", "order_total", "aggregate"),
        },
    },
    "customers_snapshot": {
        **{
            c: {(P + "stg_customers", c, "copy")}
            for c in (
                "customer_id",
                "first_name",
                "last_name",
                "email",
                "country_code",
                "created_at",
                "updated_at",
                "synced_at",
            )
        },  # fmt: skip
        **{c: set() for c in ("dbt_scd_id", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to")},
    },
}

# Columns that decide which rows a model has (where, join on, group by, the window of latest_version).
EXPECTED_INDIRECT = {
    "stg_customers": {(SRC + "customers", c) for c in ("customer_id", "updated_at", "_elt_synced_at")},
    "stg_order_items": {(SRC + "order_items", c) for c in ("order_item_id", "_elt_synced_at")},
    "fct_orders": {
        (P + "stg_orders", "order_id"),
        (P + "stg_orders", "order_status"),
        (P + "stg_order_items", "order_id"),
        (P + "stg_payments", "order_id"),
        ("seed.elt_demo.order_statuses", "order_status"),
    },  # fmt: skip
    "daily_revenue": {(P + "fct_orders", "order_date")},
    "dim_customers": {(P + "stg_customers", "customer_id"), (P + "fct_orders", "customer_id")},
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample project, synced and built once."""
    from elt.scaffold import create_project

    project = tmp_path_factory.mktemp("lineage") / "shop"
    create_project(project)
    run_elt("sync", "tap-files", "target-duckdb", cwd=project)
    run_elt("build", cwd=project)
    return project


def graph_json(project: Path) -> dict:
    """The whole graph, each node in full, as `elt lineage show` leaves it in its cache."""
    run_elt("lineage", "show", "--format", "json", cwd=project)
    [cache] = (project / ".elt" / "lineage").glob("graph-*.json")
    return json.loads(cache.read_text())


def test_column_lineage_of_every_model_column_matches_the_sql(shop: Path) -> None:
    nodes = {n["id"]: n for n in graph_json(shop)["nodes"]}

    for model, columns in EXPECTED.items():
        node = nodes.get(P + model) or nodes[f"snapshot.elt_demo.{model}"]
        found = {
            c["name"]: {(u["node"], u["column"], u["kind"]) for u in c["upstream"]} for c in node["columns"]
        }
        assert list(found) == list(columns), f"{model}: columns in order"
        for column, upstream in columns.items():
            assert found[column] == upstream, f"{model}.{column}"
        assert all(c["unresolved"] is None for c in node["columns"]), model
    for model, indirect in EXPECTED_INDIRECT.items():
        got = {(u["node"], u["column"]) for u in nodes[P + model]["indirect"]}
        assert indirect <= got, model
        assert all(u["kind"] == "filter-join" for u in nodes[P + model]["indirect"])


def test_graph_links_streams_raw_tables_sources_models_tests_exposures_and_exports(shop: Path) -> None:
    graph = graph_json(shop)
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    types = {n["id"]: n["type"] for n in graph["nodes"]}

    assert ("stream:tap-files.orders", "table:target-duckdb.tap_files.orders") in edges
    assert ("table:target-duckdb.tap_files.orders", SRC + "orders") in edges
    assert (SRC + "orders", P + "stg_orders") in edges
    assert ("seed.elt_demo.order_statuses", P + "fct_orders") in edges
    assert (P + "stg_customers", "snapshot.elt_demo.customers_snapshot") in edges
    assert (P + "daily_revenue", "exposure.elt_demo.finance_daily_revenue") in edges
    assert (P + "daily_revenue", "export:daily.revenue") in edges
    assert {t for t in types.values()} >= {
        "stream", "table", "source", "seed", "model", "snapshot", "test", "exposure", "export",
    }  # fmt: skip
    fct = next(n for n in graph["nodes"] if n["id"] == P + "fct_orders")
    assert fct["sql"] and "stg_orders" in fct["sql"] and "{{" not in fct["sql"]  # compiled SQL
    assert "unique_fct_orders_order_id" in " ".join(fct["tests"])
    assert graph["coverage"] == {"columns": 78, "resolved": 78, "ratio": 1.0, "unresolved": []}


def test_lineage_column_json_goes_back_to_the_stream_fields(shop: Path) -> None:
    out = run_elt("lineage", "column", "fct_orders.order_total", "--format", "json", cwd=shop).stdout
    result = json.loads(out)

    assert result["column"] == "fct_orders.order_total"
    upstream = {(u["node"], u["column"], u["kind"]) for u in result["upstream"]}
    assert upstream == {
        (P + "stg_order_items", "line_total", "aggregate"),
        (SRC + "order_items", "quantity", "transform"),
        (SRC + "order_items", "unit_price", "transform"),
        ("table:target-duckdb.tap_files.order_items", "quantity", "copy"),
        ("table:target-duckdb.tap_files.order_items", "unit_price", "copy"),
        ("stream:tap-files.order_items", "quantity", "copy"),
        ("stream:tap-files.order_items", "unit_price", "copy"),
    }
    text = run_elt("lineage", "column", "fct_orders.order_total", cwd=shop).stdout
    assert "← stg_order_items.line_total  (aggregate)" in text
    assert "stream tap-files.order_items.unit_price  (copy)" in text


def test_lineage_impact_of_a_column_and_of_a_stream(shop: Path) -> None:
    column = json.loads(
        run_elt("lineage", "impact", "stg_order_items.line_total", "--format", "json", cwd=shop).stdout
    )
    affected = {(c["node"], c["column"]) for c in column["columns"]}
    assert (P + "fct_orders", "order_total") in affected
    assert (P + "daily_revenue", "net_revenue") in affected
    assert (P + "dim_customers", "lifetime_value") in affected
    assert ("export:daily.revenue", "net_revenue") in affected
    assert (P + "stg_orders", "order_id") not in affected  # upstream, not downstream
    nodes = {n["node"] for n in column["nodes"]}
    assert "exposure.elt_demo.finance_daily_revenue" in nodes
    assert any(n.startswith("test.elt_demo.not_null_fct_orders_order_total") for n in nodes)
    assert not any(n.startswith("test.elt_demo.unique_stg_orders_order_id") for n in nodes)

    stream = json.loads(
        run_elt("lineage", "impact", "stream:tap-files.orders", "--format", "json", cwd=shop).stdout
    )
    reached = {n["node"] for n in stream["nodes"]}
    assert {
        SRC + "orders",
        P + "stg_orders",
        P + "fct_orders",
        P + "daily_revenue",
        "export:daily.revenue",
    } <= reached
    assert P + "stg_products" not in reached


def test_lineage_show_limits_depth_and_speaks_dot_and_mermaid(shop: Path) -> None:
    hood = json.loads(
        run_elt("lineage", "show", "fct_orders", "--upstream", "1", "--format", "json", cwd=shop).stdout
    )
    ids = {n["id"]: n["depth"] for n in hood["nodes"]}
    assert ids == {
        P + "fct_orders": 0, P + "stg_orders": -1, P + "stg_order_items": -1, P + "stg_payments": -1,
        "seed.elt_demo.order_statuses": -1,
    }  # fmt: skip
    focus = next(n for n in hood["nodes"] if n["depth"] == 0)
    assert focus["last_run"]["status"] == "success"

    dot = run_elt("lineage", "show", "fct_orders", "--downstream", "1", "--format", "dot", cwd=shop).stdout
    assert (
        dot.startswith("digraph lineage {")
        and '"model.elt_demo.fct_orders" -> "model.elt_demo.daily_revenue";' in dot
    )
    mermaid = run_elt("lineage", "show", "daily_revenue", "--format", "mermaid", cwd=shop).stdout
    assert mermaid.startswith("flowchart LR") and '"export: daily.revenue"' in mermaid


def test_unknown_names_get_a_clear_error(shop: Path) -> None:
    proc = run_elt("lineage", "column", "fct_order.order_total", cwd=shop, check=False)
    assert proc.returncode == 2
    assert "no node 'fct_order'" in proc.stderr and "fct_orders" in proc.stderr
    proc = run_elt("lineage", "column", "fct_orders.total", cwd=shop, check=False)
    assert "model.elt_demo.fct_orders has no column 'total'" in proc.stderr


def test_graph_is_cached_and_rebuilt_when_a_model_changes(shop: Path, tmp_path: Path) -> None:
    """Its own copy of the project: it adds models."""
    import shutil

    project = tmp_path / "shop"
    shutil.copytree(shop, project, symlinks=True)
    run_elt("lineage", "show", cwd=project)
    [cache] = (project / ".elt" / "lineage").glob("graph-*.json")
    before = cache.stat().st_mtime_ns
    run_elt("lineage", "show", cwd=project)
    assert cache.stat().st_mtime_ns == before  # nothing changed: the cached graph

    marts = project / "models" / "models" / "marts"
    (marts / "order_margin.sql").write_text(
        "select o.order_id, o.order_total - o.amount_paid as unpaid, m.margin, mystery_column\n"
        "from {{ ref('fct_orders') }} as o\n"
        "left join main.margins as m on m.order_id = o.order_id\n"
        "cross join main.other_unknown\n"
    )
    (marts / "anything.sql").write_text("select * from main.margins\n")
    proc = run_elt("lineage", "coverage", "--format", "json", cwd=project)
    assert "compiled the dbt project first" in proc.stderr
    coverage = json.loads(proc.stdout)
    unresolved = {(u["node"], u["column"]): u["reason"] for u in coverage["unresolved"]}

    assert cache.stat().st_mtime_ns != before
    margin = json.loads(
        run_elt("lineage", "column", "order_margin.unpaid", "--format", "json", cwd=project).stdout
    )
    assert {(u["node"], u["column"], u["kind"]) for u in margin["upstream"] if u["depth"] == 1} == {
        (P + "fct_orders", "order_total", "transform"), (P + "fct_orders", "amount_paid", "transform"),
    }  # fmt: skip
    assert "main.margins, which is not a node of the project" in unresolved[(P + "order_margin", "margin")]
    assert "could be a column of any of" in unresolved[(P + "order_margin", "mystery_column")]
    assert (P + "order_margin", "order_id") not in unresolved
    assert (
        unresolved[(P + "anything", "*")] == "select * from warehouse.main.margins whose columns are unknown"
    )
    assert coverage["columns"] == 78 + 4 + 1 and coverage["resolved"] == 78 + 2
    text = run_elt("lineage", "coverage", cwd=project).stdout
    assert "80 of 83 columns traced" in text


def test_trace_query_handles_unions_windows_subqueries_and_star_expansion() -> None:
    relations = {
        "db.raw.a": Relation("source.a", ("id", "amount", "kind", "at")),
        "db.raw.b": Relation("source.b", ("id", "amount", "at")),
    }
    sql = """
        with both as (
            select id, amount, at from raw.a where kind = 'x'
            union all
            select id, amount * 100, at from raw.b
        ),
        ranked as (
            select *, row_number() over (partition by id order by at desc) as rank_in_id,
                   sum(amount) over (partition by id) as id_total
            from both
        )
        select id, amount, rank_in_id, id_total,
               (select max(b.amount) from raw.b as b where b.id = ranked.id) as best_b
        from ranked
        qualify rank_in_id = 1
    """
    result = trace_query(sql, dialect="duckdb", relations=relations, database="db", schema="analytics")
    cols = {c.name: {(u.node, u.column, u.kind) for u in c.upstream} for c in result.columns}

    assert result.error is None
    assert cols["id"] == {("source.a", "id", "copy"), ("source.b", "id", "copy")}
    assert cols["amount"] == {("source.a", "amount", "copy"), ("source.b", "amount", "transform")}
    assert cols["rank_in_id"] == {
        ("source.a", "id", "transform"), ("source.b", "id", "transform"),
        ("source.a", "at", "transform"), ("source.b", "at", "transform"),
    }  # fmt: skip
    assert cols["id_total"] == {  # the window's partition decides the value too
        ("source.a", "amount", "aggregate"), ("source.b", "amount", "aggregate"),
        ("source.a", "id", "transform"), ("source.b", "id", "transform"),
    }  # fmt: skip
    assert cols["best_b"] == {  # the correlated subquery's max, for the outer row's id
        ("source.b", "amount", "aggregate"), ("source.a", "id", "transform"), ("source.b", "id", "transform"),
    }  # fmt: skip
    indirect = {(r.node, r.column) for r in result.indirect}
    assert {("source.a", "kind"), ("source.a", "id"), ("source.a", "at"), ("source.b", "id")} <= indirect


def test_trace_query_reports_what_it_cannot_parse() -> None:
    result = trace_query("select from where (", dialect="postgres", relations={})
    assert result.error and "could not be parsed" in result.error
    assert trace_query("insert into t values (1)", dialect="postgres", relations={}).error == (
        "its compiled SQL is a INSERT, not a query"
    )


def test_lineage_before_the_first_sync_says_what_is_missing(tmp_path: Path) -> None:
    """No sync yet: the sample's models read sources that only a sync declares, so dbt cannot compile;
    lineage says so and still answers with what it knows (the pipelines' export)."""
    from elt.scaffold import create_project

    project = tmp_path / "fresh"
    create_project(project)
    proc = run_elt("lineage", "show", "--format", "json", cwd=project)
    assert "dbt compile failed" in proc.stderr and "tap_files.payments" in proc.stderr
    assert {n["id"] for n in json.loads(proc.stdout)["nodes"]} == {"export:daily.revenue"}
