"""Webhook notifications against a real local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from elt.errors import EltError
from elt.logs import Redactor
from elt.notify import Hook, hooks_from_config, payload, send


class Receiver:
    """A local HTTP server that records what is POSTed and answers with the next planned status."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": json.loads(body)})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()


def body(event: str = "failure", **extra: Any) -> dict[str, Any]:
    return payload(event, pipeline="daily", run_id="r1", environment="dev", status="failed", **extra)


def test_only_the_hooks_that_want_the_event_get_it(receiver: Receiver) -> None:
    hooks = hooks_from_config(
        [
            {"url": receiver.url, "on": ["failure"], "headers": {"Authorization": "Bearer t0ken"}},
            {"url": receiver.url + "?success", "on": "success"},
        ],
        "pipelines.daily.notify",
    )
    warnings: list[str] = []

    delivered = send(hooks, "failure", body(error="step 'load' failed"), warn=warnings.append)

    assert delivered == 1 and warnings == []
    (request,) = receiver.requests
    assert request["headers"]["Authorization"] == "Bearer t0ken"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["body"]["event"] == "failure"
    assert request["body"]["pipeline"] == "daily" and request["body"]["error"] == "step 'load' failed"


def test_retry_events_name_the_step_and_attempt(receiver: Receiver) -> None:
    hooks = [Hook(receiver.url, frozenset({"retry"}))]
    send(hooks, "retry", body("retry", step="models", attempt=2), warn=lambda _: None)
    assert receiver.requests[0]["body"]["step"] == "models"
    assert receiver.requests[0]["body"]["attempt"] == 2


def test_a_failing_hook_is_retried_then_only_warned_about(receiver: Receiver) -> None:
    receiver.statuses = [503, 503, 200]
    warnings: list[str] = []
    assert send([Hook(receiver.url)], "failure", body(), warn=warnings.append) == 1
    assert len(receiver.requests) == 3 and warnings == []

    receiver.statuses = [500, 500, 500]
    assert send([Hook(receiver.url)], "failure", body(), warn=warnings.append) == 0
    assert warnings == [f"notification 'failure' to {receiver.url} failed: HTTP 500 Internal Server Error "
                        "(after 3 attempts)"]  # fmt: skip


def test_a_refusing_hook_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [404]
    warnings: list[str] = []
    send([Hook(receiver.url)], "failure", body(), warn=warnings.append)
    assert len(receiver.requests) == 1
    assert "HTTP 404" in warnings[0]


def test_an_unreachable_hook_is_a_warning() -> None:
    warnings: list[str] = []
    hook = Hook("http://127.0.0.1:9/nothing-listens-here", timeout=1)
    assert send([hook], "failure", body(), warn=warnings.append) == 0
    assert "127.0.0.1:9" in warnings[0] and "after 3 attempts" in warnings[0]


def test_secrets_are_masked_in_what_is_sent(receiver: Receiver) -> None:
    redact = Redactor(["hunter2"])
    send([Hook(receiver.url)], "failure", body(error="password hunter2 rejected"), warn=print, redact=redact)
    assert receiver.requests[0]["body"]["error"] == "password **** rejected"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"url": "x"}, "expected a list"),
        ([{"on": ["failure"]}], r"\[0\]: expected a mapping with a `url`"),
        (["ftp://host/x"], r"\[0\]\.url: expected an http"),
        ([{"url": "http://h", "on": ["sometimes"]}], r"\[0\]\.on: expected some of success, failure, retry"),
        ([{"url": "http://h", "timeout": 0}], r"\[0\]\.timeout: expected a number of seconds above 0"),
    ],
)
def test_malformed_config_names_the_key(entries: Any, message: str) -> None:
    with pytest.raises(EltError, match=message):
        hooks_from_config(entries, "pipelines.daily.notify")


def test_a_pipeline_run_notifies_its_retries_and_its_failure(receiver: Receiver, write_project) -> None:
    from tests.conftest import run_elt

    project = write_project(
        f"""
        version: 1
        notify: ["{receiver.url}?project-default"]
        pipelines:
          nightly:
            notify:
              - {{url: "{receiver.url}", on: [retry, failure, success], headers: {{X-Team: data}}}}
            steps:
              - {{name: ok, shell: "true"}}
              - {{name: flaky, shell: "exit 3", needs: [ok], retries: {{count: 1, delay: 0}}}}
          quiet:
            steps:
              - {{name: ok, shell: "true"}}
        """
    )
    failed = run_elt("run", "nightly", "--format", "json", cwd=project, check=False)
    assert failed.returncode == 1
    events = [(r["body"]["event"], r["body"].get("step")) for r in receiver.requests]
    assert events == [("retry", "flaky"), ("failure", None)]
    final = receiver.requests[-1]
    assert final["headers"]["X-Team"] == "data"
    assert final["body"]["run_id"] == json.loads(failed.stdout)["run_id"]
    assert final["body"]["status"] == "failed" and "flaky" in final["body"]["error"]
    steps = [(s["name"], s["status"]) for s in final["body"]["steps"]]
    assert steps == [("ok", "success"), ("flaky", "failed")]

    receiver.requests.clear()
    run_elt("run", "quiet", cwd=project)  # the top-level hook wants failures only
    assert receiver.requests == []
