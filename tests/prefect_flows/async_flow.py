"""An async flow: pages are fetched concurrently with asyncio.gather, combined, then stored."""

import asyncio
import json
from pathlib import Path

from prefect import flow, task


@task
async def fetch_page(folder: str, page: int) -> list[dict]:
    await asyncio.sleep(0.01)
    return json.loads((Path(folder) / "pages" / f"page-{page}.json").read_text())


@task
async def combine(first: list[dict], second: list[dict], rest: list[list[dict]]) -> list[dict]:
    rows = [*first, *second]
    for page in rest:
        rows.extend(page)
    return sorted(rows, key=lambda r: r["item"])


@task
async def store(rows: list[dict], folder: str) -> None:
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    (out / "items.json").write_text(json.dumps(rows, indent=1))


@flow(name="async-pages")
async def async_pages(folder: str = "inputs") -> None:
    first, second = await asyncio.gather(fetch_page(folder, 1), fetch_page(folder, 2))
    more = await asyncio.gather(*[fetch_page(folder, n) for n in [3, 4]])
    rows = await combine(first, second, more)
    await store(rows, folder)


if __name__ == "__main__":
    asyncio.run(async_pages())
