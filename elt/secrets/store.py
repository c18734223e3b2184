"""The `store` backend: secrets encrypted in a file of the project (`.elt/secrets.json` by default).

    export ELT_SECRET_KEY=$(elt secrets keygen)     # once; keep the key outside the project
    elt secrets set DB_PASSWORD --from-stdin < file
    password: ${secret:store:DB_PASSWORD}     # or `secrets: {backend: store}` and ${secret:DB_PASSWORD}

Each value is encrypted with AES-256-GCM under the key in `ELT_SECRET_KEY` (32 random bytes, URL-safe
base64), with a nonce of its own and the secret's name as associated data, so a value copied under
another name does not decrypt. Names are in clear, so `elt secrets list` needs no key. The file records an
id of the key (a hash, which tells nothing of the key) to say "wrong key" rather than "damaged file". It is
written whole to a new file (mode 0600) that replaces the old one, under a lock, so a crash or two
concurrent `elt secrets set` never leave half a file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elt.errors import SecretError
from elt.logs import register_secret
from elt.secrets.backend import select_field, split_field

if TYPE_CHECKING:
    from elt.project import Project

KEY_VARIABLE = "ELT_SECRET_KEY"
DEFAULT_PATH = ".elt/secrets.json"
FORMAT = "elt-secrets/1"
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./@+=-]{0,255}")
_KEYGEN_HINT = (
    "create a key with `elt secrets keygen` and export ELT_SECRET_KEY=… (keep it out of the project)"
)


def generate_key() -> str:
    """A new store key: 32 random bytes in URL-safe base64, what `ELT_SECRET_KEY` holds."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def open_store(project: Project) -> SecretStore:
    """The encrypted store of `project` (`secrets.store.path`, default .elt/secrets.json), keyed by
    ELT_SECRET_KEY of the process or the project's .env."""
    from elt.interpolate import project_environment
    from elt.secrets.resolve import secrets_settings

    settings = secrets_settings(project).get("store") or {}
    return SecretStore.from_settings(project.root, settings, project_environment(project.root))


@dataclass(frozen=True)
class StoredSecret:
    """A secret's entry in the store, without its value."""

    name: str
    updated_at: str


class SecretStore:
    """The encrypted file of a project's secrets."""

    name = "store"
    cacheable = False  # a local file: read when asked, so that `elt secrets set` shows at once

    def __init__(self, path: Path, key: str | None, root: Path | None = None) -> None:
        self.path = path
        self._key_text = key
        self._root = root  # paths in messages are relative to it

    @classmethod
    def from_settings(
        cls, root: Path, settings: Mapping[str, Any], variables: Mapping[str, str]
    ) -> SecretStore:
        path = Path(str(settings.get("path") or DEFAULT_PATH))
        return cls(path if path.is_absolute() else root / path, variables.get(KEY_VARIABLE) or None, root)

    # -- the backend --------------------------------------------------------------------------------

    def get(self, name: str) -> str | None:
        base, field = split_field(name)
        document = self._read()
        entry = document["secrets"].get(base)
        if entry is None:
            return None
        key = self._key()
        if document.get("key_id") != _key_id(key):
            raise self._wrong_key(document)
        return select_field(self._decrypt(key, base, entry), field, f"stored secret '{base}'")

    def describe(self) -> str:
        return f"the encrypted store {self._shown()}"

    def hint(self, name: str) -> str:
        return f"add it with `elt secrets set {split_field(name)[0]}`"

    # -- writing ------------------------------------------------------------------------------------

    def set(self, name: str, value: str) -> None:
        """Store `value` as secret `name`, replacing any former value."""
        check_name(name)
        key = self._key()
        with self._locked():
            document = self._read()
            if document["secrets"] and document.get("key_id") != _key_id(key):
                raise self._wrong_key(document)
            document["key_id"] = _key_id(key)
            document["secrets"][name] = {
                "value": _encrypt(key, name, value),
                "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self._write(document)

    def delete(self, name: str) -> bool:
        """Forget secret `name`; False when there was none."""
        with self._locked():
            document = self._read()
            if document["secrets"].pop(name, None) is None:
                return False
            self._write(document)
            return True

    def list(self) -> list[StoredSecret]:
        """The stored secrets, by name (no key needed: names are in clear)."""
        entries = self._read()["secrets"]
        return [StoredSecret(n, str(entries[n].get("updated_at", ""))) for n in sorted(entries)]

    # -- the file -----------------------------------------------------------------------------------

    def _shown(self) -> str:
        if self._root is not None and self.path.is_relative_to(self._root):
            return str(self.path.relative_to(self._root))
        return str(self.path)

    def _read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"format": FORMAT, "key_id": None, "secrets": {}}
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise SecretError(f"{self._shown()}: not a secrets store elt can read ({error})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise SecretError(
                f'{self._shown()}: not a secrets store elt can read (expected "format": "{FORMAT}")'
            )
        if not isinstance(document.get("secrets"), dict):
            raise SecretError(f"{self._shown()}: damaged secrets store: 'secrets' is not a mapping")
        return document

    def _write(self, document: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- the key ------------------------------------------------------------------------------------

    def _key(self) -> bytes:
        if not self._key_text:
            raise SecretError(f"{KEY_VARIABLE} is not set: {self._shown()} cannot be read or written",
                              hint=_KEYGEN_HINT)  # fmt: skip
        register_secret(self._key_text)
        try:
            key = base64.urlsafe_b64decode(self._key_text.strip() + "=" * (-len(self._key_text.strip()) % 4))
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise SecretError(
                f"{KEY_VARIABLE} is not a key of the secrets store: expected 32 bytes in URL-safe base64 "
                "(44 characters)",
                hint=_KEYGEN_HINT,
            )
        return key

    def _decrypt(self, key: bytes, name: str, entry: Any) -> str:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            blob = base64.b64decode(entry["value"], validate=True)
            value = AESGCM(key).decrypt(blob[:12], blob[12:], name.encode("utf-8")).decode("utf-8")
        except (InvalidTag, KeyError, TypeError, ValueError, binascii.Error):
            raise SecretError(
                f"{self._shown()}: secret '{name}' does not decrypt with {KEY_VARIABLE}: the file was "
                "changed by hand or the entry was copied from another name",
                hint=f"set it again: `elt secrets set {name}`",
            ) from None
        register_secret(value)
        return value

    def _wrong_key(self, document: dict[str, Any]) -> SecretError:
        return SecretError(
            f"{KEY_VARIABLE} is not the key {self._shown()} was written with (key id "
            f"{_key_id(self._key())}, the store's is {document.get('key_id')})",
            hint="use the key the store was created with; without it the values are lost: delete the file "
            "and set them again",
        )


def check_name(name: str) -> str:
    """`name` if it can name a stored secret; SecretError otherwise."""
    if not NAME.fullmatch(name):
        raise SecretError(
            f"invalid secret name '{name}': expected letters, digits and _ . / @ + = - (at most 256), "
            "starting with a letter, digit or _"
        )
    return name


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"elt-secrets key id\0" + key).hexdigest()[:16]


def _encrypt(key: bytes, name: str, value: str) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    return base64.b64encode(
        nonce + AESGCM(key).encrypt(nonce, value.encode("utf-8"), name.encode("utf-8"))
    ).decode()
