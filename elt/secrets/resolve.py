"""Find `${secret:…}` references in a project file and resolve them where a setting is used.

    resolve_secrets(project, plugin.config, f"{plugin.path}.config")  # the config with the values in it

A reference is `${secret:NAME}` (the default backend: `secrets.backend`, else `env`) or
`${secret:BACKEND:NAME}`; `NAME#FIELD` takes a field of a JSON secret (Vault: of the secret's data).
Each value is fetched once per process from a remote backend (aws, vault) and registered for masking.
"""

from __future__ import annotations

import difflib
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from elt.errors import ProjectError, SecretError
from elt.logs import register_secret
from elt.secrets.backend import BACKENDS, DEFAULT_BACKEND, SecretBackend, open_backend
from elt.yamlfile import join_path

if TYPE_CHECKING:
    from elt.project import Project

START = "${secret:"
REFERENCE = re.compile(
    r"\$\{secret:(?:(?P<backend>[A-Za-z][A-Za-z0-9_]*):)?(?P<name>[A-Za-z0-9_./@+=-]+(?:#[^}\s]+)?)\}"
)
FORMS = "${secret:NAME}, ${secret:BACKEND:NAME} or ${secret:BACKEND:NAME#FIELD}"

_lock = threading.Lock()
_values: dict[tuple[str, ...], str] = {}  # remote backends' answers, for the life of the process
_backends: dict[tuple[str, ...], SecretBackend] = {}
_opening = threading.local()  # backends whose own settings are being resolved (a loop guard)


@dataclass(frozen=True)
class SecretReference:
    """A `${secret:…}` at `path` of the project file."""

    path: str
    text: str  # as written: `${secret:aws:db#password}`
    backend: str | None  # None: the default backend
    name: str  # `db#password`


def find_references(data: Any, path: str = "") -> tuple[list[SecretReference], list[tuple[str, str]]]:
    """The references in every string of `data`, and the (path, text) of malformed ones."""
    found: list[SecretReference] = []
    malformed: list[tuple[str, str]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            more, bad = find_references(value, join_path(path, str(key)))
            found += more
            malformed += bad
    elif isinstance(data, list):
        for index, value in enumerate(data):
            more, bad = find_references(value, join_path(path, index))
            found += more
            malformed += bad
    elif isinstance(data, str) and START in data:
        for match in REFERENCE.finditer(data):
            found.append(SecretReference(path, match.group(0), match.group("backend"), match.group("name")))
        rest = REFERENCE.sub("", data)
        if START in rest:
            start = rest.index(START)
            end = rest.find("}", start)
            malformed.append((path, rest[start : end + 1 if end >= 0 else len(rest)]))
    return found, malformed


def check_references(where: Callable[[str], str], data: Any) -> tuple[SecretReference, ...]:
    """The references of a loaded project file (`data`); ProjectError naming the line of a malformed one
    or one naming an unknown backend. `where(path)` gives `elt.yml:12` for a key path."""
    found, malformed = find_references(data)
    for path, text in malformed:
        raise ProjectError(f"{where(path)}: key '{path}': malformed secret reference '{text}'",
                           hint=f"write {FORMS}")  # fmt: skip
    for reference in found:
        if reference.backend is not None and reference.backend not in BACKENDS:
            guess = difflib.get_close_matches(reference.backend, list(BACKENDS), n=1, cutoff=0.5)
            raise ProjectError(
                f"{where(reference.path)}: key '{reference.path}': unknown secrets backend "
                f"'{reference.backend}' in {reference.text}",
                hint=f"did you mean '{guess[0]}'?" if guess else f"backends: {', '.join(BACKENDS)}",
            )
    return tuple(found)


def secrets_settings(project: Project) -> dict[str, Any]:
    """The `secrets:` settings in force: the top-level ones, the environment's merged on top."""
    from elt.project import deep_merge

    top = project.data.get("secrets") or {}
    return deep_merge(top, project.environment_entry().get("secrets") or {})


def resolve_secrets(project: Project, value: Any, path: str) -> Any:
    """`value` with every `${secret:…}` in its strings replaced by the secret's value.

    `path` is the key path of `value` in the project file (`plugins.extractors[0].config`), to name the
    setting when a secret cannot be resolved (SecretError with file, line, key, backend and the fix).
    """
    if isinstance(value, dict):
        return {k: resolve_secrets(project, v, join_path(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(project, v, join_path(path, i)) for i, v in enumerate(value)]
    if not isinstance(value, str) or START not in value:
        return value

    def expand(match: re.Match[str]) -> str:
        return _resolve(project, match.group("backend"), match.group("name"), match.group(0), path)

    resolved = REFERENCE.sub(expand, value)
    leftover = REFERENCE.sub("", value)
    if START in leftover:
        raise SecretError(f"{_prefix(project, value, path)}malformed secret reference in {leftover!r}",
                          hint=f"write {FORMS}")  # fmt: skip
    return resolved


@dataclass(frozen=True)
class ResolvedSecret:
    backend: str
    name: str
    value: str
    where: str  # the backend's description


def resolve_reference(project: Project, reference: str) -> ResolvedSecret:
    """The secret `NAME` or `BACKEND:NAME` (what `${secret:…}` holds), as elt.yml would resolve it."""
    text = reference if reference.startswith(START) else f"{START}{reference}}}"
    match = REFERENCE.fullmatch(text)
    if match is None:
        raise SecretError(f"malformed secret reference '{reference}'", hint="write NAME, BACKEND:NAME or "
                          "BACKEND:NAME#FIELD")  # fmt: skip
    backend_name = _backend_name(project, match.group("backend"))
    backend = _backend(project, backend_name)
    value = _resolve(project, match.group("backend"), match.group("name"), text, "")
    return ResolvedSecret(backend_name, match.group("name"), value, backend.describe())


def clear_cache() -> None:
    """Forget every value and backend this process has resolved (values stay registered for masking)."""
    with _lock:
        _values.clear()
        _backends.clear()


def _resolve(project: Project, backend: str | None, name: str, text: str, path: str) -> str:
    backend_name = _backend_name(project, backend)
    key = (str(project.root), str(project.environment), backend_name, name)
    try:
        opened = _backend(project, backend_name)
        with _lock:
            value = _values.get(key) if opened.cacheable else None
        if value is None:
            value = opened.get(name)
    except SecretError as error:
        raise SecretError(f"{_prefix(project, text, path)}{text}: {error.message}", hint=error.hint) from None
    if value is None:
        raise SecretError(
            f"{_prefix(project, text, path)}secret '{name}' not found in backend '{backend_name}' "
            f"({opened.describe()})",
            hint=opened.hint(name),
        )
    register_secret(value)
    if opened.cacheable:
        with _lock:
            _values[key] = value
    return value


def _backend_name(project: Project, backend: str | None) -> str:
    name = backend or str(secrets_settings(project).get("backend") or DEFAULT_BACKEND)
    if name not in BACKENDS:
        raise SecretError(f"unknown secrets backend '{name}'", hint=f"backends: {', '.join(BACKENDS)}")
    return name


def _backend(project: Project, name: str) -> SecretBackend:
    """The backend `name` with the project's settings; remote ones are built once per process."""
    from elt.interpolate import project_environment

    raw = secrets_settings(project).get(name) or {}
    if not isinstance(raw, Mapping):
        raise SecretError(f"{project.where('secrets')}: key 'secrets.{name}': expected a mapping of settings")
    key = (str(project.root), str(project.environment), name, json.dumps(raw, sort_keys=True, default=str))
    with _lock:
        cached = _backends.get(key)
    if cached is not None:
        return cached
    opening: set[str] = getattr(_opening, "names", set())
    if name in opening:
        raise SecretError(f"{project.where('secrets')}: the settings of secrets backend '{name}' refer to "
                          f"secrets of '{name}' itself")  # fmt: skip
    _opening.names = opening | {name}
    try:
        # a backend's own settings may come from another one: `token: ${secret:store:VAULT_TOKEN}`
        settings = resolve_secrets(project, dict(raw), f"secrets.{name}")
        backend = open_backend(name, project.root, settings, project_environment(project.root))
    finally:
        _opening.names = opening
    if backend.cacheable:
        with _lock:
            _backends[key] = backend
    return backend


def _prefix(project: Project, text: str, path: str) -> str:
    """`elt.yml:12: key 'plugins.extractors[0].config.password': ` for a reference used at `path`."""
    if not path:
        return ""
    where, at = _locate(project, text, path)
    return f"{where}: key '{at}': "


def _locate(project: Project, text: str, path: str) -> tuple[str, str]:
    """(`elt.yml:12`, key path) of the reference `text`: where it is written, near `path` if it is
    written several times; `path` itself when it came from elsewhere (an environment variable)."""
    references = [r for r in getattr(project, "secrets", ()) if r.text in text]
    near = [r for r in references if r.path == path or r.path.startswith((path + ".", path + "["))]
    chosen = (near or references or [None])[0]
    at = chosen.path if chosen is not None else path
    return project.where(at), at
