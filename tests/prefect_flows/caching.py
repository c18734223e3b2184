"""Caching: rates are fetched once an hour, conversions are cached on their inputs and code."""

import json
from datetime import timedelta
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.tasks import task_input_hash


@task(cache_key_fn=task_input_hash, cache_expiration=timedelta(hours=1))
def fetch_rates(folder: str) -> dict:
    return json.loads((Path(folder) / "rates.json").read_text())


@task(cache_policy=INPUTS + TASK_SOURCE, cache_expiration=timedelta(minutes=30))
def price_list(rates: dict, base_price: float) -> dict:
    return {currency: round(base_price * rate, 2) for currency, rate in sorted(rates.items())}


@task(cache_key_fn=lambda context, parameters: "segments-" + Path(parameters["folder"]).name)
def customer_segments(folder: str) -> dict:
    customers = json.loads((Path(folder) / "customers.json").read_text())
    segments: dict[str, int] = {}
    for c in customers:
        segments[c["segment"]] = segments.get(c["segment"], 0) + 1
    return segments


@task(cache_policy=NO_CACHE)
def save(prices: dict, segments: dict, folder: str) -> None:
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    (out / "prices.json").write_text(json.dumps({"prices": prices, "segments": segments}, sort_keys=True))


@flow(name="cached-prices")
def cached_prices(folder: str = "inputs", base_price: float = 19.99) -> None:
    rates = fetch_rates(folder)
    prices = price_list(rates, base_price)
    segments = customer_segments(folder)
    save(prices, segments, folder)
