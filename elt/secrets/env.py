"""The `env` backend (the default): `${secret:NAME}` is the variable NAME of the process environment or the
project's `.env`, like `${NAME}`, but masked wherever elt writes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from elt.secrets.backend import select_field, split_field

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EnvBackend:
    name = "env"
    cacheable = False  # the environment is read afresh: a dict lookup, and it may change

    def __init__(self, variables: Mapping[str, str]) -> None:
        self.variables = variables

    @classmethod
    def from_settings(
        cls, root: Path, settings: Mapping[str, Any], variables: Mapping[str, str]
    ) -> EnvBackend:
        return cls(variables)

    def get(self, name: str) -> str | None:
        variable, field = split_field(name)
        if not _NAME.fullmatch(variable):
            return None
        value = self.variables.get(variable)
        if value is None or value == "":
            return None
        return select_field(value, field, f"environment variable '{variable}'")

    def describe(self) -> str:
        return "the process's environment and .env"

    def hint(self, name: str) -> str:
        variable = split_field(name)[0]
        if not _NAME.fullmatch(variable):
            return f"'{variable}' cannot be an environment variable's name: use letters, digits and '_'"
        return f"export {variable}=… before running elt, or add `{variable}=…` to the project's .env"
