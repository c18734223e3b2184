"""Async orchestration a converter cannot follow: tasks started with create_task, awaited as they finish."""

import asyncio
import json
from pathlib import Path

from prefect import flow, task


@task
async def load_page(folder: str, page: int) -> list[dict]:
    return json.loads((Path(folder) / "pages" / f"page-{page}.json").read_text())


@task
async def save_page(rows: list[dict], folder: str) -> None:
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    (out / f"page-{rows[0]['page']}.json").write_text(json.dumps(rows))


@flow
async def page_stream(folder: str = "inputs", pages: int = 4) -> None:
    pending = [asyncio.create_task(load_page(folder, n)) for n in range(1, pages + 1)]
    for finished in asyncio.as_completed(pending):
        rows = await finished
        await save_page(rows, folder)
