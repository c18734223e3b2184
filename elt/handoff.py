"""Arrow tables passed from a built-in tap to a built-in target that run in the same process.

When `elt sync` runs a built-in tap and a built-in target together in its own process
(elt/inprocess.py), the tap's `batch_config` storage root is `ROOT`. Where the tap would write a
batch's Parquet file, it files the batch's Arrow table here instead and announces the URL this gives
in its BATCH message, as it would a file's; the target takes the table back by that URL and loads it.
Nothing is serialized, copied or written to disk on the way.

A table stays here from the tap's `put` to the target's `take`; elt/inprocess.py bounds how many
BATCH messages (so tables) are in flight, and `discard` drops what a failed run left.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

SCHEME = "arrow"
ROOT = f"{SCHEME}://batches"

_tables: dict[str, pa.Table] = {}
_numbers = itertools.count(1)


def is_handoff(url: str | None) -> bool:
    """Whether `url` (a storage root or a manifest entry) is the in-process hand-off's."""
    return bool(url) and str(url).startswith(f"{SCHEME}://")


def put(table: pa.Table, stream: str) -> str:
    """File `table`, a batch of `stream`; the URL its BATCH message names it by."""
    url = f"{ROOT}/{next(_numbers)}/{stream}"
    _tables[url] = table
    return url


def rows(url: str) -> int:
    """How many rows the batch at `url` holds (0 if it is not here)."""
    table = _tables.get(url)
    return 0 if table is None else table.num_rows


def take(url: str, stream: str) -> pa.Table:
    """The batch at `url`, which leaves the hand-off."""
    from elt.errors import EltError

    try:
        return _tables.pop(url)
    except KeyError:
        raise EltError(
            f"stream '{stream}': BATCH {url} names no table handed over in this process",
            hint="in-process batches are only for a tap and a target that `elt sync` runs together",
        ) from None


def discard(urls: list[str] | None = None) -> None:
    """Drop the batches at `urls` (all of them if None), e.g. what a failed run left behind."""
    for url in list(_tables) if urls is None else urls:
        _tables.pop(url, None)
