"""Deterministic sample data for the demo e-commerce project that `make demo` runs.

`generate` writes five raw files (customers, products, orders, order items, payments) that the
`tap-files` extractor reads and the dbt project in `models/` transforms; `append_orders` adds new
orders to them the way a user adding data would, so that an incremental sync and the incremental
`fct_orders` model have something to pick up. Only the standard library is used and every random
choice comes from one seeded generator, so the same seed and scale always give the same bytes.

Invariants the rest of the demo relies on:
- ids start at 1 and, within a file, increase together with `updated_at` (`paid_at` for payments),
  so either can be a replication key;
- every order item and payment references an existing order, and the payments of an order add up
  to its total (sum of quantity * unit_price); cancelled orders have no payment;
- timestamps are ISO-8601 in UTC with an explicit `+00:00` offset.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path
from typing import Generic, TextIO, TypeVar

from elt.errors import EltError

T = TypeVar("T")


@dataclass(frozen=True)
class _Weighted(Generic[T]):
    """A weighted choice, with the cumulative weights computed once (`random.choices` redoes them
    on every call, which dominated the generator's run time)."""

    values: tuple[T, ...]
    cum_weights: tuple[int, ...]

    @classmethod
    def of(cls, weights: dict[T, int]) -> _Weighted[T]:
        return cls(tuple(weights), tuple(accumulate(weights.values())))

    def pick(self, rng: random.Random) -> T:
        return self.values[bisect_right(self.cum_weights, rng.random() * self.cum_weights[-1])]


# Row counts at scale 1.0; about 112k rows in all (items average 1.55 per order, and one paid
# order in nine is paid in two parts).
BASE_CUSTOMERS = 5_000
BASE_PRODUCTS = 300
BASE_ORDERS = 30_000

DAY = 86_400
# Orders are placed over 2023-2024; customers sign up from a year before; the catalogue is older.
ORDERS_FROM = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp())
ORDERS_TO = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
CUSTOMERS_FROM = ORDERS_FROM - 365 * DAY
PRODUCTS_FROM = ORDERS_FROM - 500 * DAY

COLUMNS = {
    "customers.csv": (
        "customer_id", "first_name", "last_name", "email", "country", "created_at", "updated_at",
    ),
    "products.csv": ("product_id", "name", "category", "price", "updated_at"),
    "orders.csv": ("order_id", "customer_id", "status", "ordered_at", "updated_at"),
    "order_items.csv": ("order_item_id", "order_id", "product_id", "quantity", "unit_price"),
    "payments.jsonl": ("payment_id", "order_id", "method", "amount", "paid_at"),
}  # fmt: skip
FILES = tuple(COLUMNS)

ORDER_STATUSES = ("placed", "shipped", "completed", "returned", "cancelled")
PAYMENT_METHODS = ("card", "bank_transfer", "gift_card", "coupon")

FIRST_NAMES = (
    "Ada", "Alan", "Amara", "Ana", "Arjun", "Bea", "Carlos", "Chen", "Dana", "Elif", "Emma",
    "Farah", "Grace", "Hana", "Ivan", "Jonas", "Kofi", "Lena", "Liam", "Maya", "Mateo", "Nadia",
    "Noah", "Olga", "Omar", "Priya", "Rosa", "Sami", "Sofia", "Tariq", "Uma", "Yuki", "Zoe",
)  # fmt: skip
LAST_NAMES = (
    "Almeida", "Becker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
    "Jensen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Novak", "Okafor", "Petrov", "Quinn",
    "Rossi", "Schmidt", "Silva", "Tanaka", "Usman", "Varga", "Weber", "Yilmaz", "Zhang",
)  # fmt: skip
# Weighted towards a few big markets, as real shops are.
COUNTRIES = _Weighted.of({"US": 30, "GB": 12, "DE": 12, "FR": 10, "NL": 6, "ES": 6, "IT": 6,
                          "CA": 6, "BR": 5, "JP": 4, "IN": 3})  # fmt: skip
# Category -> (price range in cents, nouns).
CATALOGUE = {
    "apparel": ((1_500, 12_000), ("T-Shirt", "Hoodie", "Jacket", "Scarf", "Cap", "Sneakers")),
    "home": ((800, 25_000), ("Mug", "Lamp", "Cushion", "Blanket", "Vase", "Clock")),
    "electronics": ((2_000, 90_000), ("Headphones", "Speaker", "Charger", "Keyboard", "Camera")),
    "books": ((600, 4_500), ("Novel", "Cookbook", "Atlas", "Guide", "Notebook")),
    "outdoors": ((1_000, 40_000), ("Tent", "Backpack", "Bottle", "Lantern", "Hammock")),
}
ADJECTIVES = (
    "Classic", "Compact", "Cozy", "Urban", "Alpine", "Coastal", "Vintage", "Modern", "Everyday",
    "Deluxe", "Nordic", "Solar", "Trail", "Studio", "Weekend", "Signature",
)  # fmt: skip

# How long after an order was placed its last status change happened, in seconds.
STATUS_DELAY = {
    "placed": (0, 2 * 3600),
    "shipped": (DAY, 3 * DAY),
    "completed": (3 * DAY, 10 * DAY),
    "returned": (10 * DAY, 30 * DAY),
    "cancelled": (600, DAY),
}
STATUS_MIX = _Weighted.of({"placed": 4, "shipped": 10, "completed": 66, "returned": 8, "cancelled": 12})
FULL_PAYMENT_METHODS = _Weighted.of({"card": 70, "bank_transfer": 22, "gift_card": 8})
ITEMS_PER_ORDER = _Weighted.of({1: 55, 2: 35, 3: 10})
QUANTITIES = _Weighted.of({1: 70, 2: 20, 3: 10})
SPLIT_PAYMENT_SHARE = 0.12


@dataclass(frozen=True)
class _Customer:
    customer_id: int
    created_at: int


@dataclass(frozen=True)
class _Product:
    product_id: int
    price_cents: int


def generate(out_dir: Path, scale: float = 1.0, seed: int = 7) -> dict[str, int]:
    """Write the sample files into `out_dir` (created if needed) and return rows written per file.

    A file that already exists is left alone and reported as 0 rows, so running this twice, or after
    `append_orders`, never overwrites data. `scale` multiplies the row counts (1.0 gives about 112k
    rows in all); the same `seed` and `scale` always give byte-identical files.
    """
    if scale <= 0:
        raise EltError(f"sample data scale must be positive, got {scale}")
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = [name for name in FILES if not (out_dir / name).exists()]
    if not missing:
        return dict.fromkeys(FILES, 0)

    # Everything is generated even when only some files are missing, so that the files written
    # now agree with those written by an earlier run with the same seed and scale.
    rng = random.Random(seed)
    customers = _customer_rows(rng, max(1, round(BASE_CUSTOMERS * scale)))
    products = _product_rows(rng, max(5, round(BASE_PRODUCTS * scale)))
    orders, items, payments = _order_rows(
        rng,
        count=max(1, round(BASE_ORDERS * scale)),
        customers=[_Customer(int(r[0]), _parse(r[5])) for r in customers],
        products=[_Product(int(r[0]), _cents(r[3])) for r in products],
    )
    rows: dict[str, Sequence[object]] = {
        "customers.csv": customers,
        "products.csv": products,
        "orders.csv": orders,
        "order_items.csv": items,
        "payments.jsonl": payments,
    }
    written = dict.fromkeys(FILES, 0)
    for name in missing:
        _write_new(out_dir / name, rows[name])
        written[name] = len(rows[name])
    return written


def append_orders(out_dir: Path, count: int) -> int:
    """Append `count` new orders, with their items and payments, to the files in `out_dir`.

    New ids and timestamps come after every existing one, so an incremental sync keyed on ids or
    `updated_at` picks up exactly these rows. New orders are `placed` or `cancelled` (cancelled ones
    have no payment). Returns the number of orders appended. The random choices are seeded by the
    last existing order id, so the same files always get the same new orders.
    """
    if count < 0:
        raise EltError(f"cannot append a negative number of orders ({count})")
    missing = [name for name in FILES if not (out_dir / name).is_file()]
    if missing:
        raise EltError(
            f"cannot append orders to {out_dir}: missing {', '.join(missing)}",
            hint=f"generate the sample data first: python -m elt.sample {out_dir}",
        )
    if count == 0:
        return 0

    customers = [
        _Customer(int(r["customer_id"]), _parse(r["created_at"]))
        for r in _read_csv(out_dir / "customers.csv")
    ]
    products = [
        _Product(int(r["product_id"]), _cents(r["price"])) for r in _read_csv(out_dir / "products.csv")
    ]
    orders = _read_csv(out_dir / "orders.csv")
    payments = [json.loads(line) for line in _lines(out_dir / "payments.jsonl")]
    if not customers or not products:
        raise EltError(f"cannot append orders to {out_dir}: customers.csv or products.csv is empty")

    last_order_id = max((int(r["order_id"]) for r in orders), default=0)
    last_item_id = max((int(r["order_item_id"]) for r in _read_csv(out_dir / "order_items.csv")), default=0)
    last_payment_id = max((int(p["payment_id"]) for p in payments), default=0)
    last_time = max(
        [_parse(r["updated_at"]) for r in orders]
        + [_parse(p["paid_at"]) for p in payments]
        + [c.created_at for c in customers]
    )

    rng = random.Random(last_order_id)
    new_orders: list[list[str]] = []
    new_items: list[list[str]] = []
    new_payments: list[dict[str, object]] = []
    now = last_time
    for order_id in range(last_order_id + 1, last_order_id + count + 1):
        now += rng.randint(60, 1_800)
        status = "cancelled" if rng.random() < 0.2 else "placed"
        customer = rng.choice(customers)
        new_orders.append([str(order_id), str(customer.customer_id), status, _iso(now), _iso(now)])
        total = 0
        for product, quantity in _basket(rng, products):
            last_item_id += 1
            total += product.price_cents * quantity
            new_items.append(
                [str(last_item_id), str(order_id), str(product.product_id), str(quantity),
                 _money(product.price_cents)]
            )  # fmt: skip
        if status != "cancelled":
            # Paid within seconds, before the next order (at least a minute later) is placed.
            last_payment_id += 1
            new_payments.append(_payment(last_payment_id, order_id, "card", total, now + rng.randint(1, 30)))

    _append(out_dir / "orders.csv", new_orders)
    _append(out_dir / "order_items.csv", new_items)
    _append(out_dir / "payments.jsonl", new_payments)
    return count


def _customer_rows(rng: random.Random, count: int) -> list[list[str]]:
    rows = []
    for customer_id, updated_at in enumerate(_increasing(rng, count, CUSTOMERS_FROM, ORDERS_TO), 1):
        # Half the customers never changed their details since signing up.
        changed = rng.random() < 0.5
        created_at = updated_at - rng.randint(DAY, 180 * DAY) if changed else updated_at
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{first}.{last}.{customer_id}@example.com".lower()
        country = COUNTRIES.pick(rng)
        rows.append([str(customer_id), first, last, email, country, _iso(created_at), _iso(updated_at)])
    return rows


def _product_rows(rng: random.Random, count: int) -> list[list[str]]:
    categories = list(CATALOGUE)
    rows = []
    for product_id, updated_at in enumerate(_increasing(rng, count, PRODUCTS_FROM, ORDERS_FROM), 1):
        category = categories[(product_id - 1) % len(categories)]
        (low, high), nouns = CATALOGUE[category]
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(nouns)}"
        # Prices end in .99 or .49, as shops like them.
        price = rng.randint(low, high) // 100 * 100 + rng.choice((49, 99))
        rows.append([str(product_id), name, category, _money(price), _iso(updated_at)])
    return rows


def _order_rows(
    rng: random.Random, count: int, customers: Sequence[_Customer], products: Sequence[_Product]
) -> tuple[list[list[str]], list[list[str]], list[dict[str, object]]]:
    """Orders (ids following `updated_at`), their items, and payments (ids following `paid_at`)."""
    signups = sorted((c.created_at, c.customer_id) for c in customers)
    signup_times = [t for t, _ in signups]
    orders: list[list[str]] = []
    items: list[list[str]] = []
    unpaid: list[tuple[int, int, str, int]] = []  # (paid_at, order_id, method, cents)
    for order_id, updated_at in enumerate(_increasing(rng, count, ORDERS_FROM, ORDERS_TO), 1):
        status = STATUS_MIX.pick(rng)
        low, high = STATUS_DELAY[status]
        ordered_at = updated_at - rng.randint(low, high)
        # Only customers who had signed up by then can order; early orders may find none yet, in
        # which case the first customer to sign up places them.
        eligible = max(1, bisect_right(signup_times, ordered_at))
        customer_id = signups[rng.randrange(eligible)][1]
        orders.append([str(order_id), str(customer_id), status, _iso(ordered_at), _iso(updated_at)])
        total = 0
        for product, quantity in _basket(rng, products):
            total += product.price_cents * quantity
            items.append(
                [str(len(items) + 1), str(order_id), str(product.product_id), str(quantity),
                 _money(product.price_cents)]
            )  # fmt: skip
        if status == "cancelled":
            continue
        paid_at = ordered_at + rng.randint(5, 900)
        if rng.random() < SPLIT_PAYMENT_SHARE and total >= 2_000:
            # A gift card or coupon covers part of the order; the rest goes on a card or transfer.
            partial = min(rng.choice((500, 1_000, 2_500, 5_000)), total // 2)
            unpaid.append((paid_at, order_id, rng.choice(("gift_card", "coupon")), partial))
            rest = rng.choice(("card", "bank_transfer"))
            unpaid.append((paid_at + rng.randint(1, 60), order_id, rest, total - partial))
        else:
            method = FULL_PAYMENT_METHODS.pick(rng)
            unpaid.append((paid_at, order_id, method, total))
    unpaid.sort()
    payments = []
    last_paid_at = 0
    for payment_id, (paid_at, order_id, method, cents) in enumerate(unpaid, 1):
        # Payments in the same second are spread a second apart, so `paid_at` strictly increases.
        last_paid_at = max(paid_at, last_paid_at + 1)
        payments.append(_payment(payment_id, order_id, method, cents, last_paid_at))
    return orders, items, payments


def _basket(rng: random.Random, products: Sequence[_Product]) -> list[tuple[_Product, int]]:
    """Distinct products with quantities for one order."""
    lines = ITEMS_PER_ORDER.pick(rng)
    chosen = rng.sample(products, min(lines, len(products)))
    return [(product, QUANTITIES.pick(rng)) for product in chosen]


def _increasing(rng: random.Random, count: int, start: int, end: int) -> list[int]:
    """`count` strictly increasing epoch seconds spread at random over [start, end)."""
    times = sorted(rng.randrange(start, end) for _ in range(count))
    for i in range(1, count):
        if times[i] <= times[i - 1]:
            times[i] = times[i - 1] + 1
    return times


def _payment(payment_id: int, order_id: int, method: str, cents: int, paid_at: int) -> dict[str, object]:
    return {
        "payment_id": payment_id,
        "order_id": order_id,
        "method": method,
        "amount": cents / 100,
        "paid_at": _iso(paid_at),
    }


def _iso(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).isoformat()


def _parse(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp())


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _cents(amount: str) -> int:
    return round(float(amount) * 100)


def _write_new(path: Path, rows: Sequence[object]) -> None:
    """Write a whole file under a temporary name first, so a crash never leaves a partial file
    that a later run would take for finished data and keep."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as f:
        if path.suffix == ".csv":
            f.write(",".join(COLUMNS[path.name]) + "\n")
        _write_rows(f, path, rows)
    os.replace(partial, path)


def _append(path: Path, rows: Sequence[object]) -> None:
    with path.open("a", encoding="utf-8", newline="") as f:
        if not _ends_with_newline(path):
            f.write("\n")
        _write_rows(f, path, rows)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _write_rows(f: TextIO, path: Path, rows: Iterable[object]) -> None:
    if path.suffix == ".csv":
        csv.writer(f, lineterminator="\n").writerows(rows)  # type: ignore[arg-type]
    else:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [line for line in f if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m elt.sample DIR [--scale S] [--seed N] [--append-orders N]`."""
    parser = argparse.ArgumentParser(
        prog="python -m elt.sample",
        description="Write the demo e-commerce sample data (existing files are kept).",
    )
    parser.add_argument("out_dir", type=Path, metavar="DIR")
    parser.add_argument("--scale", type=float, default=1.0, help="row-count multiplier (1.0)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (7)")
    parser.add_argument("--append-orders", type=int, default=0, metavar="N", help="then append N new orders")
    args = parser.parse_args(argv)
    try:
        written = generate(args.out_dir, scale=args.scale, seed=args.seed)
        for name, rows in written.items():
            path = args.out_dir / name
            print(f"{path}: wrote {rows} rows" if rows else f"{path}: kept the existing file")
        if args.append_orders:
            appended = append_orders(args.out_dir, args.append_orders)
            print(f"{args.out_dir}: appended {appended} orders with their items and payments")
    except EltError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
