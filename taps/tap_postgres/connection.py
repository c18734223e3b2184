"""From tap config (MeltanoLabs tap-postgres' keys) to a psycopg connection.

`sqlalchemy_url` wins when given, as in MeltanoLabs' tap; otherwise `host`, `port`, `user`,
`password`, `database` and the `ssl_*` keys. Keys left out fall back to libpq's environment
variables (`PGHOST`, `PGPASSWORD`...) and `~/.pgpass`. Certificates given as text rather than as a
path are written to `ssl_storage_directory` first, as MeltanoLabs does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

APPLICATION_NAME = "elt tap-postgres"

# Every read sees timestamps in UTC and the ISO date style, whatever the server's defaults are.
SESSION_SETTINGS = "SET TIME ZONE 'UTC'; SET DateStyle = 'ISO'; SET IntervalStyle = 'iso_8601'"


def conninfo(config: Mapping[str, Any]) -> str:
    """The libpq connection string for the config."""
    if url := config.get("sqlalchemy_url"):
        # postgresql+psycopg2://… is SQLAlchemy's; libpq reads the same URL without the driver.
        url = re.sub(r"^[a-z0-9]+(\+[a-z0-9_]+)?://", "postgresql://", str(url), flags=re.IGNORECASE)
        return make_conninfo(url, application_name=APPLICATION_NAME)
    params: dict[str, Any] = {
        "host": config.get("host"),
        "port": config.get("port"),
        "user": config.get("user"),
        "password": config.get("password"),
        "dbname": config.get("database"),
        "application_name": APPLICATION_NAME,
    }
    storage = Path(config.get("ssl_storage_directory") or ".secrets")
    if config.get("ssl_enable"):
        mode = config.get("ssl_mode") or "verify-full"
        params["sslmode"] = mode
        if mode in ("verify-ca", "verify-full") and config.get("ssl_certificate_authority"):
            params["sslrootcert"] = _certificate(config["ssl_certificate_authority"], storage / "root.crt")
    if config.get("ssl_client_certificate_enable"):
        params["sslcert"] = _certificate(config.get("ssl_client_certificate"), storage / "cert.crt")
        params["sslkey"] = _certificate(
            config.get("ssl_client_private_key"), storage / "pkey.key", secret=True
        )
    return make_conninfo(**{key: value for key, value in params.items() if value not in (None, "")})


def connect(config: Mapping[str, Any]) -> psycopg.Connection[Any]:
    """An autocommit connection for reading, in UTC."""
    conn = psycopg.connect(conninfo(config), autocommit=True)
    conn.execute(SESSION_SETTINGS)
    return conn


def _certificate(value: str | None, path: Path, secret: bool = False) -> str | None:
    """A certificate's file: `value` if it is a path, else `value` (PEM text) written to `path`."""
    if not value:
        return None
    if "-----BEGIN" not in value:
        return os.path.expanduser(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value)
    return str(path)
