"""The `vault` backend: a KV version 2 secrets engine of HashiCorp Vault (or OpenBao), over its HTTP API.

    secrets:
      vault: {url: http://127.0.0.1:8200, mount: secret, token: "${VAULT_TOKEN}", namespace: team-a}

`${secret:vault:db#password}` reads `GET {url}/v1/{mount}/data/db` with the token and takes the field
`password` of the latest version; `${secret:vault:db}` takes the only field of a secret that has one.
The url and token default to `VAULT_ADDR` and `VAULT_TOKEN` (the process's variables or .env).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from elt.errors import SecretError
from elt.logs import register_secret
from elt.secrets.backend import as_text, split_field

DEFAULT_MOUNT = "secret"
DEFAULT_TIMEOUT = 10.0


class VaultBackend:
    name = "vault"
    cacheable = True

    def __init__(
        self, url: str, token: str, mount: str = DEFAULT_MOUNT, namespace: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:  # fmt: skip
        self.url = url.rstrip("/")
        self.token = token
        self.mount = mount.strip("/")
        self.namespace = namespace
        self.timeout = timeout
        register_secret(token)

    @classmethod
    def from_settings(
        cls, root: Path, settings: Mapping[str, Any], variables: Mapping[str, str]
    ) -> VaultBackend:
        url = str(settings.get("url") or variables.get("VAULT_ADDR") or "")
        if not url.startswith(("http://", "https://")):
            raise SecretError(
                "the `vault` secrets backend has no address"
                + (f" it can use ({url!r} is no http:// or https:// URL)" if url else ""),
                hint="set `secrets.vault.url` in elt.yml, or VAULT_ADDR",
            )
        token = str(settings.get("token") or variables.get("VAULT_TOKEN") or _token_file() or "")
        if not token:
            raise SecretError(
                "the `vault` secrets backend has no token",
                hint="set VAULT_TOKEN (or `secrets.vault.token: ${VAULT_TOKEN}` in elt.yml)",
            )
        timeout = settings.get("timeout", DEFAULT_TIMEOUT)
        namespace = settings.get("namespace")
        return cls(url, token, str(settings.get("mount") or DEFAULT_MOUNT),
                   str(namespace) if namespace else None, float(timeout))  # fmt: skip

    def get(self, name: str) -> str | None:
        path, field = split_field(name)
        data = self._read(path.strip("/"))
        if data is None:
            return None
        if field is not None:
            return as_text(data[field]) if field in data else None
        if len(data) == 1:
            return as_text(next(iter(data.values())))
        raise SecretError(
            f"Vault secret '{self.mount}/{path}' has {len(data)} fields ({', '.join(sorted(data))}): "
            "name the one to use",
            hint=f"${{secret:vault:{path}#FIELD}}",
        )

    def describe(self) -> str:
        return f"Vault KV v2 at {self.url} (mount '{self.mount}')"

    def hint(self, name: str) -> str:
        path, field = split_field(name)
        return f"create it: vault kv put -mount={self.mount} {path} {field or 'value'}=…"

    def _read(self, path: str) -> dict[str, Any] | None:
        """The key/value pairs of the latest version of `path`; None when there is none (or it is deleted)."""
        url = f"{self.url}/v1/{quote(self.mount)}/data/{quote(path, safe='/')}"
        headers = {"X-Vault-Token": self.token, "Accept": "application/json"}
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            detail = _errors(error)
            if error.code == 403:
                raise SecretError(
                    f"{self.describe()}: permission denied reading '{self.mount}/{path}'{detail}",
                    hint="check the token (VAULT_TOKEN) and that its policy may read this path",
                ) from None
            raise SecretError(
                f"{self.describe()} answered {error.code} for '{self.mount}/{path}'{detail}"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise SecretError(f"cannot read '{self.mount}/{path}' from {self.describe()}: {reason}") from None
        data = (body.get("data") or {}).get("data") if isinstance(body, dict) else None
        if data is None:
            return None
        if not isinstance(data, dict):
            raise SecretError(f"{self.describe()}: '{self.mount}/{path}' is not a KV v2 secret")
        return data


def _errors(error: urllib.error.HTTPError) -> str:
    try:
        found = json.loads(error.read().decode("utf-8", "replace")).get("errors") or []
    except (ValueError, AttributeError, OSError):
        return ""
    return f": {'; '.join(str(e) for e in found)}" if found else ""


def _token_file() -> str | None:
    """The token `vault login` keeps in ~/.vault-token."""
    try:
        return (Path.home() / ".vault-token").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
