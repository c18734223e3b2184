"""A synthetic elt project with a dbt project of about N models, for benchmarking lineage and docs.

    .venv/bin/python bench/dbt_project_gen.py OUT_DIR [--models 1000] [--seed 7] [--rows 20] [--force]

`generate_project(root, models, seed)` writes, at `root`, what `elt init` would (elt.yml with tap-files →
target-duckdb and a `dbt` utility, profiles/profiles.yml, a dbt project in models/) for a made-up
company of ~50 raw tables (about 5% of `models`, each 10–25 columns), with small CSV files so that
`elt run build` can load and build it all. The dbt project has the layers and SQL of a real one:

- `sources`: every raw table with its columns (`models/models/staging/_sources.yml`);
- staging: one view per table, CTEs over `select *` from the source, casts, renames, a
  `cents_to_dollars` macro, some deduplicated with `qualify row_number()`;
- intermediate: joins of 2–3 upstream models (`alias.*` expansions), window functions (row_number,
  lag, count over), case expressions, `dbt.concat`/`dbt.datediff`, unions, filters, a few
  incremental models (`is_incremental()`) and a few ephemeral ones;
- marts: group-by aggregates (count distinct, sums, `safe_divide`, having), daily roll-ups grouped by
  position, dimensions joining aggregates, facts;
- YAML with a description per model and a unique/not_null test on its key, and a few exposures.

The same `models` and `seed` always give the same files.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

SOURCE = "tap_files"  # tap-files loads into the schema `tap_files`; the source has that name
DBT_PROJECT = "bench_shop"
DEFAULT_MODELS = 1000
DEFAULT_SEED = 7
DEFAULT_ROWS = 20
SYNCED_AT = "_elt_synced_at"  # the column elt's targets add to every table

# ---- the company's raw tables -----------------------------------------------------------------------

ORDER_FLOW = ("placed", "shipped", "completed", "returned", "cancelled")
LIFECYCLE = ("active", "trialing", "paused", "cancelled", "churned")
WORKFLOW = ("open", "pending", "in_progress", "resolved", "closed")
PAYMENT_FLOW = ("pending", "succeeded", "failed", "refunded")


@dataclass(frozen=True)
class Entity:
    """A raw table: its name, what one row is, its business domain and the tables it refers to."""

    plural: str
    singular: str
    domain: str
    parents: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.singular}_id"


# In order of importance: a project of few models gets the first ones. A parent that is not among the
# tables generated still leaves its `<parent>_id` column in the child (there is just nothing to join).
ENTITIES: tuple[Entity, ...] = (
    Entity("customers", "customer", "sales", ("region",), LIFECYCLE),
    Entity("orders", "order", "sales", ("customer", "store"), ORDER_FLOW),
    Entity("products", "product", "sales", ("product_category", "supplier"), LIFECYCLE),
    Entity("order_items", "order_item", "sales", ("order", "product"), ORDER_FLOW),
    Entity("payments", "payment", "finance", ("order", "customer"), PAYMENT_FLOW),
    Entity("stores", "store", "operations", ("region",), LIFECYCLE),
    Entity("regions", "region", "operations"),
    Entity("product_categories", "product_category", "sales"),
    Entity("suppliers", "supplier", "operations", (), LIFECYCLE),
    Entity("refunds", "refund", "finance", ("payment", "order"), PAYMENT_FLOW),
    Entity("shipments", "shipment", "operations", ("order", "carrier", "warehouse"), ORDER_FLOW),
    Entity("carriers", "carrier", "operations"),
    Entity("warehouses", "warehouse", "operations", ("region",), LIFECYCLE),
    Entity("inventory_levels", "inventory_level", "operations", ("warehouse", "product")),
    Entity("purchase_orders", "purchase_order", "operations", ("supplier", "warehouse"), WORKFLOW),
    Entity("shipment_events", "shipment_event", "operations", ("shipment",), ORDER_FLOW),
    Entity("promotions", "promotion", "marketing", (), LIFECYCLE),
    Entity("coupons", "coupon", "marketing", ("promotion",), LIFECYCLE),
    Entity("coupon_redemptions", "coupon_redemption", "marketing", ("coupon", "order", "customer")),
    Entity("reviews", "review", "sales", ("product", "customer"), WORKFLOW),
    Entity("order_returns", "order_return", "sales", ("order", "order_item"), WORKFLOW),
    Entity("carts", "cart", "sales", ("customer", "session"), LIFECYCLE),
    Entity("cart_items", "cart_item", "sales", ("cart", "product")),
    Entity("plans", "plan", "product", (), LIFECYCLE),
    Entity("subscriptions", "subscription", "product", ("customer", "plan"), LIFECYCLE),
    Entity("usage_records", "usage_record", "product", ("subscription",)),
    Entity("users", "user", "product", ("customer",), LIFECYCLE),
    Entity("devices", "device", "product", ("user",), LIFECYCLE),
    Entity("sessions", "session", "product", ("user", "device")),
    Entity("page_views", "page_view", "product", ("session",)),
    Entity("events", "event", "product", ("session", "user")),
    Entity("app_installs", "app_install", "product", ("device",), LIFECYCLE),
    Entity("invoices", "invoice", "finance", ("customer", "subscription"), PAYMENT_FLOW),
    Entity("invoice_lines", "invoice_line", "finance", ("invoice", "product")),
    Entity("gl_accounts", "gl_account", "finance", (), LIFECYCLE),
    Entity("gl_entries", "gl_entry", "finance", ("gl_account",), WORKFLOW),
    Entity("currencies", "currency", "finance"),
    Entity("exchange_rates", "exchange_rate", "finance", ("currency",)),
    Entity("departments", "department", "people"),
    Entity("employees", "employee", "people", ("department",), LIFECYCLE),
    Entity("expenses", "expense", "finance", ("employee", "department"), WORKFLOW),
    Entity("budgets", "budget", "finance", ("department",), WORKFLOW),
    Entity("payroll_runs", "payroll_run", "people", ("employee",), PAYMENT_FLOW),
    Entity("campaigns", "campaign", "marketing", (), LIFECYCLE),
    Entity("ad_spend", "ad_spend", "marketing", ("campaign",)),
    Entity("leads", "lead", "marketing", ("campaign",), WORKFLOW),
    Entity("opportunities", "opportunity", "sales", ("lead", "employee"), WORKFLOW),
    Entity("email_sends", "email_send", "marketing", ("campaign", "customer"), PAYMENT_FLOW),
    Entity("email_events", "email_event", "marketing", ("email_send",)),
    Entity("tickets", "ticket", "support", ("customer", "employee"), WORKFLOW),
    Entity("ticket_comments", "ticket_comment", "support", ("ticket", "employee")),
    Entity("survey_responses", "survey_response", "support", ("ticket", "customer")),
)


@dataclass(frozen=True)
class Column:
    """A column of a table or model: name, kind (what it holds) and SQL type."""

    name: str
    kind: str  # id fk status cents money int float text name code email bool ts date
    sql_type: str
    values: tuple[str, ...] = ()  # for status and code columns: the values there are
    nullable: bool = False


def _pool() -> tuple[Column, ...]:
    """The attribute columns raw tables draw from."""
    countries, currencies = ("US", "DE", "FR", "GB", "BR", "JP"), ("USD", "EUR", "GBP", "JPY")
    spec: list[tuple[str, str, str, tuple[str, ...], bool]] = [
        ("name", "name", "varchar", (), False),
        ("description", "text", "varchar", (), False),
        ("title", "text", "varchar", (), False),
        ("notes", "text", "varchar", (), False),
        ("channel", "code", "varchar", ("web", "ios", "android", "store", "phone"), False),
        ("source_system", "code", "varchar", ("shopify", "stripe", "salesforce", "zendesk"), False),
        ("city", "text", "varchar", (), False),
        ("postal_code", "text", "varchar", (), False),
        ("utm_source", "code", "varchar", ("google", "newsletter", "facebook", "direct"), False),
        ("utm_medium", "code", "varchar", ("cpc", "email", "social", "organic"), False),
        ("reference_number", "text", "varchar", (), False),
        ("country_code", "code", "varchar", countries, False),
        ("currency_code", "code", "varchar", currencies, False),
        ("language_code", "code", "varchar", ("en", "de", "fr", "ja", "pt"), False),
        ("email", "email", "varchar", (), False),
        ("amount_cents", "cents", "bigint", (), False),
        ("tax_amount_cents", "cents", "bigint", (), False),
        ("discount_amount_cents", "cents", "bigint", (), False),
        ("shipping_amount_cents", "cents", "bigint", (), False),
        ("fee_amount_cents", "cents", "bigint", (), False),
        ("net_amount_cents", "cents", "bigint", (), False),
        ("unit_price", "money", "double", (), False),
        ("list_price", "money", "double", (), False),
        ("unit_cost", "money", "double", (), False),
        ("balance", "money", "double", (), False),
        ("credit_limit", "money", "double", (), False),
        ("quantity", "int", "bigint", (), False),
        ("item_count", "int", "bigint", (), False),
        ("attempt_count", "int", "bigint", (), False),
        ("priority", "int", "bigint", (), False),
        ("duration_seconds", "int", "bigint", (), False),
        ("score", "float", "double", (), False),
        ("rating", "float", "double", (), False),
        ("weight_kg", "float", "double", (), False),
        ("conversion_rate", "float", "double", (), False),
        ("latitude", "float", "double", (), False),
        ("longitude", "float", "double", (), False),
        ("is_active", "bool", "boolean", (), False),
        ("is_deleted", "bool", "boolean", (), False),
        ("is_test", "bool", "boolean", (), False),
        ("is_primary", "bool", "boolean", (), False),
        ("is_flagged", "bool", "boolean", (), False),
        ("started_at", "ts", "timestamp", (), True),
        ("completed_at", "ts", "timestamp", (), True),
        ("cancelled_at", "ts", "timestamp", (), True),
        ("deleted_at", "ts", "timestamp", (), True),
        ("effective_date", "date", "date", (), False),
        ("due_date", "date", "date", (), True),
    ]
    return tuple(
        Column(name, kind, sql_type, values, nullable) for name, kind, sql_type, values, nullable in spec
    )


ATTRIBUTES = _pool()


def source_columns(entity: Entity, rng: random.Random) -> list[Column]:
    """The columns of an entity's raw table: key, references, status, 10–25 in all, then timestamps."""
    columns = [Column(entity.key, "id", "bigint")]
    columns += [Column(f"{parent}_id", "fk", "bigint") for parent in entity.parents]
    if entity.statuses:
        columns.append(Column("status", "status", "varchar", entity.statuses))
    size = rng.randint(10, 25)
    extra = max(0, size - len(columns) - 3)  # created_at, updated_at, _elt_synced_at
    columns += rng.sample(ATTRIBUTES, extra)
    columns += [Column("created_at", "ts", "timestamp"), Column("updated_at", "ts", "timestamp")]
    columns.append(Column(SYNCED_AT, "ts", "timestamp with time zone"))
    return columns


# ---- the models ---------------------------------------------------------------------------------------


@dataclass
class Model:
    """A model as the generator knows it: enough to write SQL of models that select from it."""

    name: str
    layer: str  # staging | intermediate | marts
    domain: str
    entity: Entity
    key: str  # the column a row is identified by
    unique: bool  # whether `key` is unique (then it gets a unique test and can be joined to)
    columns: list[Column]
    sql: str = ""
    description: str = ""
    materialized: str | None = None  # None: the folder's default

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def of_kind(self, *kinds: str) -> list[Column]:
        return [c for c in self.columns if c.kind in kinds]

    @property
    def natural(self) -> bool:
        """One row per entity: other models join to it on the entity's key."""
        return self.unique and self.key == self.entity.key

    @property
    def path(self) -> str:
        return f"models/{self.layer}/{self.domain}/{self.name}.sql"


@dataclass
class _Builder:
    """Makes the models one by one; each new model selects only from models made before it."""

    rng: random.Random
    entities: list[Entity]
    tables: dict[str, list[Column]]
    models: list[Model] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def add(self, model: Model) -> Model:
        self.models.append(model)
        self.names.add(model.name)
        return model

    def fresh_name(self, name: str) -> str:
        if name not in self.names:
            return name
        n = 2
        while f"{name}_{n}" in self.names:
            n += 1
        return f"{name}_{n}"

    def upstream(self, layers: tuple[str, ...], accept: Callable[[Model], bool]) -> Model | None:
        """A random earlier model of `layers` that `accept`s; staging and the rest equally likely."""
        pools = [[m for m in self.models if m.layer == layer and accept(m)] for layer in layers]
        pools = [pool for pool in pools if pool]
        return self.rng.choice(self.rng.choice(pools)) if pools else None

    def parent_of(self, fk: str, exclude: Iterable[Model] = ()) -> Model | None:
        """A model with one row per entity whose key is `fk` (staging or intermediate, not ephemeral)."""
        skip = {m.name for m in exclude}
        found = [
            m for m in self.models
            if m.key == fk and m.natural and m.layer != "marts" and m.materialized != "ephemeral"
            and m.name not in skip
        ]  # fmt: skip
        return self.rng.choice(found) if found else None

    # ---- staging ----

    def staging(self, entity: Entity) -> Model:
        raw = self.tables[entity.plural]
        lines, columns = [], []
        for column in raw:
            expression, out = _staging_column(entity, column)
            lines.append(f"{expression} as {out.name}" if expression != out.name else out.name)
            columns.append(out)
        dedupe = self.rng.random() < 0.3
        ctes = [("source", f"select * from {{{{ source('{SOURCE}', '{entity.plural}') }}}}")]
        if dedupe:
            ctes.append(
                (
                    "deduplicated",
                    f"select *\nfrom source\nqualify row_number() over "
                    f"(partition by {entity.key} order by updated_at desc, {SYNCED_AT} desc) = 1",
                )
            )
        body = _select(lines) + f"\nfrom {ctes[-1][0]}\nwhere {entity.key} is not null"
        ctes.append(("renamed", body))
        what = "latest version of each row, " if dedupe else ""
        description = (
            f"{entity.plural.replace('_', ' ').capitalize()} from {SOURCE}: {what}typed and renamed."
        )
        sql = _comment(description) + _with(ctes, "select * from renamed")
        name = f"stg_{entity.plural}"
        return self.add(
            Model(name, "staging", entity.domain, entity, entity.key, True, columns, sql, description)
        )

    # ---- intermediate ----

    def join(self) -> Model | None:
        """A model enriched with columns of the 1–2 entities it refers to (left joins on their keys)."""
        base = self.upstream(
            ("staging", "intermediate"),
            lambda m: m.unique and m.materialized != "ephemeral" and bool(self._joinable(m)),
        )
        if base is None:
            return None
        fks = self._joinable(base)
        chosen = self.rng.sample(fks, min(len(fks), self.rng.choice((1, 1, 2))))
        alias = base.entity.plural
        select, columns = self._projection(alias, base, star_ok=True)
        ctes = [(alias, f"select * from {{{{ ref('{base.name}') }}}}")]
        joins: list[str] = []
        parents: list[Model] = []
        for fk in chosen:
            parent = self.parent_of(fk.name)
            if parent is None or parent.entity.plural in {alias, *(p.entity.plural for p in parents)}:
                continue
            parents.append(parent)
            p_alias = parent.entity.plural
            ctes.append((p_alias, f"select * from {{{{ ref('{parent.name}') }}}}"))
            joins.append(f"left join {p_alias} on {alias}.{fk.name} = {p_alias}.{parent.key}")
            picks = [c for c in parent.columns if c.kind not in ("id", "fk") and c.name != "synced_at"]
            for column in self.rng.sample(picks, min(len(picks), self.rng.randint(2, 4))):
                prefix = parent.entity.singular
                name = column.name if column.name.startswith(prefix + "_") else f"{prefix}_{column.name}"
                out = _fresh_column(name, columns)
                if column.kind in ("int", "cents") and self.rng.random() < 0.5:
                    select.append(f"coalesce({p_alias}.{column.name}, 0) as {out}")
                else:
                    select.append(f"{p_alias}.{column.name} as {out}")
                columns.append(Column(out, column.kind, column.sql_type, column.values, True))
        if not parents:
            return None
        with_names = "_and_".join(p.entity.plural for p in parents)
        name = self.fresh_name(f"int_{base.entity.plural}__joined_{with_names}")
        body = _select(select) + f"\nfrom {alias}\n" + "\n".join(joins)
        ctes.append(("joined", body))
        description = (
            f"{_title(base)} with details of their {' and '.join(p.entity.singular for p in parents)}."
        )
        sql = _comment(description) + _with(ctes, "select * from joined")
        return self.add(
            Model(name, "intermediate", base.domain, base.entity, base.key, True, columns, sql, description)
        )

    def window(self) -> Model | None:
        """Rank, previous value and count within each referred entity; sometimes only the latest row."""
        base = self.upstream(
            ("staging", "intermediate"),
            lambda m: m.unique and bool(m.of_kind("fk")) and m.column("created_at") is not None,
        )
        if base is None:
            return None
        fk = self.rng.choice(base.of_kind("fk"))
        stem = fk.name.removesuffix("_id")
        alias = base.entity.plural
        select, columns = self._projection(alias, base, star_ok=True)
        over = f"partition by {alias}.{fk.name} order by {alias}.created_at"
        rank = _fresh_column(f"{stem}_{base.entity.singular}_rank", columns)
        select.append(f"row_number() over ({over} desc) as {rank}")
        columns.append(Column(rank, "int", "bigint"))
        amounts = base.of_kind("money") or base.of_kind("int")
        if amounts:
            amount = self.rng.choice(amounts)
            previous = _fresh_column(f"previous_{amount.name}", columns)
            change = _fresh_column(f"{amount.name}_change", columns)
            select.append(f"lag({alias}.{amount.name}) over ({over}) as {previous}")
            select.append(
                f"{alias}.{amount.name} - coalesce(lag({alias}.{amount.name}) over ({over}), 0) as {change}"
            )
            columns += [Column(previous, amount.kind, amount.sql_type, nullable=True)]
            columns += [Column(change, amount.kind, amount.sql_type, nullable=True)]
        total = _fresh_column(f"{stem}_{base.entity.singular}_count", columns)
        select.append(f"count(*) over (partition by {alias}.{fk.name}) as {total}")
        columns.append(Column(total, "int", "bigint"))
        ctes = [(alias, f"select * from {{{{ ref('{base.name}') }}}}")]
        ctes.append(("ranked", _select(select) + f"\nfrom {alias}"))
        if self.rng.random() < 0.4:
            name = self.fresh_name(f"int_{base.entity.plural}__latest_per_{stem}")
            description = f"The latest of {_title(base).lower()} for each {stem.replace('_', ' ')}."
            sql = _comment(description) + _with(ctes, f"select *\nfrom ranked\nwhere {rank} = 1")
            key, unique = fk.name, True
        else:
            name = self.fresh_name(f"int_{base.entity.plural}__ranked_by_{stem}")
            description = f"{_title(base)}, ranked by recency within each {stem.replace('_', ' ')}."
            sql = _comment(description) + _with(ctes, "select * from ranked")
            key, unique = base.key, base.unique
        return self.add(
            Model(name, "intermediate", base.domain, base.entity, key, unique, columns, sql, description)
        )

    def classify(self) -> Model | None:
        """Explicit columns plus case expressions, a label built with dbt.concat, a dbt.datediff."""
        base = self.upstream(("staging", "intermediate"), lambda m: m.unique)
        if base is None:
            return None
        alias = base.entity.plural
        select, columns = self._projection(alias, base, star_ok=False)
        derived = 0
        for status in base.of_kind("status")[:1]:
            v = status.values
            group = _fresh_column(f"{status.name}_group", columns)
            select.append(
                f"case\n    when {status.name} in ('{v[0]}', '{v[1]}') then 'open'\n"
                f"    when {status.name} = '{v[2]}' then 'done'\n    else 'lost'\nend as {group}"
            )
            columns.append(Column(group, "code", "varchar", ("open", "done", "lost")))
            derived += 1
        for amount in base.of_kind("money")[:1]:
            band = _fresh_column(f"{amount.name}_band", columns)
            select.append(
                f"case\n    when {amount.name} >= 100 then 'high'\n    when {amount.name} >= 20 then 'medium'"
                f"\n    when {amount.name} is null then 'unknown'\n    else 'low'\nend as {band}"
            )
            columns.append(Column(band, "code", "varchar", ("high", "medium", "low", "unknown")))
            derived += 1
        texts = base.of_kind("name", "text", "code")
        if texts:
            text = self.rng.choice(texts)
            label = _fresh_column(f"{base.entity.singular}_label", columns)
            parts = f'["cast({base.key} as varchar)", "\' - \'", "coalesce({text.name}, \'unknown\')"]'
            select.append(f"{{{{ dbt.concat({parts}) }}}} as {label}")
            columns.append(Column(label, "text", "varchar"))
            derived += 1
        if base.column("created_at") and base.column("updated_at"):
            days = _fresh_column("days_to_last_update", columns)
            select.append(f"{{{{ dbt.datediff('created_at', 'updated_at', 'day') }}}} as {days}")
            columns.append(Column(days, "int", "bigint"))
            derived += 1
        flags = base.of_kind("bool")
        if len(flags) >= 2:
            first, second = flags[:2]
            flag = _fresh_column(
                f"is_{first.name.removeprefix('is_')}_and_{second.name.removeprefix('is_')}", columns
            )
            select.append(f"coalesce({first.name}, false) and coalesce({second.name}, false) as {flag}")
            columns.append(Column(flag, "bool", "boolean"))
            derived += 1
        if derived == 0:
            return None
        name = self.fresh_name(f"int_{base.entity.plural}__classified")
        description = f"{_title(base)} with derived groups, bands and labels."
        sql = _comment(description) + _with(
            [(alias, f"select * from {{{{ ref('{base.name}') }}}}")],
            _select(select) + f"\nfrom {alias}",
        )
        return self.add(
            Model(name, "intermediate", base.domain, base.entity, base.key, True, columns, sql, description)
        )

    def union(self) -> Model | None:
        """Rows of two models of the same entity stacked (`union all`), or one model's rows split by date."""
        base = self.upstream(("staging", "intermediate"), lambda m: m.materialized != "ephemeral")
        if base is None:
            return None
        others = [
            m for m in self.models
            if m is not base and m.entity == base.entity and m.key == base.key and m.layer != "marts"
            and m.materialized != "ephemeral" and len(_common(base, m)) >= 3
        ]  # fmt: skip
        if others:
            other = self.rng.choice(others)
            common = _common(base, other)[:12]
            cols = ",\n".join(f"    cast({c.name} as {c.sql_type}) as {c.name}" for c in common)
            parts = [(m.name, f"select\n{cols}\nfrom {{{{ ref('{m.name}') }}}}") for m in (base, other)]
            branches = [f"select *, '{n}' as source_model from {n}" for n, _ in parts]
            ctes = [*parts, ("unioned", "\n\nunion all\n\n".join(branches))]
            description = f"{_title(base)} from {base.name} and {other.name}, one row per source model."
        elif base.column("created_at") is not None:
            common = [c for c in base.columns if c.kind in ("id", "fk", "ts", "status", "money", "code")][:12]
            cols = ",\n".join(f"    {c.name}" for c in common)
            ref = f"{{{{ ref('{base.name}') }}}}"
            parts = [
                ("recent", f"select\n{cols}\nfrom {ref}\nwhere created_at >= timestamp '2024-07-01'"),
                ("earlier", f"select\n{cols}\nfrom {ref}\nwhere created_at < timestamp '2024-07-01'"),
            ]
            branches = [f"select *, '{n}' as source_model from {n}" for n, _ in parts]
            ctes = [*parts, ("unioned", "\n\nunion all\n\n".join(branches))]
            description = f"{_title(base)}, recent and earlier rows stacked with where they came from."
        else:
            return None
        columns = [Column(c.name, c.kind, c.sql_type, c.values, c.nullable) for c in common]
        columns.append(Column("source_model", "code", "varchar"))
        name = self.fresh_name(f"int_{base.entity.plural}__unioned")
        sql = _comment(description) + _with(ctes, "select * from unioned")
        return self.add(
            Model(name, "intermediate", base.domain, base.entity, base.key, False, columns, sql, description)
        )

    def filtered(self) -> Model | None:
        """`select *` of an upstream model with a filter; some are ephemeral."""
        base = self.upstream(
            ("staging", "intermediate"),
            lambda m: bool(m.of_kind("bool", "status")) or m.column("created_at") is not None,
        )
        if base is None:
            return None
        flags, statuses = base.of_kind("bool"), base.of_kind("status")
        if flags and self.rng.random() < 0.5:
            flag = self.rng.choice(flags)
            condition, suffix = f"not coalesce({flag.name}, false)", f"not_{flag.name.removeprefix('is_')}"
        elif statuses:
            status = statuses[0]
            condition, suffix = f"{status.name} <> '{status.values[-1]}'", f"not_{status.values[-1]}"
        elif base.column("created_at") is not None:
            condition, suffix = "created_at >= timestamp '2024-01-01'", "since_2024"
        else:
            flag = self.rng.choice(flags)
            condition, suffix = f"coalesce({flag.name}, false)", flag.name.removeprefix("is_")
        ephemeral = self.rng.random() < 0.15
        name = self.fresh_name(f"int_{base.entity.plural}__{suffix}")
        description = f"{_title(base)} where {condition}."
        config = "{{ config(materialized='ephemeral') }}\n\n" if ephemeral else ""
        sql = (
            _comment(description)
            + config
            + f"select *\nfrom {{{{ ref('{base.name}') }}}}\nwhere {condition}\n"
        )
        columns = list(base.columns)
        return self.add(
            Model(
                name, "intermediate", base.domain, base.entity, base.key, base.unique, columns, sql,
                description, "ephemeral" if ephemeral else None,
            )
        )  # fmt: skip

    def incremental(self, layer: str) -> Model | None:
        """An incremental model: only rows updated since the newest already there, merged on the key."""
        base = self.upstream(
            ("staging", "intermediate"),
            lambda m: m.natural and m.column("updated_at") is not None and m.materialized != "ephemeral",
        )
        if base is None:
            return None
        select, columns = self._projection(base.entity.plural, base, star_ok=False)
        prefix = "int" if layer == "intermediate" else "fct"
        name = self.fresh_name(f"{prefix}_{base.entity.plural}__incremental")
        description = f"{_title(base)}, loaded incrementally by updated_at and merged on {base.key}."
        config = (
            "{{\n    config(\n        materialized='incremental',\n"
            f"        unique_key='{base.key}',\n"
            "        on_schema_change='append_new_columns',\n    )\n}}\n\n"
        )
        alias = base.entity.plural
        source = (
            f"select *\nfrom {{{{ ref('{base.name}') }}}}\n{{% if is_incremental() %}}\n"
            "where updated_at > (select coalesce(max(updated_at), timestamp '1900-01-01') from {{ this }})\n"
            "{% endif %}"
        )
        sql = _comment(description) + config + _with([(alias, source)], _select(select) + f"\nfrom {alias}")
        return self.add(
            Model(
                name,
                layer,
                base.domain,
                base.entity,
                base.key,
                True,
                columns,
                sql,
                description,
                "incremental",
            )
        )

    # ---- marts ----

    def aggregate(self) -> Model | None:
        """One row per referred entity: counts, distinct counts, sums, averages, first and last dates."""
        base = self.upstream(("staging", "intermediate"), lambda m: bool(m.of_kind("fk")))
        if base is None:
            return None
        fk = self.rng.choice(base.of_kind("fk"))
        stem = fk.name.removesuffix("_id")
        alias, one = base.entity.plural, base.entity.singular
        select, columns = [fk.name], [Column(fk.name, "id", "bigint")]

        def add(expression: str, name: str, kind: str, sql_type: str) -> None:
            out = _fresh_column(name, columns)
            select.append(f"{expression} as {out}")
            columns.append(Column(out, kind, sql_type))

        add("count(*)", f"{one}_count", "int", "bigint")
        for other in [c for c in base.of_kind("fk") if c is not fk][:2]:
            add(
                f"count(distinct {other.name})",
                f"distinct_{other.name.removesuffix('_id')}_count",
                "int",
                "bigint",
            )
        for amount in base.of_kind("money")[:2]:
            add(f"sum({amount.name})", f"total_{amount.name}", "money", "decimal(18, 2)")
            add(
                f"cast(avg({amount.name}) as decimal(18, 2))", f"avg_{amount.name}", "money", "decimal(18, 2)"
            )
        for amount in base.of_kind("money")[:1]:
            per = f"{{{{ safe_divide('sum({amount.name})', 'count(distinct {base.key})') }}}}"
            add(per, f"{amount.name}_per_{one}", "money", "double")
        for flag in base.of_kind("bool")[:1]:
            add(
                f"sum(case when {flag.name} then 1 else 0 end)",
                f"{flag.name.removeprefix('is_')}_{one}_count", "int", "bigint",
            )  # fmt: skip
        if base.column("created_at") is not None:
            add("min(created_at)", f"first_{one}_at", "ts", "timestamp")
            add("max(created_at)", f"last_{one}_at", "ts", "timestamp")
        having = self.rng.choice(("count(*) > 0", f"count(distinct {base.key}) >= 1", "sum(1) > 0"))
        body = (
            _select(select)
            + f"\nfrom {alias}\nwhere {fk.name} is not null\ngroup by {fk.name}\nhaving {having}"
        )
        name = self.fresh_name(f"agg_{base.entity.plural}__by_{stem}")
        description = f"{_title(base)} summed up per {stem.replace('_', ' ')}."
        sql = _comment(description) + _with([(alias, f"select * from {{{{ ref('{base.name}') }}}}")], body)
        entity = next((e for e in self.entities if e.key == fk.name), base.entity)
        return self.add(Model(name, "marts", base.domain, entity, fk.name, True, columns, sql, description))

    def daily(self) -> Model | None:
        """A daily roll-up, grouped by position, sometimes also by a code column."""
        base = self.upstream(("staging", "intermediate"), lambda m: m.column("created_at") is not None)
        if base is None:
            return None
        alias, one = base.entity.plural, base.entity.singular
        day = f"{one}_date"
        select = [f"cast({{{{ dbt.date_trunc('day', 'created_at') }}}} as date) as {day}"]
        columns = [Column(day, "date", "date")]
        codes = base.of_kind("code")
        by = self.rng.choice(codes) if codes and self.rng.random() < 0.5 else None
        if by is not None:
            select.append(by.name)
            columns.append(Column(by.name, "code", "varchar", by.values))
        select.append(f"count(*) as {one}_count")
        columns.append(Column(f"{one}_count", "int", "bigint"))
        for fk in base.of_kind("fk")[:1]:
            out = _fresh_column(f"{fk.name.removesuffix('_id')}_count", columns)
            select.append(f"count(distinct {fk.name}) as {out}")
            columns.append(Column(out, "int", "bigint"))
        for amount in base.of_kind("money")[:2]:
            out = _fresh_column(f"total_{amount.name}", columns)
            select.append(f"sum({amount.name}) as {out}")
            columns.append(Column(out, "money", "decimal(18, 2)"))
        group = "1, 2" if by is not None else "1"
        body = _select(select) + f"\nfrom {alias}\ngroup by {group}"
        suffix = f"daily_by_{by.name}" if by is not None else "daily"
        name = self.fresh_name(f"agg_{base.entity.plural}__{suffix}")
        description = f"{_title(base)} per day" + (f" and {by.name.replace('_', ' ')}." if by else ".")
        sql = _comment(description) + _with([(alias, f"select * from {{{{ ref('{base.name}') }}}}")], body)
        return self.add(
            Model(name, "marts", base.domain, base.entity, day, by is None, columns, sql, description)
        )

    def dimension(self) -> Model | None:
        """An entity with the aggregates other marts computed for it (left joins on its key)."""
        aggregates = [m for m in self.models if m.layer == "marts" and m.name.startswith("agg_") and m.unique]
        keys = {m.key for m in aggregates}
        base = self.upstream(
            ("staging", "intermediate"),
            lambda m: m.natural and m.key in keys and m.materialized != "ephemeral",
        )
        if base is None:
            return None
        mine = [m for m in aggregates if m.key == base.key]
        joined = self.rng.sample(mine, min(len(mine), self.rng.choice((1, 2, 3))))
        alias = base.entity.plural
        select, columns = self._projection(alias, base, star_ok=True)
        ctes = [(alias, f"select * from {{{{ ref('{base.name}') }}}}")]
        joins = []
        for n, agg in enumerate(joined, start=1):
            a = f"agg_{n}"
            ctes.append((a, f"select * from {{{{ ref('{agg.name}') }}}}"))
            joins.append(f"left join {a} on {alias}.{base.key} = {a}.{agg.key}")
            for column in [c for c in agg.columns if c.name != agg.key][:4]:
                out = _fresh_column(column.name, columns)
                expression = f"{a}.{column.name}"
                if column.kind == "int":
                    expression = f"coalesce({expression}, 0)"
                select.append(f"{expression} as {out}")
                columns.append(Column(out, column.kind, column.sql_type, nullable=True))
        name = self.fresh_name(f"dim_{base.entity.plural}")
        description = f"One row per {base.entity.singular.replace('_', ' ')} with its activity."
        ctes.append(("final", _select(select) + f"\nfrom {alias}\n" + "\n".join(joins)))
        sql = _comment(description) + _with(ctes, "select * from final")
        return self.add(
            Model(name, "marts", base.domain, base.entity, base.key, True, columns, sql, description)
        )

    def fact(self) -> Model | None:
        """An intermediate model's rows as a table, with an aggregate of what they refer to."""
        base = self.upstream(("intermediate",), lambda m: m.unique and m.materialized != "ephemeral")
        if base is None:
            return None
        alias = base.entity.plural
        select, columns = self._projection(alias, base, star_ok=True)
        ctes = [(alias, f"select * from {{{{ ref('{base.name}') }}}}")]
        fks = {c.name for c in base.of_kind("fk")}
        aggregates = [m for m in self.models if m.layer == "marts" and m.unique and m.key in fks]
        joins = ""
        if aggregates:
            agg = self.rng.choice(aggregates)
            ctes.append(("context", f"select * from {{{{ ref('{agg.name}') }}}}"))
            joins = f"\nleft join context on {alias}.{agg.key} = context.{agg.key}"
            for column in [c for c in agg.columns if c.name != agg.key][:3]:
                stem = agg.key.removesuffix("_id")
                out = _fresh_column(f"{stem}_{column.name}", columns)
                select.append(f"context.{column.name} as {out}")
                columns.append(Column(out, column.kind, column.sql_type, nullable=True))
        ctes.append(("final", _select(select) + f"\nfrom {alias}{joins}"))
        name = self.fresh_name(f"fct_{base.entity.plural}")
        description = f"{_title(base)}, as a table for reporting."
        sql = _comment(description) + _with(ctes, "select * from final")
        return self.add(
            Model(name, "marts", base.domain, base.entity, base.key, True, columns, sql, description)
        )

    # ---- helpers ----

    def _joinable(self, model: Model) -> list[Column]:
        return [c for c in model.of_kind("fk") if self.parent_of(c.name, exclude=[model]) is not None]

    def _projection(self, alias: str, base: Model, *, star_ok: bool) -> tuple[list[str], list[Column]]:
        """The base's columns: `alias.*` (when allowed and not too wide), else an explicit list."""
        if star_ok and len(base.columns) <= 30 and self.rng.random() < 0.6:
            return [f"{alias}.*"], list(base.columns)
        if len(base.columns) <= 24:
            kept = list(base.columns)
        else:
            keys = [
                c for c in base.columns if c.kind in ("id", "fk") or c.name in ("created_at", "updated_at")
            ]
            rest = [c for c in base.columns if c not in keys]
            picked = set(self.rng.sample(range(len(rest)), 24 - min(len(keys), 24)))
            kept = [c for c in base.columns if c in keys or (c in rest and rest.index(c) in picked)]
        return [f"{alias}.{c.name}" for c in kept], kept


def _staging_column(entity: Entity, column: Column) -> tuple[str, Column]:
    """The staging expression of a raw column and the column it makes."""
    name, kind = column.name, column.kind
    if kind in ("id", "fk"):
        return f"cast({name} as bigint)", Column(name, kind, "bigint")
    if kind == "status":
        return f"lower(cast({name} as varchar))", Column(
            f"{entity.singular}_status", kind, "varchar", column.values
        )
    if kind == "cents":
        out = name.removesuffix("_cents")
        return f"{{{{ cents_to_dollars('{name}') }}}}", Column(out, "money", "decimal(18, 2)")
    if kind == "money":
        return f"cast({name} as decimal(18, 2))", Column(name, kind, "decimal(18, 2)")
    if kind == "name":
        return f"trim(cast({name} as varchar))", Column(f"{entity.singular}_name", kind, "varchar")
    if kind == "email":
        return f"lower(trim(cast({name} as varchar)))", Column(name, kind, "varchar")
    if kind == "code":
        expression = "lower" if name in ("language_code", "channel", "utm_source", "utm_medium") else "upper"
        values = tuple(v.lower() if expression == "lower" else v.upper() for v in column.values)
        return f"{expression}(cast({name} as varchar))", Column(name, kind, "varchar", values)
    if name == SYNCED_AT:
        return name, Column("synced_at", "ts", "timestamp with time zone")
    if kind == "text":
        return f"cast({name} as varchar)", Column(name, kind, "varchar")
    sql_type = {"int": "bigint", "float": "double", "bool": "boolean", "ts": "timestamp", "date": "date"}[
        kind
    ]
    return f"cast({name} as {sql_type})", Column(name, kind, sql_type, nullable=column.nullable)


def _common(a: Model, b: Model) -> list[Column]:
    """Columns of `a` that `b` has too, with the same kind and type."""
    found = []
    for column in a.columns:
        other = b.column(column.name)
        if other is not None and other.kind == column.kind and other.sql_type == column.sql_type:
            found.append(column)
    return found


def _fresh_column(name: str, columns: list[Column]) -> str:
    taken = {c.name for c in columns}
    if name not in taken:
        return name
    n = 2
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"


def _title(model: Model) -> str:
    return model.entity.plural.replace("_", " ").capitalize()


def _comment(text: str) -> str:
    return f"-- {text}\n"


def _select(lines: list[str]) -> str:
    """`select` with one expression a line (multi-line expressions indented under it)."""
    body = ",\n".join("    " + line.replace("\n", "\n    ") for line in lines)
    return f"select\n{body}"


def _with(ctes: list[tuple[str, str]], final: str) -> str:
    """`with a as (...), b as (...) final`, laid out as dbt's style guide does."""
    parts = []
    for name, body in ctes:
        indented = "\n".join(("    " + line) if line else "" for line in body.splitlines())
        parts.append(f"{name} as (\n\n{indented}\n\n)")
    return "with " + ",\n\n".join(parts) + f"\n\n{final}\n"


# ---- the project files -------------------------------------------------------------------------------

MACROS = {
    "cents_to_dollars.sql": """\
{#- An amount in cents as a decimal amount in dollars (or any currency's main unit). -#}
{% macro cents_to_dollars(column_name, scale=2) -%}
    round(cast({{ column_name }} as decimal(18, 4)) / 100, {{ scale }})
{%- endmacro %}
""",
    "safe_divide.sql": """\
{#- numerator / denominator, null when the denominator is zero or null. -#}
{% macro safe_divide(numerator, denominator) -%}
    cast({{ numerator }} as double) / nullif(cast({{ denominator }} as double), 0)
{%- endmacro %}
""",
}


def generate_project(
    root: Path, models: int = DEFAULT_MODELS, seed: int = DEFAULT_SEED, *, rows: int = DEFAULT_ROWS,
    force: bool = False,
) -> Path:  # fmt: skip
    """Write an elt project with a dbt project of `models` models at `root`; return `root`.

    `rows` is the number of rows of each raw CSV file under data/ (0: no data files). Refuses a folder
    that already holds an elt.yml unless `force`, which replaces what this function writes there.
    """
    if models < 10:
        raise ValueError("a synthetic project needs at least 10 models")
    if (root / "elt.yml").exists():
        if not force:
            raise FileExistsError(
                f"{root / 'elt.yml'} already exists; pass force=True (--force) to replace it"
            )
        for folder in ("models", "profiles", "data", ".elt"):
            shutil.rmtree(root / folder, ignore_errors=True)
    rng = random.Random(seed)
    entities = list(ENTITIES[: max(3, min(len(ENTITIES), round(models * 0.05)))])
    tables = {e.plural: source_columns(e, rng) for e in entities}
    builder = _Builder(rng, entities, tables)
    build_models(builder, models)

    root.mkdir(parents=True, exist_ok=True)
    _write(root / "elt.yml", elt_yml(entities, models, seed))
    _write(root / ".gitignore", ".elt/\nmodels/target/\nmodels/logs/\nmodels/models/_elt_sources.yml\n")
    profiles = resources.files("elt").joinpath("templates/project/profiles/profiles.yml")
    _write(root / "profiles" / "profiles.yml", profiles.read_text(encoding="utf-8"))
    dbt = root / "models"
    _write(dbt / "dbt_project.yml", dbt_project_yml(models, seed))
    for name, text in MACROS.items():
        _write(dbt / "macros" / name, text)
    _write(dbt / "models" / "staging" / "_sources.yml", sources_yml(entities, tables))
    folders: dict[tuple[str, str], list[Model]] = {}
    for model in builder.models:
        _write(dbt / model.path, model.sql)
        folders.setdefault((model.layer, model.domain), []).append(model)
    for (layer, domain), members in sorted(folders.items()):
        _write(dbt / "models" / layer / domain / f"_{domain}__{layer}.yml", models_yml(members))
    _write(dbt / "models" / "marts" / "_exposures.yml", exposures_yml(builder, rng, max(1, models // 200)))
    if rows:
        for entity in entities:
            write_csv(root / "data" / f"{entity.plural}.csv", tables[entity.plural], rows, rng)
    return root


def build_models(builder: _Builder, models: int) -> None:
    """Staging for every table, then intermediate models (~55% of the rest), then marts."""
    for entity in builder.entities:
        builder.staging(entity)
    rest = models - len(builder.entities)
    incremental = max(2, models // 100)  # half intermediate, half marts
    intermediate = round(rest * 0.55)
    kinds: list[tuple[Callable[[], Model | None], int]] = [
        (builder.join, 40), (builder.window, 15), (builder.classify, 15), (builder.union, 10),
        (builder.filtered, 20),
    ]  # fmt: skip
    _fill(builder, "intermediate", intermediate, kinds, incremental // 2)
    marts: list[tuple[Callable[[], Model | None], int]] = [
        (builder.aggregate, 45),
        (builder.daily, 20),
        (builder.dimension, 15),
        (builder.fact, 20),
    ]
    _fill(builder, "marts", models - len(builder.models), marts, incremental - incremental // 2)


def _fill(
    builder: _Builder, layer: str, count: int, kinds: list[tuple[Callable[[], Model | None], int]],
    incremental: int,
) -> None:  # fmt: skip
    """Make `count` models of `layer`, `incremental` of them incremental, spread among the others."""
    every = max(1, count // (incremental + 1))
    made = 0
    while made < count:
        if incremental and made and made % every == 0 and builder.incremental(layer) is not None:
            incremental -= 1
            made += 1
            continue
        makers, weights = zip(*kinds, strict=True)
        for _ in range(50):
            if builder.rng.choices(makers, weights)[0]() is not None:
                made += 1
                break
        else:
            raise RuntimeError(f"could not make another {layer} model after {made}")


def elt_yml(entities: list[Entity], models: int, seed: int) -> str:
    files = "\n".join(
        f"          - {{entity: {e.plural}, path: data/{e.plural}.csv, keys: [{e.key}], "
        "replication_key: updated_at}"
        for e in entities
    )
    return f"""\
# A synthetic company of {len(entities)} raw tables and {models} dbt models, written by
# bench/dbt_project_gen.py (seed {seed}). `elt run build` loads data/ and builds every model.
version: 1
project_id: bench-dbt-{models}
default_environment: dev

plugins:
  extractors:
    - name: tap-files
      config:
        files:
{files}
  loaders:
    - name: target-duckdb
      config:
        path: ${{ELT_WAREHOUSE:-.elt/warehouse.duckdb}}
        load_method: upsert
  utilities:
    - name: dbt
      config:
        project_dir: models
        profiles_dir: profiles

environments:
  - name: dev

pipelines:
  build:
    description: Load the raw files into the warehouse, then build and test every model.
    steps:
      - {{name: load, sync: tap-files target-duckdb}}
      - {{name: models, dbt: build}}
"""


def dbt_project_yml(models: int, seed: int) -> str:
    return f"""\
# {models} synthetic models (bench/dbt_project_gen.py, seed {seed}): staging views over the raw tables
# tap-files loads, intermediate views, marts tables.
name: {DBT_PROJECT}
version: "1.0.0"
config-version: 2
profile: elt

model-paths: ["models"]
macro-paths: ["macros"]
clean-targets: ["target", "logs"]

models:
  {DBT_PROJECT}:
    staging:
      +materialized: view
    intermediate:
      +materialized: view
    marts:
      +materialized: table
"""


def sources_yml(entities: list[Entity], tables: dict[str, list[Column]]) -> str:
    lines = [
        "version: 2",
        "",
        "sources:",
        f"  - name: {SOURCE}",
        f"    schema: {SOURCE}",
        "    description: Raw tables loaded by `elt sync tap-files target-duckdb` from the files in data/.",
        "    config:",
        f"      loaded_at_field: {SYNCED_AT}",
        "    tables:",
    ]
    for entity in entities:
        lines += [
            f"      - name: {entity.plural}",
            f"        description: One row per {_words(entity.singular)}.",
        ]
        lines.append("        columns:")
        for column in tables[entity.plural]:
            lines += [f"          - name: {column.name}", f"            data_type: {column.sql_type}"]
            if column.kind == "id":
                lines.append(f"            description: The {_words(entity.singular)}'s id.")
            elif column.kind == "fk":
                lines.append(f"            description: The {_words(column.name.removesuffix('_id'))}'s id.")
    return "\n".join(lines) + "\n"


def models_yml(members: list[Model]) -> str:
    lines = ["version: 2", "", "models:"]
    for model in members:
        lines += [f"  - name: {model.name}", f"    description: {_quote(model.description)}"]
        if model.materialized == "ephemeral":
            continue  # dbt runs no tests on ephemeral models
        if model.layer == "staging":
            tests = "[unique, not_null]"
        else:
            tests = "[unique]" if model.unique else "[not_null]"
        lines += [
            "    columns:",
            f"      - name: {model.key}",
            f"        data_tests: {tests}",
        ]
    return "\n".join(lines) + "\n"


def exposures_yml(builder: _Builder, rng: random.Random, count: int) -> str:
    marts = [m for m in builder.models if m.layer == "marts"]
    domains = sorted({m.domain for m in marts})
    lines = ["version: 2", "", "exposures:"]
    for n in range(count):
        domain = domains[n % len(domains)]
        mine = [m for m in marts if m.domain == domain] or marts
        used = rng.sample(mine, min(len(mine), rng.randint(2, 4)))
        kind = ("dashboard", "notebook", "analysis", "application")[n % 4]
        lines += [
            f"  - name: {domain}_{kind}_{n + 1}",
            f"    label: {domain.capitalize()} {kind} {n + 1}",
            f"    type: {kind}",
            f"    maturity: {('high', 'medium', 'low')[n % 3]}",
            f"    url: https://bi.example.com/{domain}/{n + 1}",
            f"    description: The {domain} team's {kind}, read every morning.",
            "    depends_on:",
            *[f"      - ref('{m.name}')" for m in used],
            "    owner:",
            f"      name: {domain.capitalize()} analytics",
            f"      email: {domain}-analytics@example.com",
        ]
    return "\n".join(lines) + "\n"


# ---- raw data ----------------------------------------------------------------------------------------

WORDS = (
    "alpha", "harbor", "maple", "orbit", "cedar", "summit", "river", "falcon", "copper", "meadow",
    "atlas", "ember", "granite", "willow", "nova", "lumen", "prairie", "quartz", "tundra", "vista",
)  # fmt: skip
START = datetime(2024, 1, 1)


def write_csv(path: Path, columns: list[Column], rows: int, rng: random.Random) -> None:
    """`rows` rows of plausible values; keys 1..rows, references into 1..rows, SYNCED_AT left out."""
    names = [c.name for c in columns if c.name != SYNCED_AT]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for i in range(1, rows + 1):
            created = START + timedelta(seconds=rng.randrange(365 * 86400))
            writer.writerow(_value(c, i, created, rng) for c in columns if c.name != SYNCED_AT)


def _value(column: Column, i: int, created: datetime, rng: random.Random) -> str:
    kind, name = column.kind, column.name
    if kind == "id":
        return str(i)
    if kind == "fk":
        return str(rng.randint(1, max(1, i)))
    if kind in ("status", "code"):
        return rng.choice(column.values)
    if kind == "ts":
        if column.nullable and i > 1 and rng.random() < 0.5:
            return ""
        moment = created if name == "created_at" else created + timedelta(seconds=rng.randrange(30 * 86400))
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if kind == "date":
        if column.nullable and i > 1 and rng.random() < 0.5:
            return ""
        return (created + timedelta(days=rng.randrange(60))).strftime("%Y-%m-%d")
    if kind == "cents":
        return str(rng.randrange(0, 50_000))
    if kind == "money":
        return f"{rng.uniform(1, 1000):.2f}"
    if kind == "int":
        return str(rng.randrange(0, 100))
    if kind == "float":
        return f"{rng.uniform(0, 100):.4f}"
    if kind == "bool":
        return rng.choice(("true", "false"))
    if kind == "email":
        return f"{rng.choice(WORDS)}.{i}@example.com"
    if kind == "name":
        return f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS).capitalize()}"
    if name == "postal_code":
        return f"PC-{rng.randrange(10_000, 99_999)}"
    return f"{rng.choice(WORDS)} {rng.choice(WORDS)} {i}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _words(identifier: str) -> str:
    return identifier.replace("_", " ")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/dbt_project_gen.py", description="Write a synthetic elt project with N dbt models."
    )
    parser.add_argument("out_dir", type=Path, help="folder of the project (made if missing)")
    parser.add_argument("--models", type=int, default=DEFAULT_MODELS, help="dbt models (default 1000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default 7)")
    parser.add_argument(
        "--rows",
        type=int,
        default=DEFAULT_ROWS,
        help="rows of each raw CSV file in data/ (default 20; 0: none)",
    )
    parser.add_argument("--force", action="store_true", help="replace a project already at OUT_DIR")
    args = parser.parse_args(argv)
    try:
        root = generate_project(args.out_dir, args.models, args.seed, rows=args.rows, force=args.force)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
