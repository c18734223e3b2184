"""Connect to MySQL/MariaDB with PyMySQL from the tap's config.

Every session reads in UTC (`time_zone = '+00:00'`), so TIMESTAMP values arrive as UTC instants, and
then runs the configured `session_sqls`.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pymysql
from pymysql.converters import encoders
from singer_sdk.exceptions import ConfigValidationError, TapStreamConnectionFailure

DEFAULT_PORT = 3306
CONNECT_TIMEOUT_SECONDS = 30
# pipelinewise-tap-mysql's defaults, plus a long net_write_timeout: the server waits on the tap
# while a slow target holds up the pipe.
DEFAULT_SESSION_SQLS = (
    "SET @@session.wait_timeout=28800",
    "SET @@session.net_read_timeout=3600",
    "SET @@session.net_write_timeout=3600",
    "SET @@session.innodb_lock_wait_timeout=3600",
)

logger = logging.getLogger(__name__)


def connect(config: Mapping[str, Any], *, decode: bool = True) -> pymysql.Connection:
    """An open connection for `config`.

    Raises ConfigValidationError for settings that cannot work, TapStreamConnectionFailure when the
    server cannot be reached or refuses the login. With `decode=False` values come as the server sent
    them (text as str, binary columns as bytes), for Arrow to parse.
    """
    args = connection_args(config)
    if not decode:
        args["conv"] = dict(encoders)  # how parameters are quoted, and no decoders for results
    try:
        connection = pymysql.connect(**args)
    except pymysql.err.OperationalError as exc:
        where = f"{args['user'] or '(no user)'}@{args['host']}:{args['port']}"
        reason = exc.args[-1] if exc.args else exc
        raise TapStreamConnectionFailure(f"tap-mysql: cannot connect to {where}: {reason}") from exc
    with connection.cursor() as cursor:
        cursor.execute("SET time_zone = '+00:00'")
        for statement in config.get("session_sqls", DEFAULT_SESSION_SQLS):
            try:
                cursor.execute(statement)
            except pymysql.err.MySQLError as exc:
                logger.warning(
                    "tap-mysql: session_sqls: %r failed, continuing without it: %s", statement, exc
                )
    return connection


def connection_args(config: Mapping[str, Any]) -> dict[str, Any]:
    """PyMySQL's keyword arguments for `config` (`sqlalchemy_url`, when given, names the server)."""
    settings = {key: config.get(key) for key in ("host", "port", "user", "password", "database")}
    if url := config.get("sqlalchemy_url"):
        settings.update(_from_url(url))
    port = settings["port"] or DEFAULT_PORT
    if not str(port).isdigit():
        raise _invalid(f"tap-mysql: port must be a number, got {port!r}")
    args: dict[str, Any] = {
        "host": settings["host"] or "localhost",
        "port": int(port),
        "user": settings["user"],
        "password": settings["password"] or "",
        "database": settings["database"] or None,
        "charset": "utf8mb4",
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "autocommit": True,
    }
    enabled = _flag(config.get("ssl"))
    if enabled is False:
        args["ssl_disabled"] = True
    elif enabled or config.get("ssl_ca"):
        args["ssl"] = ssl_context(config)
    # Without `ssl` PyMySQL uses TLS when the server offers it, without checking its certificate.
    return args


def ssl_context(config: Mapping[str, Any]) -> ssl.SSLContext:
    """TLS for `ssl: true`: verified against `ssl_ca` (certificate and host name) when it is given.

    `ssl_ca`, `ssl_cert` and `ssl_key` are each a file path or the PEM text itself.
    """
    context = ssl.create_default_context()
    if ca := config.get("ssl_ca"):
        context = (
            ssl.create_default_context(cadata=ca) if _is_pem(ca) else ssl.create_default_context(cafile=ca)
        )
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert, key = config.get("ssl_cert"), config.get("ssl_key")
    if cert:
        if _is_pem(cert) or (key and _is_pem(key)):
            # ssl loads client certificates from files only: hand them over in a private folder.
            with tempfile.TemporaryDirectory() as folder:
                cert_file = _private_file(folder, "cert.pem", cert) if _is_pem(cert) else cert
                key_file = _private_file(folder, "key.pem", key) if key and _is_pem(key) else key
                context.load_cert_chain(cert_file, keyfile=key_file)
        else:
            context.load_cert_chain(cert, keyfile=key)
    return context


def _from_url(url: str) -> dict[str, Any]:
    """host, port, user, password and database of `mysql[+driver]://user:password@host:port/database`."""
    parsed = urlparse(url)
    if not parsed.scheme.startswith(("mysql", "mariadb")):
        raise _invalid(
            f"tap-mysql: sqlalchemy_url must start with mysql:// or mariadb://, got {parsed.scheme}://"
        )
    found = {
        "host": parsed.hostname,
        "port": parsed.port,
        "user": unquote(parsed.username) if parsed.username else None,
        "password": unquote(parsed.password) if parsed.password else None,
        "database": unquote(parsed.path.lstrip("/")) or None,
    }
    query = parse_qs(parsed.query)
    if "database" in query:
        found["database"] = query["database"][0]
    return {key: value for key, value in found.items() if value is not None}


def _flag(value: Any) -> bool | None:
    """`ssl` as a boolean: true/false or the strings pipelinewise configs use ("true", "false")."""
    if value is None or isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def _is_pem(value: str) -> bool:
    return "-----BEGIN" in value


def _private_file(folder: str, name: str, text: str) -> str:
    path = os.path.join(folder, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(text)
    return path


def _invalid(message: str) -> ConfigValidationError:
    return ConfigValidationError(message, errors=[message])
