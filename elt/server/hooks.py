"""Webhook triggers: `POST /hooks/NAME` runs the pipeline of the trigger NAME (`kind: webhook` in elt.yml).

    triggers:
      - name: shop-updated
        kind: webhook
        pipeline: daily
        auth: hmac-sha256               # or `token`
        secret: ${SHOP_HOOK_SECRET}
        variables_from_body: true       # the body's JSON object gives the variables, over `variables:`

A caller proves itself with the trigger's secret: `auth: token` sends it in `X-Elt-Token`; `auth:
hmac-sha256` signs the raw body with it, GitHub's way (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`).
Both are compared in constant time. A `token` trigger without a `secret` takes an API token of the
operator role instead (`Authorization: Bearer …`), checked by the app.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from elt.errors import EltError
from elt.project import Project
from elt.schedule.model import Trigger, load_triggers

TOKEN_HEADER = "x-elt-token"
SIGNATURE_HEADER = "x-hub-signature-256"


def webhook_trigger(project: Project, name: str) -> Trigger | None:
    """The enabled webhook trigger `name` of elt.yml; None if there is none by that name."""
    for trigger in load_triggers(project):
        if trigger.name == name and trigger.kind == "webhook" and trigger.enabled:
            if trigger.secret:  # `secret: ${secret:…}`: the value, never the reference, is what callers prove
                from dataclasses import replace

                from elt.secrets import resolve_secrets

                return replace(trigger, secret=resolve_secrets(project, trigger.secret, "triggers"))
            return trigger
    return None


def needs_api_token(trigger: Trigger) -> bool:
    """Whether the caller proves itself with an API token rather than the trigger's secret."""
    return (trigger.auth or "token") == "token" and not trigger.secret


def verify(trigger: Trigger, headers: Mapping[str, str], body: bytes) -> str | None:
    """None if the request proves it knows the trigger's secret; else why not. `headers` lower-cased."""
    secret = (trigger.secret or "").encode()
    if (trigger.auth or "token") == "token":
        given = headers.get(TOKEN_HEADER)
        if given is None:
            return f"missing header X-Elt-Token (trigger '{trigger.name}' takes its secret there)"
        if not hmac.compare_digest(given.encode(), secret):
            return "wrong X-Elt-Token"
        return None
    signature = headers.get(SIGNATURE_HEADER)
    if signature is None:
        return f"missing header X-Hub-Signature-256 (trigger '{trigger.name}' takes a signature of the body)"
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.strip().lower().encode(), expected.encode()):
        return "X-Hub-Signature-256 does not match the body"
    return None


def hook_variables(project: Project, trigger: Trigger, body: bytes) -> dict[str, Any]:
    """The variables of the run a call starts: the trigger's, with `variables_from_body` the body's JSON
    object over them. EltError saying what is wrong with the body."""
    if not _from_body(project, trigger.name) or not body.strip():
        return dict(trigger.variables)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EltError(f"body: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise EltError(f"body: expected a JSON object of variables, got {type(data).__name__}")
    return {**trigger.variables, **data}


def _from_body(project: Project, name: str) -> bool:
    # Read from the entry itself: elt.schedule's Trigger does not carry this webhook-only key.
    for entry in project.data.get("triggers") or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return bool(entry.get("variables_from_body", False))
    return False
