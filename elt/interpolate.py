"""`${VAR}` and `${VAR:-default}` in project files, from the process environment and a `.env` file."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from elt.yamlfile import join_path

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


@dataclass(frozen=True)
class MissingVariable:
    """A `${VAR}` with no value and no default, at `path` of the project file."""

    path: str
    variable: str


def read_dotenv(root: Path) -> dict[str, str]:
    """The variables of `ROOT/.env` (empty when there is none)."""
    file = root / ".env"
    if not file.is_file():
        return {}
    return {k: v for k, v in dotenv_values(file).items() if v is not None}


def project_environment(root: Path) -> dict[str, str]:
    """The variables a project sees: `.env` first, the process environment overriding it."""
    return {**read_dotenv(root), **os.environ}


def interpolate(
    value: Any,
    variables: Mapping[str, str],
    path: str = "",
    missing: list[MissingVariable] | None = None,
) -> Any:
    """Replace references in every string inside `value`.

    A string that is a single reference takes the YAML type of what it expands to (`${PORT}` -> 5432),
    so that typed settings can come from the environment. References with neither a value nor a default
    expand to "" and are recorded in `missing`, to be reported only if the setting is used.
    """
    if isinstance(value, dict):
        return {k: interpolate(v, variables, join_path(path, str(k)), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables, join_path(path, i), missing) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def expand(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in variables and (variables[name] != "" or default is None):
            return variables[name]
        if default is not None:
            return default
        if missing is not None:
            missing.append(MissingVariable(path=path, variable=name))
        return ""

    expanded = _REFERENCE.sub(expand, value)
    if _REFERENCE.fullmatch(value) and expanded:
        try:
            typed = yaml.safe_load(expanded)
        except yaml.YAMLError:
            return expanded
        if isinstance(typed, bool | int | float):
            return typed
    return expanded
