"""State backends: the same semantics and locks over systemdb, files, PostgreSQL and S3 (a moto server)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from elt.errors import LockedError, ProjectError
from elt.project import load_project
from elt.state import LockHolder, StateStore, open_state_store
from elt.state.files import FileBackend
from tests.conftest import BIN, IN_CI

BACKENDS = ["systemdb", "file", "postgresql", "s3"]
# S3 tells times in whole seconds, so its locks need a little more room than the others.
LOCK_TIMEOUT = {"systemdb": 1.0, "file": 1.0, "postgresql": 1.0, "s3": 2.0}


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real moto S3 server on a free port of 127.0.0.1, for the whole session."""
    executable = BIN / "moto_server"
    if not executable.exists():
        if IN_CI:
            pytest.fail("moto_server is not installed (CI must not skip)")
        pytest.skip("moto_server is not installed")
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    # The server logs every request: to a file, so that a full pipe can never block it.
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", "0"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while not (
            found := re.search(r"Running on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto_server did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test").client(
        "s3", endpoint_url=endpoint, region_name="us-east-1"
    )


def _backend_yaml(request: pytest.FixtureRequest, kind: str) -> Iterator[str]:
    """The `state_backend` block for `kind`, with a fresh schema or bucket dropped afterwards."""
    timing = f"lock_timeout_seconds: {LOCK_TIMEOUT[kind]}\n  lock_retry_seconds: 0.05\n"
    if kind == "systemdb":
        yield f"state_backend:\n  {timing}"
    elif kind == "file":
        yield f"state_backend:\n  uri: file://state\n  {timing}"
    elif kind == "postgresql":
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        dsn: str = request.getfixturevalue("postgres_dsn")
        p = conninfo_to_dict(dsn)
        schema = f"elt_state_test_{uuid.uuid4().hex[:10]}"
        uri = f"postgresql://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}"
        yield f"state_backend:\n  uri: {uri}\n  {timing}  postgresql:\n    schema: {schema}\n"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    else:
        endpoint: str = request.getfixturevalue("moto_endpoint")
        bucket = f"elt-state-{uuid.uuid4().hex[:10]}"
        _s3_client(endpoint).create_bucket(Bucket=bucket)
        yield (
            f"state_backend:\n  uri: s3://{bucket}/elt/state\n  {timing}  s3:\n"
            f"    aws_access_key_id: test\n    aws_secret_access_key: test\n    endpoint_url: {endpoint}\n"
        )


@pytest.fixture(params=BACKENDS)
def project_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A project whose elt.yml selects one backend (with short lock timeouts)."""
    blocks = _backend_yaml(request, request.param)
    (tmp_path / "elt.yml").write_text("version: 1\n" + next(blocks), encoding="utf-8")
    yield tmp_path
    next(blocks, None)


@pytest.fixture
def store(project_dir: Path) -> Iterator[StateStore]:
    with open_state_store(load_project(project_dir)) as opened:
        yield opened


def _slack(store: StateStore) -> float:
    return 1.0 + (1.0 if "s3://" in store.label else 0.0)


ORDERS_1 = {"bookmarks": {"orders": {"replication_key_value": 1}}}


# -- semantics -------------------------------------------------------------------------------------------


def test_partial_state_wins_until_the_run_completes(store: StateStore) -> None:
    store.complete("dev:a-to-b", ORDERS_1)
    store.save_partial("dev:a-to-b", {"bookmarks": {"orders": {"replication_key_value": 5}}})

    record = store.require("dev:a-to-b")
    assert record.completed == ORDERS_1
    assert record.effective == {"bookmarks": {"orders": {"replication_key_value": 5}}}

    store.complete("dev:a-to-b", {"bookmarks": {"customers": {"replication_key_value": 2}}})
    record = store.require("dev:a-to-b")
    assert record.partial is None
    assert record.completed == {
        "bookmarks": {"orders": {"replication_key_value": 1}, "customers": {"replication_key_value": 2}}
    }
    store.complete("dev:a-to-b", ORDERS_1, merge=False)
    assert store.require("dev:a-to-b").completed == ORDERS_1


def test_merge_deep_merges_into_the_state_and_wins_over_a_partial_one(store: StateStore) -> None:
    store.set("dev:a-to-b", {"bookmarks": {"orders": {"v": 1, "ts": "x"}, "customers": {"v": 2}}})
    store.save_partial("dev:a-to-b", {"bookmarks": {"orders": {"v": 3}}})

    merged = store.merge("dev:a-to-b", {"bookmarks": {"orders": {"v": 9}, "products": {"v": 4}}})

    assert merged.completed == {
        "bookmarks": {"orders": {"v": 9, "ts": "x"}, "customers": {"v": 2}, "products": {"v": 4}}
    }
    assert store.require("dev:a-to-b").effective["bookmarks"]["orders"] == {"v": 9, "ts": "x"}
    assert store.merge("dev:new-to-b", ORDERS_1).completed == ORDERS_1


def test_clearing_one_stream_keeps_the_other_bookmarks(store: StateStore) -> None:
    store.set("dev:a-to-b", {"bookmarks": {"orders": {"v": 1}, "customers": {"v": 2}},
                             "currently_syncing": "orders"})  # fmt: skip
    store.save_partial("dev:a-to-b", {"bookmarks": {"orders": {"v": 3}, "customers": {"v": 4}}})

    assert store.clear("dev:a-to-b", "orders")

    record = store.require("dev:a-to-b")
    assert record.effective == {"bookmarks": {"customers": {"v": 4}}, "currently_syncing": None}
    assert store.clear("dev:a-to-b")
    assert store.get("dev:a-to-b") is None
    assert not store.clear("dev:a-to-b")
    assert not store.clear("dev:a-to-b", "orders")


def test_list_filters_state_ids_with_a_glob_pattern(store: StateStore) -> None:
    for state_id in ("prod:tap-x--eu-to-target-y", "dev:tap-x-to-target-y", "dev:tap/odd name-to-t"):
        store.set(state_id, ORDERS_1)

    assert [r.state_id for r in store.list()] == [
        "dev:tap-x-to-target-y", "dev:tap/odd name-to-t", "prod:tap-x--eu-to-target-y"
    ]  # fmt: skip
    assert [r.state_id for r in store.list("dev:*")] == ["dev:tap-x-to-target-y", "dev:tap/odd name-to-t"]
    assert [r.state_id for r in store.list("*--eu-*")] == ["prod:tap-x--eu-to-target-y"]
    assert store.require("dev:tap/odd name-to-t").effective == ORDERS_1


def test_copy_and_move_carry_completed_and_partial_state(store: StateStore) -> None:
    store.set("dev:a-to-b", ORDERS_1)
    store.save_partial("dev:a-to-b", {"bookmarks": {"orders": {"replication_key_value": 2}}})

    store.copy("dev:a-to-b", "dev:copy")
    store.move("dev:copy", "dev:moved")

    original, moved = store.require("dev:a-to-b"), store.require("dev:moved")
    assert (moved.completed, moved.partial) == (original.completed, original.partial)
    assert store.get("dev:copy") is None
    assert store.delete("dev:moved") and not store.delete("dev:moved")


# -- locks -----------------------------------------------------------------------------------------------


def test_a_held_lock_raises_locked_error_naming_the_holder(store: StateStore) -> None:
    with store.lock("dev:a-to-b", run_id="run-1"):
        with pytest.raises(LockedError) as failure, store.lock("dev:a-to-b", run_id="run-2"):
            pass
        with store.lock("dev:other-to-b", run_id="run-2"):  # other state ids are not blocked
            pass

    message = str(failure.value)
    assert "dev:a-to-b" in message and "run run-1" in message
    assert f"pid {os.getpid()} on {socket.gethostname()}" in message
    assert "--wait" in message
    assert failure.value.exit_code == 1
    assert store.lock_holder("dev:a-to-b") is None


def test_waiting_for_a_lock_succeeds_once_it_is_released(store: StateStore) -> None:
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.lock("dev:a-to-b", run_id="first"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    seen: list[LockHolder] = []
    threading.Timer(0.5, release.set).start()

    started = time.monotonic()
    with store.lock("dev:a-to-b", run_id="second", wait=True, on_wait=seen.append):
        waited = time.monotonic() - started
        current = store.lock_holder("dev:a-to-b")
    holder.join()

    assert waited >= 0.4
    assert [h.run_id for h in seen] == ["first"]
    assert current is not None and current.run_id == "second"


def test_an_expired_lock_is_taken_over(store: StateStore) -> None:
    dead = LockHolder("dev:a-to-b", "killed-run", 999999, "gone-host", "2020-01-01T00:00:00+00:00", "dead")
    assert store.backend.acquire_lock(dead, store.lock_timeout_seconds) is None  # and no heartbeat follows
    with pytest.raises(LockedError, match="killed-run"), store.lock("dev:a-to-b", run_id="next"):
        pass

    started = time.monotonic()
    with store.lock("dev:a-to-b", run_id="next", wait=True):
        waited = time.monotonic() - started
        current = store.lock_holder("dev:a-to-b")
        assert not store.backend.refresh_lock(dead)  # the dead run finds out it lost the lock

    assert waited <= store.lock_timeout_seconds + _slack(store)
    assert current is not None and current.run_id == "next"


def test_the_lock_is_released_when_the_block_raises(store: StateStore) -> None:
    with pytest.raises(RuntimeError, match="tap crashed"), store.lock("dev:a-to-b", run_id="run-1"):
        raise RuntimeError("tap crashed")

    assert store.lock_holder("dev:a-to-b") is None
    with store.lock("dev:a-to-b", run_id="run-2"):
        pass


HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from elt.project import load_project
    from elt.state import open_state_store

    store = open_state_store(load_project(Path(sys.argv[1])))
    with store.lock("dev:a-to-b", run_id="holder-run"):
        print("locked", flush=True)
        time.sleep(120)
    """
)


def test_a_lock_held_by_another_process_blocks_until_that_process_is_killed(
    store: StateStore, project_dir: Path
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(project_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        # longer than the timeout: only the holder's heartbeat keeps the lock alive
        time.sleep(store.lock_timeout_seconds * 1.25)
        with pytest.raises(LockedError) as failure, store.lock("dev:a-to-b", run_id="mine"):
            pass
        assert f"run holder-run (pid {holder.pid} on {socket.gethostname()}" in str(failure.value)

        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        killed = time.monotonic()
        with store.lock("dev:a-to-b", run_id="mine", wait=True):
            taken_after = time.monotonic() - killed
            current = store.lock_holder("dev:a-to-b")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)

    assert taken_after <= store.lock_timeout_seconds + _slack(store)
    assert current is not None and current.run_id == "mine"


# -- settings --------------------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "elt.yml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return tmp_path


def test_an_unknown_backend_is_an_error_naming_the_key_and_line_without_the_password(tmp_path: Path) -> None:
    project = load_project(_write(tmp_path, """
        version: 1
        state_backend:
          uri: ftp://admin:hunter2@example.com/state
    """))  # fmt: skip

    with pytest.raises(ProjectError) as failure:
        open_state_store(project)

    message = str(failure.value)
    assert message.startswith("elt.yml:3: key 'state_backend.uri': unknown state backend 'ftp://'")
    assert "ftp://admin:****@example.com/state" in message and "hunter2" not in message
    assert "file://DIR" in message and "postgresql://" in message and "s3://BUCKET/PREFIX" in message


def test_a_malformed_postgres_uri_names_the_problem_and_masks_the_password(tmp_path: Path) -> None:
    project = load_project(_write(tmp_path, """
        version: 1
        state_backend:
          uri: postgresql://elt:s3cr3t@db.example.com:five/elt
    """))  # fmt: skip

    with pytest.raises(ProjectError, match=r"elt.yml:3: .*port 'five' is not a number") as failure:
        open_state_store(project)
    assert "s3cr3t" not in str(failure.value)


def test_the_environment_state_backend_overrides_the_top_level_one(tmp_path: Path) -> None:
    _write(tmp_path, """
        version: 1
        default_environment: dev
        state_backend:
          uri: file://state-dev
          lock_timeout_seconds: 12
        environments:
          - name: dev
          - name: prod
            state_backend:
              uri: file://${STATE_ROOT:-/tmp}/elt-prod-state
          - name: broken
            state_backend:
              uri: gs://bucket/state
    """)  # fmt: skip

    dev = open_state_store(load_project(tmp_path))
    prod = open_state_store(load_project(tmp_path, "prod"))

    assert isinstance(dev.backend, FileBackend) and dev.backend.directory == tmp_path / "state-dev"
    assert isinstance(prod.backend, FileBackend) and prod.backend.directory == Path("/tmp/elt-prod-state")
    assert prod.lock_timeout_seconds == 12
    with pytest.raises(ProjectError, match=r"elt.yml:13: key 'environments\[2\].state_backend.uri'"):
        open_state_store(load_project(tmp_path, "broken"))


def test_an_unset_variable_in_the_backend_settings_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ELT_TEST_STATE_BUCKET", raising=False)
    project = load_project(_write(tmp_path, """
        version: 1
        state_backend:
          uri: s3://${ELT_TEST_STATE_BUCKET}/state
    """))  # fmt: skip

    with pytest.raises(ProjectError, match="ELT_TEST_STATE_BUCKET' is not set"):
        open_state_store(project)


def test_the_file_backend_keeps_one_json_file_per_state_id(tmp_path: Path) -> None:
    store = open_state_store(
        load_project(_write(tmp_path, "version: 1\nstate_backend:\n  uri: file://state\n"))
    )

    store.set("dev:a-to-b", ORDERS_1)
    store.save_partial("dev:a-to-b", {"bookmarks": {"orders": {"replication_key_value": 2}}})
    with store.lock("dev:a-to-b", run_id="r"):
        names = sorted(p.name for p in (tmp_path / "state").iterdir())

    assert names == ["dev%3Aa-to-b.json", "dev%3Aa-to-b.lock"]
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["dev%3Aa-to-b.json"]
    assert '"replication_key_value": 2' in (tmp_path / "state" / "dev%3Aa-to-b.json").read_text()
