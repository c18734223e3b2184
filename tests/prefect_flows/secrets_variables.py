"""Secrets, variables and blocks: credentials come from Secret blocks, settings from variables."""

import json
from pathlib import Path

from prefect import flow, task
from prefect.blocks.system import JSON, Secret
from prefect.variables import Variable
from prefect_aws import AwsCredentials


@task(retries=2)
def fetch_customers(base_url: str, token: str, batch_size: int, folder: str) -> list[dict]:
    # a real flow would call the CRM; the sample reads the exported file
    assert token, "no API token"
    customers = json.loads((Path(folder) / "customers.json").read_text())
    return [dict(c, source=base_url) for c in customers[:batch_size]]


@task
def load_customers(customers: list[dict], folder: str) -> int:
    dsn = Secret.load("warehouse-dsn").get()
    schema = Variable.get("warehouse_schema", default="crm")
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    (out / f"{schema}.json").write_text(json.dumps({"dsn_set": bool(dsn), "rows": customers}))
    return len(customers)


@flow(name="crm-sync")
def crm_sync(folder: str = "inputs") -> None:
    token = Secret.load("crm-api-token").get()
    base_url = Variable.get("crm_base_url", default="https://crm.example.com")
    batch_size = Variable.get("crm_batch_size", default=500)
    settings = JSON.load("crm-settings").value
    credentials = AwsCredentials.load("prod-aws")
    customers = fetch_customers(base_url, token, batch_size, folder)
    load_customers(customers, folder)
    print(settings, credentials)
