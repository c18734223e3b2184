"""A Prefect 2 flow: ConcurrentTaskRunner, `variables.get`, Deployment.build_from_flow with schedules."""

import json
from pathlib import Path

from prefect import flow, task, variables
from prefect.deployments import Deployment
from prefect.server.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.task_runners import ConcurrentTaskRunner


@task(retries=2, retry_delay_seconds=5)
def read_rates(folder: str) -> dict:
    return json.loads((Path(folder) / "rates.json").read_text())


@task
def strongest(rates: dict, mode: str) -> str:
    return max(rates, key=rates.get) if mode == "max" else min(rates, key=rates.get)


@task
def write_result(currency: str, folder: str) -> None:
    (Path(folder) / "out").mkdir(exist_ok=True)
    (Path(folder) / "out" / "currency.txt").write_text(currency)


@flow(task_runner=ConcurrentTaskRunner())
def legacy_rates(folder: str = "inputs") -> None:
    mode = variables.get("rates_mode", default="max")
    rates = read_rates.submit(folder)
    currency = strongest.submit(rates, mode)
    write_result.submit(currency, folder)


if __name__ == "__main__":
    Deployment.build_from_flow(
        flow=legacy_rates,
        name="legacy-nightly",
        schedule=CronSchedule(cron="0 1 * * *", timezone="UTC"),
        parameters={"folder": "/data"},
    ).apply()
    Deployment.build_from_flow(
        flow=legacy_rates, name="legacy-half-hourly", schedule=IntervalSchedule(interval=1800)
    ).apply()
