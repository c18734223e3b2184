"""Errors target-duckdb reports: each names the stream, the column and what was expected."""

from __future__ import annotations

from elt.errors import EltError


class LoadError(EltError):
    """A batch could not be loaded; nothing of it was written and no STATE after it was emitted."""

    exit_code = 1
