"""From the `state_backend` settings of elt.yml to a `StateStore`.

    state_backend:
      uri: s3://my-bucket/elt-state      # systemdb (default) | file://DIR | postgresql://… | s3://…
      lock_timeout_seconds: 30           # a lock whose heartbeat is older has expired
      lock_retry_seconds: 1              # how often `--wait` looks again
      s3: {aws_access_key_id: …, aws_secret_access_key: …, endpoint_url: …}
      postgresql: {schema: …, password: …}

The `state_backend` of the environment in force overrides the top-level one key by key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from elt.errors import ProjectError
from elt.project import Project, deep_merge
from elt.state.backend import StateBackend, mask_uri
from elt.state.store import DEFAULT_LOCK_RETRY_SECONDS, DEFAULT_LOCK_TIMEOUT_SECONDS, StateStore

ACCEPTED_FORMS = (
    "systemdb (the default: .elt/elt.db), file://DIR (relative to the project), "
    "postgresql://USER:PASSWORD@HOST:PORT/DATABASE, s3://BUCKET/PREFIX"
)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
POSTGRES_CONNECT_SETTINGS = {"host": "host", "port": "port", "user": "user", "password": "password",
                             "database": "dbname", "sslmode": "sslmode"}  # fmt: skip


def open_state_store(project: Project) -> StateStore:
    """The state store `project` is configured for (`state_backend` in elt.yml; systemdb by default).

    Raises ProjectError naming the elt.yml line when a setting is malformed. Connects lazily: nothing
    is opened until the store is first used.
    """
    settings = _Settings(project)
    return StateStore(
        _backend(settings),
        lock_timeout_seconds=settings.seconds("lock_timeout_seconds", DEFAULT_LOCK_TIMEOUT_SECONDS),
        lock_retry_seconds=settings.seconds("lock_retry_seconds", DEFAULT_LOCK_RETRY_SECONDS),
    )


class _Settings:
    """The merged `state_backend` settings, and where each of them is written in the project file."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.top = project.data.get("state_backend") or {}
        self.env_index = next(
            (
                i
                for i, e in enumerate(project.data.get("environments") or [])
                if e.get("name") == project.environment
            ),
            None,
        )
        self.env = project.environment_entry().get("state_backend") or {}
        self._check_variables()
        from elt.secrets import resolve_secrets

        self.values: dict[str, Any] = deep_merge(
            resolve_secrets(project, self.top, "state_backend"),
            resolve_secrets(project, self.env, f"environments[{self.env_index}].state_backend"),
        )

    def path(self, key: str) -> str:
        """`environments[1].state_backend.uri` if the environment sets `key`, else `state_backend.uri`."""
        node: Any = self.env
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and self.env_index is not None:
            return f"environments[{self.env_index}].state_backend.{key}"
        return f"state_backend.{key}"

    def error(self, key: str, problem: str, hint: str | None = None) -> ProjectError:
        path = self.path(key)
        return ProjectError(f"{self.project.where(path)}: key '{path}': {problem}", hint=hint)

    def get(self, key: str) -> Any:
        node: Any = self.values
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def text(self, key: str) -> str | None:
        value = self.get(key)
        return None if value is None or value == "" else str(value)

    def seconds(self, key: str, default: float) -> float:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.error(key, f"expected a number of seconds above 0, got {value!r}")
        return float(value)

    def _check_variables(self) -> None:
        prefixes = ["state_backend"]
        if self.env_index is not None:
            prefixes.append(f"environments[{self.env_index}].state_backend")
        for miss in self.project.missing:
            if any(miss.path == p or miss.path.startswith(p + ".") for p in prefixes):
                raise ProjectError(
                    f"{self.project.where(miss.path)}: key '{miss.path}': environment variable "
                    f"'{miss.variable}' is not set",
                    hint=f"set it, add it to .env, or give a default: ${{{miss.variable}:-value}}",
                )


def _backend(settings: _Settings) -> StateBackend:
    uri = settings.get("uri")
    if uri is None or (isinstance(uri, str) and uri.strip() in ("", "systemdb")):
        from elt.systemdb import PG_SCHEMA, is_postgres

        system_db = settings.project.system_db
        if is_postgres(system_db):  # the state goes where the rest of the system database is
            from elt.state.postgres import PostgresBackend

            url = str(system_db)
            return PostgresBackend(url, label=f"systemdb ({mask_uri(url)})", schema=PG_SCHEMA)
        from elt.state.systemdb import SystemDbBackend

        return SystemDbBackend(Path(system_db))
    if not isinstance(uri, str):
        raise settings.error("uri", f"expected a string, got {type(uri).__name__}", hint=ACCEPTED_FORMS)
    uri = uri.strip()
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise _unknown(settings, uri, "not a URI")
    if scheme == "file":
        return _file_backend(settings, uri, rest)
    if scheme in ("postgresql", "postgres"):
        return _postgres_backend(settings, uri)
    if scheme == "s3":
        return _s3_backend(settings, uri)
    raise _unknown(settings, uri, f"unknown state backend '{scheme}://'")


def _unknown(settings: _Settings, uri: str, problem: str) -> ProjectError:
    return settings.error("uri", f"{problem} in '{mask_uri(uri)}'", hint=f"accepted forms: {ACCEPTED_FORMS}")


def _file_backend(settings: _Settings, uri: str, rest: str) -> StateBackend:
    from elt.state.files import FileBackend

    if not rest:
        raise _unknown(settings, uri, "no folder after file://")
    directory = Path(unquote(rest)).expanduser()
    if not directory.is_absolute():
        directory = settings.project.root / directory
    return FileBackend(directory, label=f"file://{rest}")


def _postgres_backend(settings: _Settings, uri: str) -> StateBackend:
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    from elt.state.postgres import PostgresBackend

    try:
        params = conninfo_to_dict(uri)
    except ProgrammingError as exc:
        # psycopg's message may quote the URI, password included.
        reason = str(exc).strip().replace(uri, mask_uri(uri))
        raise _unknown(settings, uri, f"malformed PostgreSQL URI ({reason})") from None
    port = str(params.get("port") or "5432")
    if not all(p.strip().isdigit() for p in port.split(",")):
        raise _unknown(settings, uri, f"port '{port}' is not a number")
    connect_args: dict[str, Any] = {}
    for key, argument in POSTGRES_CONNECT_SETTINGS.items():
        value = settings.text(f"postgresql.{key}")
        if value is not None:
            connect_args[argument] = value
    return PostgresBackend(
        uri, label=mask_uri(uri), schema=settings.text("postgresql.schema"), connect_args=connect_args
    )


def _s3_backend(settings: _Settings, uri: str) -> StateBackend:
    from elt.state.s3 import S3Backend

    # Split by hand: an AWS secret key in the URI may hold "/", which would end a URL's authority.
    userinfo, _, location = uri.partition("://")[2].rpartition("@")
    bucket, _, prefix = location.partition("/")
    if not bucket:
        raise _unknown(settings, uri, "no bucket after s3://")
    if not _BUCKET.fullmatch(bucket):
        raise _unknown(settings, uri, f"'{bucket}' is not a valid S3 bucket name")
    key_id, _, secret = userinfo.partition(":")
    return S3Backend(
        bucket,
        unquote(prefix),
        label=mask_uri(uri),
        aws_access_key_id=settings.text("s3.aws_access_key_id") or unquote(key_id) or None,
        aws_secret_access_key=settings.text("s3.aws_secret_access_key") or unquote(secret) or None,
        endpoint_url=settings.text("s3.endpoint_url"),
    )
