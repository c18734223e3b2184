"""API tokens of `elt serve`: created with a role, stored hashed, checked on every call.

    token = create_token(db, "operator", name="ci")   # TokenInfo and the token, shown this once
    info = authenticate(db, "elt_3f9c…_…")            # the TokenInfo, or None if unknown/revoked/expired
    allows(info.role, "viewer")                         # roles grow: viewer < operator < admin

A token reads `elt_<id>_<secret>`: the id is public (it names the token in `elt tokens list` and the audit),
the secret is 32 random bytes of which only a salted sha256 is kept, so the system database never holds
a usable token. A secret that long needs no slow hash: nobody can guess it, whatever the hash costs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from elt.errors import EltError
from elt.systemdb import Location, connect

ROLES = ("viewer", "operator", "admin")  # each can do what the ones before it can
PREFIX = "elt_"


@dataclass(frozen=True)
class TokenInfo:
    """A token as stored, without its secret."""

    id: str
    name: str | None
    role: str
    created_at: str
    expires_at: str | None = None
    revoked_at: str | None = None
    last_used_at: str | None = None

    @property
    def status(self) -> str:
        """active | revoked | expired"""
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= _now():
            return "expired"
        return "active"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


@dataclass(frozen=True)
class NewToken:
    """A token just created: its record, and the token itself, which is not stored anywhere."""

    info: TokenInfo
    token: str


def allows(role: str, needed: str) -> bool:
    """Whether `role` may do what `needed` may."""
    return ROLES.index(role) >= ROLES.index(needed)


def create_token(
    db_path: Location, role: str, *, name: str | None = None, expires_seconds: float | None = None
) -> NewToken:
    """A new token with `role` (expiring after `expires_seconds`, if given); only its hash is stored."""
    if role not in ROLES:
        raise EltError(f"unknown role '{role}'", hint=f"roles: {', '.join(ROLES)}")
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    created = datetime.now(UTC)
    expires = (created + timedelta(seconds=expires_seconds)) if expires_seconds is not None else None
    info = TokenInfo(token_id, name, role, _iso(created), _iso(expires) if expires else None)
    with closing(connect(db_path)) as conn:
        conn.execute(
            "INSERT INTO api_tokens(id, name, role, hash, created_at, expires_at) VALUES (?,?,?,?,?,?)",
            (info.id, name, role, f"sha256${salt}${_digest(salt, secret)}", info.created_at, info.expires_at),
        )
    return NewToken(info, f"{PREFIX}{token_id}_{secret}")


def list_tokens(db_path: Location) -> list[TokenInfo]:
    """Every token, oldest first (revoked and expired ones too)."""
    with closing(connect(db_path)) as conn:
        rows = conn.execute("SELECT * FROM api_tokens ORDER BY created_at").fetchall()
    return [_info(row) for row in rows]


def revoke_token(db_path: Location, token_id: str) -> TokenInfo:
    """Revoke the token `token_id`; from now on it is refused. EltError if there is no such token."""
    with closing(connect(db_path)) as conn:
        conn.execute(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", (_now(), token_id)
        )
        row = conn.execute("SELECT * FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
    if row is None:
        raise EltError(f"no API token with id '{token_id}'", hint="`elt tokens list` shows the ids")
    return _info(row)


def authenticate(db_path: Location, token: str) -> TokenInfo | None:
    """The active token `token` is, its use recorded; None if malformed, unknown, revoked or expired."""
    token_id, _, secret = token.removeprefix(PREFIX).partition("_")
    if not token.startswith(PREFIX) or not token_id or not secret:
        return None
    with closing(connect(db_path)) as conn:
        row = conn.execute("SELECT * FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
        if row is None:
            return None
        scheme, salt, digest = str(row["hash"]).split("$", 2)
        if scheme != "sha256" or not hmac.compare_digest(digest, _digest(salt, secret)):
            return None
        info = _info(row)
        if info.status != "active":
            return None
        conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (_now(), token_id))
    return info


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}${secret}".encode()).hexdigest()


def _info(row: Any) -> TokenInfo:
    return TokenInfo(row["id"], row["name"], row["role"], row["created_at"], row["expires_at"],
                     row["revoked_at"], row["last_used_at"])  # fmt: skip


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _now() -> str:
    return _iso(datetime.now(UTC))
