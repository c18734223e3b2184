"""Real Celery workers (`elt worker` subprocesses) on the local Redis and RabbitMQ, for the tests of the
celery executor. Each test session uses queues of its own, so leftovers of another run never reach it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import BIN, IN_CI

REDIS = ("127.0.0.1", 6379)
RABBITMQ = ("127.0.0.1", 5672)
BROKERS = {
    "redis": ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/1", REDIS),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", "redis://127.0.0.1:6379/1", RABBITMQ),
}
# How to start each service on this machine if it is down (the machine's own commands).
_START = {
    REDIS: ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
            "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
            "--logfile", "/var/log/redis/ci.log"],
    RABBITMQ: ["rabbitmq-server", "-detached"],
}  # fmt: skip


def _answers(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def require_broker(kind: str) -> None:
    """The broker (and the Redis result backend) answer; started if down; a skip without them, not in CI."""
    for address in {BROKERS[kind][2], REDIS}:
        if not _answers(address):
            subprocess.run(_START[address], capture_output=True, check=False)
            deadline = time.monotonic() + 60
            while not _answers(address) and time.monotonic() < deadline:
                time.sleep(0.5)
        if not _answers(address):
            message = f"{kind}: nothing answers at {address[0]}:{address[1]}"
            if IN_CI:
                pytest.fail(f"{message} (CI must not skip)")
            pytest.skip(message)


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """kill -9 of the worker and everything it started, as when its machine is lost."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Cluster:
    """Workers of one broker and the environment that makes `elt run` send them its steps."""

    broker: str
    env: dict[str, str]
    folder: Path
    workers: list[Worker] = field(default_factory=list)

    def start(
        self, name: str, *, queues: str | None = None, concurrency: int = 2, cwd: Path | None = None
    ) -> Worker:
        log = self.folder / f"{name}.log"
        args = [str(BIN / "elt"), "worker", "--name", f"{name}@test", "--concurrency", str(concurrency)]
        if queues:
            args += ["--queues", ",".join(f"{self.env['ELT_QUEUE']}-{q}" for q in queues.split(","))]
        cwd = cwd or self.folder
        with log.open("wb") as out:
            process = subprocess.Popen(args, cwd=cwd, env={**os.environ, **self.env}, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        worker = Worker(name, process, log)
        self.workers.append(worker)
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker {name} did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        return worker

    def queue(self, name: str) -> str:
        """The real name of a test queue (unique to the session)."""
        return f"{self.env['ELT_QUEUE']}-{name}"

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()


@contextmanager
def cluster(kind: str, folder: Path, **settings: str) -> Iterator[Cluster]:
    """A broker's workers for the `with` block; `settings` are more ELT_* variables."""
    require_broker(kind)
    broker, backend, _ = BROKERS[kind]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "elt.yml").write_text("version: 1\n", encoding="utf-8")  # the workers' own project
    env = {"ELT_EXECUTOR": "celery", "ELT_BROKER_URL": broker, "ELT_RESULT_BACKEND": backend,
           "ELT_QUEUE": f"test-{uuid.uuid4().hex[:10]}", **settings}  # fmt: skip
    made = Cluster(kind, env, folder)
    try:
        yield made
    finally:
        made.stop()
