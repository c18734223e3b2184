"""`elt serve`: the real server in its own process, on a project with shell-step pipelines, called over HTTP.

Tokens come from `elt tokens create`; runs are started through the API and polled until they end; the
project's `.env` holds a secret that a step prints, which no answer may show.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import BIN, fresh_database, run_elt

SECRET = "s3cr3t-value-4711"  # in .env, under a name that says it is secret
STORED = "plain-looking-8642"  # in .env, used as ${secret:SHOP_KEY}: secret because elt.yml says so
HOOK_TOKEN = "hook-token-2468"
HOOK_KEY = "hook-hmac-key-1357"
MAX_BODY = 4096

ELT_YML = f"""
version: 1
env:
  API_TOKEN: "${{SHOP_API_TOKEN}}"
  KEY: "${{secret:SHOP_KEY}}"
serve:
  max_body_bytes: {MAX_BODY}
  audit_days: 30
pipelines:
  hello:
    description: says hello
    variables: {{who: world}}
    steps:
      - {{name: greet, shell: 'echo "hello ${{vars.who}}, token $API_TOKEN, key $KEY"'}}
  leaky:
    steps:
      - {{name: fail, shell: 'echo "cannot use $API_TOKEN or $KEY" >&2; exit 3'}}
  long:
    steps:
      - {{name: wait, shell: 'echo waiting; sleep 53'}}
      - {{name: after, shell: 'echo after', needs: [wait]}}
schedules:
  - {{name: nightly, pipeline: hello, interval: "0 3 * * *", timezone: UTC}}
triggers:
  - {{name: ping, kind: webhook, pipeline: hello, auth: token, secret: "{HOOK_TOKEN}"}}
  - name: push
    kind: webhook
    pipeline: hello
    auth: hmac-sha256
    secret: "{HOOK_KEY}"
    variables_from_body: true
  - {{name: by-api-token, kind: webhook, pipeline: hello}}
"""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Server:
    project: Path
    url: str
    tokens: dict[str, str]  # role -> token
    system_db: str | None = None  # the PostgreSQL URL of `system_db`; None: .elt/elt.db

    def stored(self) -> bytes:
        """Everything the system database holds, as bytes."""
        if self.system_db is None:
            return b"".join(_read_if_there(p) for p in (self.project / ".elt").glob("elt.db*"))
        with psycopg.connect(self.system_db) as conn:
            listed = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'elt_system'"
            tables = [r[0] for r in conn.execute(listed)]
            rows = [conn.execute(f"SELECT * FROM elt_system.{t}").fetchall() for t in tables]
        return str(rows).encode()

    def call(
        self, method: str, path: str, *, role: str | None = None, token: str | None = None,
        body: Any = None, raw: bytes | None = None, headers: dict[str, str] | None = None,
    ) -> Answer:  # fmt: skip
        sent = dict(headers or {})
        token = token or (self.tokens[role] if role else None)
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Answer(response.status, dict(response.headers), response.read().decode())
        except urllib.error.HTTPError as error:
            return Answer(error.code, dict(error.headers), error.read().decode())

    def wait_for_run(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.call("GET", f"/api/runs/{run_id}", role="viewer")
            assert answer.status == 200, answer.text
            if answer.json["status"] not in ("starting", "running"):
                record: dict[str, Any] = answer.json
                return record
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not end in {timeout}s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`elt serve` of a project whose system database is .elt/elt.db, then one whose is PostgreSQL."""
    if request.param == "sqlite":
        yield from _serve(tmp_path_factory, None)
        return
    with fresh_database(request.getfixturevalue("postgres_dsn")) as url:
        yield from _serve(tmp_path_factory, url)


def _serve(tmp_path_factory: pytest.TempPathFactory, system_db: str | None) -> Iterator[Server]:
    project = tmp_path_factory.mktemp("served")
    text = ELT_YML + (f"system_db: {system_db}\n" if system_db else "")
    (project / "elt.yml").write_text(text, encoding="utf-8")
    (project / ".env").write_text(f"SHOP_API_TOKEN={SECRET}\nSHOP_KEY={STORED}\n", encoding="utf-8")
    tokens = {
        role: run_elt(
            "tokens", "create", "--role", role, "--name", f"test {role}", cwd=project
        ).stdout.strip()
        for role in ("viewer", "operator", "admin")
    }
    # calls of an earlier server: one older than `audit_days`, which goes once the server records a call
    old = [
        ((datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="milliseconds"), f"/api/old-{days}")
        for days in (40, 10)
    ]
    insert = "INSERT INTO api_audit(at, method, path, status, seconds) VALUES ({0}, 'GET', {0}, 200, 0)"
    if system_db is None:
        with closing(sqlite3.connect(project / ".elt" / "elt.db")) as db, db:
            db.executemany(insert.format("?"), old)
    else:
        with psycopg.connect(system_db, autocommit=True) as pg:
            pg.cursor().executemany(insert.format("%s").replace("api_audit", "elt_system.api_audit"), old)
    port = free_port()
    log = (project / "serve.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "elt"), "serve", "--port", str(port)], cwd=project, stdout=log, stderr=subprocess.STDOUT
    )
    served = Server(project, f"http://127.0.0.1:{port}", tokens, system_db)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if served.call("GET", "/api/health").status == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, (project / "serve.log").read_text()
            assert time.monotonic() < deadline, "elt serve did not answer within 30s"
            time.sleep(0.1)
        yield served
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_calls_without_a_valid_token_get_401(server: Server) -> None:
    missing = server.call("GET", "/api/pipelines")
    assert missing.status == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "missing token" in missing.json["error"]

    viewer = server.tokens["viewer"]
    for wrong in (viewer[:-4] + "abcd", "elt_000000000000_" + "x" * 43, "not-a-token"):
        answer = server.call("GET", "/api/pipelines", token=wrong)
        assert answer.status == 401, wrong
        assert answer.json["error"] == "invalid token: unknown, revoked or expired"

    # the token is checked before the body: without one, a malformed body says nothing
    assert server.call("POST", "/api/runs", raw=b'{"pipeline":').status == 401


def test_a_role_too_low_gets_403_naming_the_role_needed(server: Server) -> None:
    start = server.call("POST", "/api/runs", role="viewer", body={"pipeline": "hello"})
    assert start.status == 403
    assert start.json["error"].startswith("this needs the operator role")
    assert start.json["detail"] == {"needed": "operator", "role": "viewer"}

    audit = server.call("GET", "/api/audit", role="operator")
    assert audit.status == 403 and audit.json["detail"]["needed"] == "admin"


def test_a_viewer_lists_pipelines_and_runs(server: Server) -> None:
    pipelines = server.call("GET", "/api/pipelines", role="viewer").json["pipelines"]
    hello = next(p for p in pipelines if p["name"] == "hello")
    assert hello["variables"] == {"who": "world"}
    assert hello["steps"] == [{"name": "greet", "kind": "shell", "needs": []}]
    assert server.call("GET", "/api/runs?limit=5", role="viewer").status == 200
    schedules = server.call("GET", "/api/schedules", role="viewer").json["schedules"]
    assert [(s["name"], s["target"], s["interval"]) for s in schedules] == [("nightly", "hello", "0 3 * * *")]
    assert schedules[0]["next_run_utc"].endswith("T03:00:00+00:00")
    triggers = server.call("GET", "/api/triggers", role="viewer").json["triggers"]
    assert [t["name"] for t in triggers] == ["ping", "push", "by-api-token"]
    assert HOOK_TOKEN not in json.dumps(triggers) and HOOK_KEY not in json.dumps(triggers)
    assert server.call("GET", "/api/state", role="viewer").json == {"states": []}
    assert server.call("GET", "/api/state/dev:tap-x-to-target-y", role="viewer").status == 404
    assert server.call("GET", "/api/runs/no-such-run", role="viewer").status == 404


def test_an_operator_starts_a_run_that_finishes_and_its_logs_mask_the_secret(server: Server) -> None:
    started = server.call(
        "POST", "/api/runs", role="operator", body={"pipeline": "hello", "variables": {"who": "api"}}
    )
    assert started.status == 202, started.text
    run_id = started.json["run_id"]

    record = server.wait_for_run(run_id)

    assert record["status"] == "success" and record["name"] == "hello"
    assert record["request"]["variables"] == {"who": "api"}
    assert [s["name"] for s in record["steps"]] == ["greet"]
    listed = server.call("GET", "/api/runs?limit=20", role="viewer").json["runs"]
    assert run_id in [r["run_id"] for r in listed]
    logs = server.call("GET", f"/api/runs/{run_id}/logs?step=greet", role="viewer")
    assert logs.status == 200 and logs.headers["content-type"].startswith("text/plain")
    assert "hello api, token ****, key ****" in logs.text
    assert SECRET not in logs.text and STORED not in logs.text


def test_a_failed_run_that_printed_a_secret_shows_no_trace_of_it(server: Server) -> None:
    run_id = server.call("POST", "/api/runs", role="operator", body={"pipeline": "leaky"}).json["run_id"]

    record = server.wait_for_run(run_id)

    assert record["status"] == "failed"
    assert "cannot use **** or ****" in record["error"]
    answers = [
        server.call("GET", f"/api/runs/{run_id}", role="viewer").text,
        server.call("GET", f"/api/runs/{run_id}/logs", role="viewer").text,
        server.call("GET", "/api/runs?limit=50", role="viewer").text,
        server.call("GET", "/api/pipelines", role="viewer").text,
    ]
    for text in answers:
        assert SECRET not in text and STORED not in text


def test_an_operator_cancels_a_running_run_and_a_viewer_cannot(server: Server) -> None:
    run_id = server.call("POST", "/api/runs", role="operator", body={"pipeline": "long"}).json["run_id"]
    deadline = time.monotonic() + 60
    while True:
        record = server.call("GET", f"/api/runs/{run_id}", role="viewer").json
        if any(s["name"] == "wait" and s["status"] == "running" for s in record.get("steps", [])):
            break
        assert record["status"] in ("starting", "running") and time.monotonic() < deadline, record
        time.sleep(0.1)

    refused = server.call("POST", f"/api/runs/{run_id}/cancel", role="viewer")
    assert refused.status == 403 and "operator" in refused.json["error"]
    assert server.call("POST", "/api/runs/no-such-run/cancel", role="operator").status == 404
    asked = server.call("POST", f"/api/runs/{run_id}/cancel", role="operator")
    assert asked.status == 202, asked.text
    assert asked.json["status"] == "cancelling" and asked.json["by"].startswith("API token ")

    record = server.wait_for_run(run_id)
    assert record["status"] == "cancelled" and record["error"].startswith("cancelled by API token ")
    assert {s["name"]: s["status"] for s in record["steps"]} == {"wait": "cancelled", "after": "cancelled"}
    leftover = subprocess.run(["pgrep", "-f", "sleep 53"], capture_output=True, text=True, check=False)
    assert not leftover.stdout.strip()
    again = server.call("POST", f"/api/runs/{run_id}/cancel", role="operator")
    assert again.status == 409 and "not running (its status: cancelled)" in again.json["error"]


def test_bad_bodies_get_422_with_the_reason_and_unknown_pipelines_404(server: Server) -> None:
    def start(**kwargs: Any) -> Answer:
        return server.call("POST", "/api/runs", role="operator", **kwargs)

    not_json = start(raw=b'{"pipeline": ')
    assert not_json.status == 422 and "Invalid JSON" in not_json.json["error"]
    no_pipeline = start(body={"variables": {}})
    assert no_pipeline.status == 422 and "pipeline: Field required" in no_pipeline.json["error"]
    typo = start(body={"pipeline": "hello", "variabels": {}})
    assert typo.status == 422 and "variabels" in typo.json["error"]
    unknown_var = start(body={"pipeline": "hello", "variables": {"whom": "x"}})
    assert unknown_var.status == 422
    assert (
        unknown_var.json["error"]
        == "variables.whom: pipeline 'hello' has no variable 'whom' (variables: who)"
    )
    nested = start(body={"pipeline": "hello", "variables": {"who": {"a": 1}}})
    assert nested.status == 422 and nested.json["error"].startswith("variables.who: expected a string")
    unknown = start(body={"pipeline": "nightly"})
    assert unknown.status == 404 and unknown.json["error"] == "no pipeline named 'nightly'"


def test_a_body_over_the_limit_gets_413(server: Server) -> None:
    answer = server.call(
        "POST", "/api/runs", role="operator", body={"pipeline": "hello", "variables": {"who": "x" * MAX_BODY}}
    )
    assert answer.status == 413
    assert answer.json == {
        "error": f"request body over the limit of {MAX_BODY} bytes",
        "detail": {"max_body_bytes": MAX_BODY},
    }


def test_the_openapi_document_lists_the_endpoints(server: Server) -> None:
    document = server.call("GET", "/openapi.json").json
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in ("/api/pipelines", "/api/schedules", "/api/runs", "/api/runs/{run_id}",
                 "/api/runs/{run_id}/logs", "/api/runs/{run_id}/cancel", "/api/state", "/api/audit",
                 "/hooks/{trigger}"):  # fmt: skip
        assert path in paths, path
    start = paths["/api/runs"]["post"]
    assert start["requestBody"]["content"]["application/json"]["schema"]["required"] == ["pipeline"]
    assert start["security"] == [{"HTTPBearer": []}]


def test_webhooks_run_with_the_right_token_or_signature_only(server: Server) -> None:
    assert server.call("POST", "/hooks/ping").status == 401
    assert server.call("POST", "/hooks/ping", headers={"X-Elt-Token": "wrong"}).status == 401
    by_token = server.call("POST", "/hooks/ping", headers={"X-Elt-Token": HOOK_TOKEN})
    assert by_token.status == 202, by_token.text

    body = json.dumps({"who": "github"}).encode()
    signature = "sha256=" + hmac.new(HOOK_KEY.encode(), body, hashlib.sha256).hexdigest()
    forged = "sha256=" + hmac.new(b"guess", body, hashlib.sha256).hexdigest()
    assert server.call("POST", "/hooks/push", raw=body, headers={"X-Hub-Signature-256": forged}).status == 401
    tampered = body.replace(b"github", b"gitlab")
    assert (
        server.call("POST", "/hooks/push", raw=tampered, headers={"X-Hub-Signature-256": signature}).status
        == 401
    )
    signed = server.call("POST", "/hooks/push", raw=body, headers={"X-Hub-Signature-256": signature})
    assert signed.status == 202, signed.text
    assert server.call("POST", "/hooks/nope", headers={"X-Elt-Token": HOOK_TOKEN}).status == 404
    # a token trigger without a secret takes an operator's API token
    assert server.call("POST", "/hooks/by-api-token", headers={"X-Elt-Token": HOOK_TOKEN}).status == 401
    assert server.call("POST", "/hooks/by-api-token", role="viewer").status == 403
    assert server.call("POST", "/hooks/by-api-token", role="operator").status == 202

    assert server.wait_for_run(by_token.json["run_id"])["request"]["variables"] == {}
    pushed = server.wait_for_run(signed.json["run_id"])
    assert pushed["status"] == "success" and pushed["request"]["variables"] == {"who": "github"}


def test_every_call_is_audited_and_only_an_admin_reads_the_audit(server: Server) -> None:
    server.call("GET", "/api/pipelines", role="viewer")
    server.call("GET", "/api/pipelines")
    server.call("POST", "/hooks/ping", headers={"X-Elt-Token": "wrong"})
    server.call("GET", "/api/health")  # a probe: not audited

    answer = server.call("GET", "/api/audit?limit=4", role="admin")

    assert answer.status == 200
    calls = answer.json["calls"]
    viewer_id = server.tokens["viewer"].split("_")[1]
    assert [(c["method"], c["path"], c["status"], c["token_id"], c["role"]) for c in calls[:3]] == [
        ("POST", "/hooks/ping", 401, None, "webhook:ping"),
        ("GET", "/api/pipelines", 401, None, None),
        ("GET", "/api/pipelines", 200, viewer_id, "viewer"),
    ]
    assert calls[0]["remote"] == "127.0.0.1" and calls[0]["seconds"] >= 0
    assert "wrong" not in answer.text and server.tokens["viewer"] not in answer.text
    everything = server.call("GET", "/api/audit?limit=10000", role="admin").json["calls"]
    assert "/api/health" not in {c["path"] for c in everything}
    # `serve.audit_days: 30`: the 40-day-old call went, the 10-day-old one stays
    assert {c["path"] for c in everything} & {"/api/old-40", "/api/old-10"} == {"/api/old-10"}


def _read_if_there(path: Path) -> bytes:
    """The bytes of `path`; none if SQLite removed it (a -wal or -shm file) since it was listed."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def test_tokens_are_stored_hashed_and_can_be_revoked(server: Server) -> None:
    created = server.call("POST", "/api/tokens", role="admin", body={"role": "viewer", "name": "temp"})
    assert created.status == 201
    token, token_id = created.json["token"], created.json["id"]
    assert server.call("GET", "/api/pipelines", token=token).status == 200

    stored = server.stored()
    assert token_id.encode() in stored  # what is looked at is where tokens are
    for value in (token, *server.tokens.values()):
        assert value.encode() not in stored
        secret = value.split("_", 2)[2]  # elt_<id>_<secret>: the id is stored, the secret must not be
        assert len(secret) >= 40 and secret.encode() not in stored
    listed = run_elt("tokens", "list", "--format", "json", cwd=server.project).stdout
    assert token_id in listed and token not in listed

    run_elt("tokens", "revoke", token_id, cwd=server.project)
    assert server.call("GET", "/api/pipelines", token=token).status == 401
    tokens = server.call("GET", "/api/tokens", role="admin").json["tokens"]
    assert next(t for t in tokens if t["id"] == token_id)["status"] == "revoked"


def test_a_secret_given_as_a_variable_is_masked_in_answers(server: Server) -> None:
    started = server.call(
        "POST", "/api/runs", role="operator", body={"pipeline": "hello", "variables": {"who": STORED}}
    )
    record = server.wait_for_run(started.json["run_id"])

    assert record["status"] == "success"
    assert record["request"]["variables"] == {"who": "****"}
    assert STORED not in server.call("GET", f"/api/runs/{record['run_id']}/logs", role="viewer").text
