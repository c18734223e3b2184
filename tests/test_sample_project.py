"""The demo e-commerce project: the sample-data generator and the dbt project built on its data.

The dbt tests load the generated files into a real DuckDB warehouse the way `elt sync` lays them out
(docs/connectors.md: schema `tap_files`, JSON-Schema types, `_elt_*` columns) and run the real
`models/` project (a copy, with the sources elt generates) through dbt's Python entry point with the
real `profiles/profiles.yml`.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from dbt.cli.main import dbtRunner, dbtRunnerResult

from elt.dbt_sources import DEFAULT_FRESHNESS, SOURCES_FILE, read_tables, render_sources, sources_path
from elt.errors import EltError
from elt.sample import FILES, ORDER_STATUSES, PAYMENT_METHODS, append_orders, generate, main

REPO = Path(__file__).resolve().parents[1]

# The raw tables as `elt sync tap-files target-duckdb` writes them: file -> column types.
RAW_TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "customers": (
        "customers.csv",
        {
            "customer_id": "BIGINT",
            "first_name": "VARCHAR",
            "last_name": "VARCHAR",
            "email": "VARCHAR",
            "country": "VARCHAR",
            "created_at": "TIMESTAMPTZ",
            "updated_at": "TIMESTAMPTZ",
        },
    ),
    "products": (
        "products.csv",
        {
            "product_id": "BIGINT",
            "name": "VARCHAR",
            "category": "VARCHAR",
            "price": "DOUBLE",
            "updated_at": "TIMESTAMPTZ",
        },
    ),
    "orders": (
        "orders.csv",
        {
            "order_id": "BIGINT",
            "customer_id": "BIGINT",
            "status": "VARCHAR",
            "ordered_at": "TIMESTAMPTZ",
            "updated_at": "TIMESTAMPTZ",
        },
    ),
    "order_items": (
        "order_items.csv",
        {
            "order_item_id": "BIGINT",
            "order_id": "BIGINT",
            "product_id": "BIGINT",
            "quantity": "BIGINT",
            "unit_price": "DOUBLE",
        },
    ),
    "payments": (
        "payments.jsonl",
        {
            "payment_id": "BIGINT",
            "order_id": "BIGINT",
            "method": "VARCHAR",
            "amount": "DOUBLE",
            "paid_at": "TIMESTAMPTZ",
        },
    ),
}
MODELS = {
    "stg_customers",
    "stg_products",
    "stg_orders",
    "stg_order_items",
    "stg_payments",
    "fct_orders",
    "dim_customers",
    "daily_revenue",
}


# -- reading the generated files -------------------------------------------------------------------


def read_rows(data_dir: Path, name: str) -> list[dict[str, str]]:
    path = data_dir / name
    with path.open(encoding="utf-8", newline="") as f:
        if path.suffix == ".jsonl":
            return [{k: str(v) for k, v in json.loads(line).items()} for line in f]
        return list(csv.DictReader(f))


def order_totals(data_dir: Path) -> dict[int, Decimal]:
    totals: dict[int, Decimal] = {}
    for item in read_rows(data_dir, "order_items.csv"):
        line = Decimal(item["unit_price"]) * int(item["quantity"])
        totals[int(item["order_id"])] = totals.get(int(item["order_id"]), Decimal(0)) + line
    return totals


def assert_strictly_increasing(values: list) -> None:
    assert all(a < b for a, b in zip(values, values[1:], strict=False))


def assert_consistent(data_dir: Path) -> None:
    """The invariants that the dbt tests and an incremental sync rely on."""
    customers = read_rows(data_dir, "customers.csv")
    products = read_rows(data_dir, "products.csv")
    orders = read_rows(data_dir, "orders.csv")
    items = read_rows(data_dir, "order_items.csv")
    payments = read_rows(data_dir, "payments.jsonl")

    for rows, key, clock in [
        (customers, "customer_id", "updated_at"),
        (products, "product_id", "updated_at"),
        (orders, "order_id", "updated_at"),
        (payments, "payment_id", "paid_at"),
    ]:
        assert [int(r[key]) for r in rows] == list(range(1, len(rows) + 1))
        clocks = [datetime.fromisoformat(r[clock]) for r in rows]
        assert_strictly_increasing(clocks)
        assert all(r[clock].endswith("+00:00") for r in rows)
    assert [int(r["order_item_id"]) for r in items] == list(range(1, len(items) + 1))

    customer_ids = {int(c["customer_id"]) for c in customers}
    order_status = {int(o["order_id"]): o["status"] for o in orders}
    assert {int(o["customer_id"]) for o in orders} <= customer_ids
    assert {int(i["order_id"]) for i in items} == set(order_status)
    assert {int(i["product_id"]) for i in items} <= {int(p["product_id"]) for p in products}
    assert set(order_status.values()) <= set(ORDER_STATUSES)
    assert {p["method"] for p in payments} <= set(PAYMENT_METHODS)

    paid: dict[int, Decimal] = {}
    for p in payments:
        paid[int(p["order_id"])] = paid.get(int(p["order_id"]), Decimal(0)) + Decimal(p["amount"])
    totals = order_totals(data_dir)
    for order_id, status in order_status.items():
        expected = None if status == "cancelled" else totals[order_id]
        assert paid.get(order_id) == expected, f"order {order_id} ({status})"


# -- the generator ---------------------------------------------------------------------------------


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    generate(tmp_path / "a", scale=0.05)
    generate(tmp_path / "b", scale=0.05)
    generate(tmp_path / "c", scale=0.05, seed=8)

    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "orders.csv").read_bytes() != (tmp_path / "c" / "orders.csv").read_bytes()


def test_scale_one_writes_about_100k_consistent_rows(tmp_path: Path) -> None:
    written = generate(tmp_path, scale=1.0)

    assert set(written) == set(FILES)
    assert written["customers.csv"] == 5_000
    assert written["products.csv"] == 300
    assert written["orders.csv"] == 30_000
    assert 40_000 < written["order_items.csv"] < 50_000
    assert 25_000 < written["payments.jsonl"] < 35_000
    assert 90_000 < sum(written.values()) < 130_000
    for name, rows in written.items():
        assert len(read_rows(tmp_path, name)) == rows
    assert_consistent(tmp_path)


def test_existing_files_are_kept_and_missing_ones_regenerated_identically(tmp_path: Path) -> None:
    generate(tmp_path, scale=0.02)
    original_payments = (tmp_path / "payments.jsonl").read_bytes()
    (tmp_path / "payments.jsonl").unlink()
    with (tmp_path / "customers.csv").open("a") as f:
        f.write("# edited by hand\n")

    written = generate(tmp_path, scale=0.02)

    assert written == {name: 0 for name in FILES} | {"payments.jsonl": len(original_payments.splitlines())}
    assert (tmp_path / "payments.jsonl").read_bytes() == original_payments
    assert (tmp_path / "customers.csv").read_text().endswith("# edited by hand\n")
    assert generate(tmp_path, scale=0.02) == {name: 0 for name in FILES}


def test_appended_orders_continue_ids_and_timestamps(tmp_path: Path) -> None:
    generate(tmp_path, scale=0.02)
    orders_before = read_rows(tmp_path, "orders.csv")
    payments_before = read_rows(tmp_path, "payments.jsonl")

    assert append_orders(tmp_path, 30) == 30
    assert append_orders(tmp_path, 20) == 20

    orders = read_rows(tmp_path, "orders.csv")
    assert orders[: len(orders_before)] == orders_before
    new_orders = orders[len(orders_before) :]
    assert [int(o["order_id"]) for o in new_orders] == list(
        range(len(orders_before) + 1, len(orders_before) + 51)
    )
    last_change = max(datetime.fromisoformat(o["updated_at"]) for o in orders_before)
    assert all(datetime.fromisoformat(o["updated_at"]) > last_change for o in new_orders)
    assert {o["status"] for o in new_orders} <= {"placed", "cancelled"}
    new_payments = read_rows(tmp_path, "payments.jsonl")[len(payments_before) :]
    assert {int(p["order_id"]) for p in new_payments} == {
        int(o["order_id"]) for o in new_orders if o["status"] != "cancelled"
    }
    assert_consistent(tmp_path)


def test_appending_to_a_directory_without_data_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(EltError) as error:
        append_orders(tmp_path, 10)

    assert "orders.csv" in str(error.value)
    assert f"python -m elt.sample {tmp_path}" in str(error.value)


def test_cli_prints_one_line_per_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--scale", "0.01"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert main([str(tmp_path), "--scale", "0.01", "--append-orders", "5"]) == 0
    second = capsys.readouterr().out.splitlines()

    assert len(first) == len(FILES)
    assert f"{tmp_path / 'orders.csv'}: wrote 300 rows" in first
    assert f"{tmp_path / 'orders.csv'}: kept the existing file" in second
    assert second[-1] == f"{tmp_path}: appended 5 orders with their items and payments"
    assert len(read_rows(tmp_path, "orders.csv")) == 305


# -- the dbt project -------------------------------------------------------------------------------


def load_raw_tables(warehouse: Path, data_dir: Path, tables: list[str]) -> None:
    """(Re)load raw tables with the exact column types of docs/connectors.md; nothing is sniffed."""
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists tap_files")
        for table in tables:
            file_name, columns = RAW_TABLES[table]
            path = str(data_dir / file_name).replace("'", "''")
            types = "{" + ", ".join(f"'{c}': '{t}'" for c, t in columns.items()) + "}"
            if file_name.endswith(".csv"):
                reader = (
                    f"read_csv('{path}', header = true, auto_detect = false, delim = ',',"
                    f" quote = '\"', columns = {types})"
                )
            else:
                reader = f"read_json('{path}', format = 'newline_delimited', columns = {types})"
            con.execute(
                f"create or replace table tap_files.{table} as"
                f" select *, cast(now() as timestamptz) as _elt_loaded_at,"
                f" cast(now() as timestamptz) as _elt_synced_at from {reader}"
            )


def use_warehouse(env: pytest.MonkeyPatch, warehouse: Path) -> None:
    """Set the variables that elt sets before running dbt, as profiles/profiles.yml reads them."""
    env.setenv("ELT_DBT_TARGET", "duckdb")
    env.setenv("ELT_WAREHOUSE_PATH", str(warehouse))
    env.setenv("ELT_DBT_SCHEMA", "analytics")
    env.setenv("ELT_DBT_THREADS", "2")
    env.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


def copy_dbt_project(work_dir: Path, warehouse: Path) -> None:
    """The repository's dbt project in work_dir/models, with the sources elt would generate for it."""
    shutil.copytree(
        REPO / "models", work_dir / "models",
        ignore=shutil.ignore_patterns("target", "logs", SOURCES_FILE),
    )  # fmt: skip
    env = {"ELT_DBT_TARGET": "duckdb", "ELT_WAREHOUSE_PATH": str(warehouse)}
    text = render_sources(read_tables(env, ["tap_files"]), DEFAULT_FRESHNESS)
    assert text is not None
    sources_path(work_dir / "models").write_text(text, encoding="utf-8")


def dbt_build(work_dir: Path) -> dbtRunnerResult:
    """`dbt build` of the copy of the repository's project, writing its artifacts and logs under work_dir."""
    return dbtRunner().invoke(
        [
            "build",
            "--project-dir", str(work_dir / "models"),
            "--profiles-dir", str(REPO / "profiles"),
            "--target-path", str(work_dir / "target"),
            "--log-path", str(work_dir / "logs"),
        ]
    )  # fmt: skip


def node_statuses(result: dbtRunnerResult) -> dict[str, str]:
    assert result.exception is None, result.exception
    return {r.node.unique_id: str(r.status) for r in result.result.results}  # type: ignore[union-attr]


def query(warehouse: Path, sql: str) -> list[tuple]:
    # Not read_only: dbt-duckdb keeps its own handle on the file open in this process after a run,
    # and DuckDB refuses a second handle on the same file with a different configuration.
    with duckdb.connect(str(warehouse)) as con:
        return con.execute(sql).fetchall()


@dataclass(frozen=True)
class BuiltProject:
    data_dir: Path
    warehouse: Path
    work_dir: Path
    statuses: dict[str, str]
    # Taken right after the first build, before any test changes the warehouse.
    counts: dict[str, int]
    orders_per_day: dict[date, int]
    net_revenue: Decimal
    lifetime_value: Decimal
    invocation_ids: set[str]


@pytest.fixture(scope="module")
def built_project(tmp_path_factory: pytest.TempPathFactory) -> BuiltProject:
    work_dir = tmp_path_factory.mktemp("sample_project")
    data_dir, warehouse = work_dir / "data", work_dir / "warehouse.duckdb"
    generate(data_dir, scale=0.05)
    load_raw_tables(warehouse, data_dir, list(RAW_TABLES))
    copy_dbt_project(work_dir, warehouse)

    with pytest.MonkeyPatch.context() as env:
        use_warehouse(env, warehouse)
        statuses = node_statuses(dbt_build(work_dir))

    tables = ["fct_orders", "dim_customers", "daily_revenue"]
    counts = {t: query(warehouse, f"select count(*) from analytics.{t}")[0][0] for t in tables}
    [(net_revenue, lifetime_value, daily_orders)] = query(
        warehouse,
        "select (select sum(net_revenue) from analytics.daily_revenue),"
        " (select sum(lifetime_value) from analytics.dim_customers),"
        " (select sum(order_count) from analytics.daily_revenue)",
    )
    per_day = query(warehouse, "select order_date, order_count from analytics.daily_revenue")
    invocation_ids = query(warehouse, "select distinct dbt_invocation_id from analytics.fct_orders")
    return BuiltProject(
        data_dir=data_dir,
        warehouse=warehouse,
        work_dir=work_dir,
        statuses=statuses,
        counts=counts | {"daily_revenue.order_count": daily_orders},
        orders_per_day=dict(per_day),
        net_revenue=net_revenue,
        lifetime_value=lifetime_value,
        invocation_ids={row[0] for row in invocation_ids},
    )


def test_dbt_build_runs_every_model_and_test(built_project: BuiltProject) -> None:
    statuses = built_project.statuses

    models = {uid.split(".")[-1] for uid in statuses if uid.startswith("model.")}
    assert models == MODELS
    assert sum(uid.startswith("test.") for uid in statuses) >= 30
    assert {
        "test.elt_demo.assert_completed_orders_are_fully_paid",
        "test.elt_demo.assert_daily_revenue_matches_orders",
        "seed.elt_demo.order_statuses",
        "snapshot.elt_demo.customers_snapshot",
        "exposure.elt_demo.finance_daily_revenue",
    } <= set(statuses)
    assert {uid: s for uid, s in statuses.items() if s not in ("success", "pass", "no-op")} == {}


def test_marts_match_the_generated_data(built_project: BuiltProject) -> None:
    data_dir = built_project.data_dir
    orders = read_rows(data_dir, "orders.csv")
    totals = order_totals(data_dir)
    net_revenue = sum(
        (totals[int(o["order_id"])] for o in orders if o["status"] not in ("cancelled", "returned")),
        Decimal(0),
    )

    assert built_project.counts["fct_orders"] == len(orders)
    assert built_project.counts["dim_customers"] == len(read_rows(data_dir, "customers.csv"))
    assert built_project.counts["daily_revenue.order_count"] == len(orders)
    assert built_project.orders_per_day == Counter(
        datetime.fromisoformat(o["ordered_at"]).astimezone(UTC).date() for o in orders
    )
    assert built_project.net_revenue == net_revenue
    assert built_project.lifetime_value == net_revenue


def test_incremental_fct_orders_picks_up_exactly_the_new_orders(
    built_project: BuiltProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, warehouse = built_project.data_dir, built_project.warehouse
    old_count = len(read_rows(data_dir, "orders.csv"))
    append_orders(data_dir, 40)
    new_ids = {int(o["order_id"]) for o in read_rows(data_dir, "orders.csv")[old_count:]}
    load_raw_tables(warehouse, data_dir, ["orders", "order_items", "payments"])
    use_warehouse(monkeypatch, warehouse)

    statuses = node_statuses(dbt_build(built_project.work_dir))

    assert {uid: s for uid, s in statuses.items() if s not in ("success", "pass", "no-op")} == {}
    [first_run] = built_project.invocation_ids
    rewritten = query(
        warehouse,
        f"select order_id from analytics.fct_orders where dbt_invocation_id <> '{first_run}'",
    )
    assert {row[0] for row in rewritten} == new_ids
    assert query(warehouse, "select count(*) from analytics.fct_orders")[0][0] == old_count + 40
    assert query(warehouse, "select sum(order_count) from analytics.daily_revenue")[0][0] == (old_count + 40)
