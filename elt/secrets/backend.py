"""What a secrets backend is, and the table of the backends elt knows.

A backend answers `get(name)` with the secret's value, or None when it has no secret of that name; it
raises SecretError when it cannot tell (unreachable, refused, undecryptable). `describe()` and `hint(name)`
make the message of a missing secret say where elt looked and how to create it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from elt.errors import SecretError

# name -> (module, class); a class is built with `from_settings`, imported only when a reference uses it
BACKENDS: dict[str, tuple[str, str]] = {
    "env": ("elt.secrets.env", "EnvBackend"),
    "store": ("elt.secrets.store", "SecretStore"),
    "aws": ("elt.secrets.aws", "AwsBackend"),
    "vault": ("elt.secrets.vault", "VaultBackend"),
}
DEFAULT_BACKEND = "env"


class SecretBackend(Protocol):
    """Where `${secret:NAME}` values come from."""

    name: str
    cacheable: bool  # a remote backend's answers are kept for the life of the process

    def get(self, name: str) -> str | None:
        """The value of secret `name` (`name#field` picks a field of a JSON object), None if there is none."""
        ...

    def describe(self) -> str:
        """Where it looks, for messages: `AWS Secrets Manager (eu-west-1)`."""
        ...

    def hint(self, name: str) -> str:
        """How to create the secret `name` there."""
        ...


def open_backend(
    name: str, root: Path, settings: Mapping[str, Any], variables: Mapping[str, str]
) -> SecretBackend:
    """The backend `name` for the project at `root`, built from its `secrets.<name>` settings and the
    project's environment (`.env` and the process) by its class's `from_settings`."""
    import importlib

    module, cls = BACKENDS[name]
    backend: SecretBackend = getattr(importlib.import_module(module), cls).from_settings(
        root, settings, variables
    )
    return backend


def split_field(name: str) -> tuple[str, str | None]:
    """`db#password` -> (`db`, `password`); `db` -> (`db`, None)."""
    base, sep, field = name.partition("#")
    return base, (field if sep else None)


def select_field(text: str, field: str | None, what: str) -> str | None:
    """`text` itself, or the field `field` of the JSON object it holds (None when it has no such field)."""
    if field is None:
        return text
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise SecretError(
            f"{what} is not a JSON object, so it has no field '{field}'",
            hint="refer to the whole value without `#FIELD`, or store a JSON object",
        )
    return as_text(document.get(field)) if field in document else None


def as_text(value: Any) -> str:
    """A field's value as the string a setting gets: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)
