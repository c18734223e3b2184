"""Load and validate the project file (`elt.yml`, or a Meltano project's `meltano.yml`).

`load_project` finds the file, parses it with line numbers, validates it against the shipped JSON
Schema, expands `${VAR}` references and applies the chosen environment. The result is a plain value;
plugins, pipelines and the dbt settings are looked up from it by the modules that use them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elt.errors import ProjectError, ValidationError
from elt.interpolate import MissingVariable, interpolate, project_environment
from elt.secrets import SecretReference, check_references
from elt.validate import validate_document
from elt.yamlfile import LocatedDocument, load_located

if TYPE_CHECKING:
    from elt.systemdb import Location

PROJECT_FILES = ("elt.yml", "elt.yaml", "meltano.yml")
PLUGIN_TYPES = ("extractors", "loaders", "mappers", "utilities", "transformers", "orchestrators")
ENVIRONMENT_VARIABLE = "ELT_ENVIRONMENT"


@dataclass(frozen=True)
class Project:
    """A loaded project: where it lives, its (interpolated) data and the environment in force."""

    root: Path
    file: Path
    data: dict[str, Any]
    environment: str | None
    lines: dict[str, int] = field(default_factory=dict)
    missing: tuple[MissingVariable, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)
    secrets: tuple[SecretReference, ...] = ()  # the `${secret:…}` references, resolved only where used

    @property
    def system_dir(self) -> Path:
        """`.elt/` in the project: system database, logs, run files, warehouse."""
        return self.root / ".elt"

    @cached_property
    def system_db(self) -> Location:
        """The system database: `.elt/elt.db` (SQLite), or the PostgreSQL URL of ELT_SYSTEM_DB, else of
        the environment's `system_db:`, else of the top-level one (elt/systemdb.py)."""
        from elt.secrets import resolve_secrets
        from elt.systemdb import is_postgres

        given, where = os.environ.get("ELT_SYSTEM_DB") or None, "ELT_SYSTEM_DB"
        if given is None:
            index = next((i for i, e in enumerate(self.data.get("environments") or [])
                          if e.get("name") == self.environment), None)  # fmt: skip
            entry = self.environment_entry().get("system_db")
            for where, value in ((f"environments[{index}].system_db", entry),
                                 ("system_db", self.data.get("system_db"))):  # fmt: skip
                if value:
                    given = str(resolve_secrets(self, value, where))
                    break
        if given is None or given.strip() in ("", "sqlite"):
            return self.system_dir / "elt.db"
        if not is_postgres(given.strip()):
            raise ProjectError(
                f"{self.where(where) if where != 'ELT_SYSTEM_DB' else where}: system_db: expected a "
                f"postgresql:// URL (or nothing, for .elt/elt.db), got '{given.split('://')[0]}://…'"
            )
        return given.strip()

    def line_of(self, path: str) -> int:
        return LocatedDocument(self.file, self.data, self.lines).line_of(path)

    def where(self, path: str) -> str:
        """`elt.yml:12` for a key path, for error messages."""
        return f"{self.file.name}:{self.line_of(path)}"

    def environment_entry(self) -> dict[str, Any]:
        """The `environments:` entry in force ({} when there is none)."""
        for entry in self.data.get("environments") or []:
            if entry.get("name") == self.environment:
                return dict(entry)
        return {}

    def env(self) -> dict[str, str]:
        """Variables the project adds for its processes: top-level `env`, then the environment's, with
        their `${secret:…}` resolved."""
        from elt.secrets import resolve_secrets

        merged = {k: str(v) for k, v in resolve_secrets(self, self.data.get("env") or {}, "env").items()}
        index = next((i for i, e in enumerate(self.data.get("environments") or [])
                      if e.get("name") == self.environment), None)  # fmt: skip
        entry = resolve_secrets(self, self.environment_entry().get("env") or {}, f"environments[{index}].env")
        merged.update({k: str(v) for k, v in entry.items()})
        return merged


def find_project_file(start: Path) -> Path:
    """The project file in `start` or its nearest ancestor that has one."""
    start = start.resolve()
    for directory in (start, *start.parents):
        for name in PROJECT_FILES:
            candidate = directory / name
            if candidate.is_file():
                return candidate
    raise ProjectError(
        f"no elt.yml (or meltano.yml) in {start} or any folder above it",
        hint="run `elt init DIR` to create a project, or cd into one",
    )


def load_project(start: Path | None = None, environment: str | None = None) -> Project:
    """Load the project at or above `start` (default: the working directory).

    The environment is `environment`, else `$ELT_ENVIRONMENT`, else the file's `default_environment`.
    Raises ValidationError with every located problem when the file does not match the schema.
    """
    file = find_project_file(start or Path.cwd())
    doc = load_located(file)
    problems = validate_document(doc)
    if problems:
        raise ValidationError(problems)
    root = file.parent
    variables = project_environment(root)
    data: dict[str, Any] = doc.data
    name = environment or os.environ.get(ENVIRONMENT_VARIABLE) or data.get("default_environment")
    names = [e.get("name") for e in data.get("environments") or []]
    if name and name not in names:
        if environment or os.environ.get(ENVIRONMENT_VARIABLE):
            known = ", ".join(str(n) for n in names) or "none defined"
            raise ProjectError(f"{file.name}: environment '{name}' is not defined (environments: {known})")
        line = doc.line_of("default_environment")
        raise ProjectError(
            f"{file.name}:{line}: key 'default_environment': expected one of the names under "
            f"'environments', got '{name}'"
        )
    # Variables set by the environment entry count as if they were in the process environment.
    for entry in data.get("environments") or []:
        if entry.get("name") == name:
            for key, value in (entry.get("env") or {}).items():
                variables.setdefault(key, str(value))
    for key, value in (data.get("env") or {}).items():
        variables.setdefault(key, str(value))
    missing: list[MissingVariable] = []
    interpolated = interpolate(data, variables, "", missing)
    located = LocatedDocument(file, interpolated, doc.lines)
    references = check_references(lambda path: f"{file.name}:{located.line_of(path)}", interpolated)
    return Project(
        root=root,
        file=file,
        data=interpolated,
        environment=name,
        lines=doc.lines,
        missing=tuple(missing),
        variables=variables,
        secrets=references,
    )


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`; nested mappings merge, anything else is replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result
