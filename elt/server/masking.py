"""What `elt serve` must never answer with: the secret values a project knows.

The server registers them with `elt.logs.register_secret`, the registry every masking in elt reads, and
passes each answer through `elt.logs.mask_json`. A run's own process masks what it writes (its logs, its
record) with the values it resolves; the server masks again with every value it can know: those of the
`${secret:…}` references of elt.yml (resolved once per process, as a run resolves them), of settings
whose names say they are secret, anywhere in elt.yml (a plugin's `password`, a URL's password, a
trigger's `secret`, an `env:` entry named `…_TOKEN`), and of variables of the project's environment
(`.env`, the process) whose names say so.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from elt.errors import EltError
from elt.logs import register_secret
from elt.plugins import SECRET_WORDS, secret_values
from elt.project import Project
from elt.secrets.resolve import START, find_references, resolve_secrets


def register_project_secrets(project: Project) -> None:
    """Register every secret value `project` knows, so that `elt.logs.mask` hides it from now on."""
    found: set[str] = set()
    _collect(project.data, found)
    for name, value in project.variables.items():
        if isinstance(value, str) and any(word in name.lower() for word in SECRET_WORDS):
            found.add(value)
    for value in found:
        if START not in value:  # a reference: registered below, once resolved
            register_secret(value)
    references, _ = find_references(project.data)
    for reference in references:
        # Resolving registers the value. One that cannot be resolved is left: the server only masks with
        # it, and a run that needs it reports the error itself.
        with suppress(EltError):
            resolve_secrets(project, reference.text, reference.path)


def _collect(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        found |= secret_values(value)
        for item in value.values():
            _collect(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, found)
