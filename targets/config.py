"""What the built-in targets' configs have in common before singer-sdk reads them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def normalized_config(
    config: Mapping[str, Any], aliases: Mapping[str, str], batch_size_rows: int
) -> dict[str, Any]:
    """`config` with alias keys folded into the keys singer-sdk and the target read, plus defaults.

    singer-sdk's sinks read `batch_size_rows`, `validate_records`, `add_record_metadata` and the
    flattening keys straight from the config, so the defaults and aliases are written into it.
    """
    result = dict(config)
    for alias, key in aliases.items():
        if alias in result and key not in result:
            result[key] = result[alias]
    result.setdefault("batch_size_rows", batch_size_rows)
    result.setdefault("validate_records", False)
    level = result.get("data_flattening_max_level")
    if level and "flattening_enabled" not in result:
        result["flattening_enabled"] = True
        result["flattening_max_depth"] = level
    return result
