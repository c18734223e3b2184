"""`elt scheduler` as a real process on a real project and system database, its time read from a file
that the test moves forward: a one-minute schedule fires once per slot, restarts fire nothing twice,
missed slots follow `catchup`, two schedulers share the slots, SIGTERM lets a run finish or interrupts it,
file triggers (a local folder, an S3 prefix) run a pipeline once per file version with the paths in a
variable, completion triggers follow a successful run, and `elt trigger fire` starts a run at once. Each
test runs with the system database in `.elt/elt.db`, then in a fresh PostgreSQL database (ELT_SYSTEM_DB)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from elt.runs import RunLog, RunRecord
from elt.systemdb import Location, connect, exists
from tests.conftest import BIN, run_elt
from tests.test_state_backends import _s3_client, moto_endpoint  # noqa: F401  (a session fixture)

T = TypeVar("T")

PIPELINES = """
version: 1
pipelines:
  tiny:
    variables: {tag: none}
    steps:
      - {name: note, shell: "echo ${vars.tag} >> ran.txt"}
  slow:
    steps:
      - {name: wait, shell: "sleep ${vars.seconds}; echo done >> ran.txt"}
    variables: {seconds: 2}
  ingest:
    variables: {files: []}
    steps:
      - {name: each, shell: 'echo "$ELT_ITEM" >> seen.txt', for_each: "${vars.files}"}
"""


def wait_for(check: Callable[[], T], timeout: float = 20.0, what: str = "the condition") -> T:
    """The first truthy value of `check()`, polled until `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(autouse=True, params=["sqlite", "postgres"])
def history(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where the system database is: `.elt/elt.db`, or a PostgreSQL database of the test's own."""
    if request.param == "postgres":
        monkeypatch.setenv("ELT_SYSTEM_DB", request.getfixturevalue("system_db"))
    return str(request.param)


def history_of(project: Path) -> Location:
    return os.environ.get("ELT_SYSTEM_DB") or project / ".elt" / "elt.db"


def finished_runs(project: Path, name: str | None = None) -> list[RunRecord]:
    """Runs of `elt run` kind that ended, oldest first."""
    records = RunLog(history_of(project)).recent(200) if exists(history_of(project)) else []
    done = [
        r for r in records if r.kind == "run" and r.status != "running" and (name is None or r.name == name)
    ]
    return sorted(done, key=lambda r: r.started_at)


def all_runs(project: Path) -> list[RunRecord]:
    if not exists(history_of(project)):
        return []
    return [r for r in RunLog(history_of(project)).recent(200) if r.kind == "run"]


def seen(project: Path, name: str) -> bool:
    """Whether a scheduler has looked at schedule or trigger `name` (`schedule:X`) at least once."""
    if not exists(history_of(project)):
        return False
    conn = connect(history_of(project))
    try:
        return conn.execute("SELECT 1 FROM schedule_baselines WHERE name = ?", (name,)).fetchone() is not None
    finally:
        conn.close()


class Daemon:
    """One `elt scheduler` process with the file clock; its JSON-lines output in a file."""

    def __init__(self, project: Path, *args: str) -> None:
        self.project = project
        self.log = project / f"scheduler-{time.monotonic_ns()}.log"
        env = {**os.environ, "ELT_SCHEDULER_CLOCK_FILE": str(project / "clock")}
        env.pop("ELT_ENVIRONMENT", None)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "elt"), "scheduler", "--poll", "0.05", "--log-format", "json", *args],
                cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(lambda: self.event("scheduler_started") or self.proc.poll() is not None, what="the start")
        assert self.proc.poll() is None, self.log.read_text()

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def event(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == name]

    def settle(self, seconds: float = 0.8) -> None:
        """Let it make a few passes (it polls every 0.05 s)."""
        time.sleep(seconds)
        assert self.proc.poll() is None, self.log.read_text()

    def stop(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    """Start schedulers; any still running at the end of the test is killed."""
    started: list[Daemon] = []

    def start(project: Path, *args: str) -> Daemon:
        daemon = Daemon(project, *args)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def make_project(root: Path, extra: str, pipelines: str = "") -> Path:
    """An elt.yml of the shared pipelines, `pipelines` added under `pipelines:`, then `extra`."""
    more = textwrap.indent(textwrap.dedent(pipelines).strip("\n"), "  ") + "\n" if pipelines else ""
    (root / "elt.yml").write_text(PIPELINES.lstrip() + more + textwrap.dedent(extra), encoding="utf-8")
    return root


def set_clock(project: Path, instant: str) -> None:
    tmp = project / "clock.tmp"
    tmp.write_text(instant, encoding="utf-8")
    tmp.replace(project / "clock")


# -- schedules ------------------------------------------------------------------------------------------


def test_a_one_minute_schedule_fires_once_per_slot_and_a_restart_fires_nothing_twice(
    tmp_path, daemons
) -> None:
    project = make_project(tmp_path, """
        schedules:
          - {name: minutely, pipeline: tiny, interval: "* * * * *", variables: {tag: m}}
        """)  # fmt: skip
    set_clock(project, "2026-01-01T10:00:30Z")
    first = daemons(project)
    wait_for(lambda: seen(project, "schedule:minutely"), what="the first pass")
    first.settle(0.3)
    assert all_runs(project) == []  # a new schedule does not replay the past

    set_clock(project, "2026-01-01T10:01:05Z")
    [run] = wait_for(lambda: finished_runs(project), what="the run of slot 10:01")
    assert run.status == "success" and run.name == "tiny"
    assert run.request is not None
    assert run.request["trigger"] == {"schedule": "minutely", "slot": "2026-01-01T10:01:00+00:00"}
    assert run.request["variables"] == {"tag": "m"}
    first.settle(0.5)
    assert len(all_runs(project)) == 1
    assert first.stop() == 0

    set_clock(project, "2026-01-01T10:01:50Z")
    second = daemons(project)
    second.settle()
    assert len(all_runs(project)) == 1  # slot 10:01 was fired before the restart

    set_clock(project, "2026-01-01T10:02:01Z")
    wait_for(lambda: len(finished_runs(project)) == 2, what="the run of slot 10:02")
    second.settle(0.3)
    assert second.stop() == 0
    listed = json.loads(run_elt("runs", "list", "--format", "json", cwd=project).stdout)
    assert [(r["name"], r["status"]) for r in listed] == [("tiny", "success"), ("tiny", "success")]
    assert (project / "ran.txt").read_text().split() == ["m", "m"]
    slots = [r["request"]["trigger"]["slot"] for r in reversed(listed)]
    assert slots == ["2026-01-01T10:01:00+00:00", "2026-01-01T10:02:00+00:00"]


def test_slots_missed_while_down_run_once_without_catchup_and_each_with_catchup(tmp_path, daemons) -> None:
    project = make_project(tmp_path, """
        schedules:
          - {name: lazy, pipeline: tiny, interval: "* * * * *", variables: {tag: lazy}}
          - {name: eager, pipeline: tiny, interval: "* * * * *", variables: {tag: eager}, catchup: true}
        """)  # fmt: skip
    set_clock(project, "2026-01-01T10:00:30Z")
    first = daemons(project)
    wait_for(lambda: seen(project, "schedule:lazy") and seen(project, "schedule:eager"), what="a pass")
    assert first.stop() == 0

    set_clock(project, "2026-01-01T10:03:10Z")  # slots 10:01, 10:02 and 10:03 passed while down
    second = daemons(project)
    wait_for(lambda: len(finished_runs(project)) == 4, what="four runs")
    second.settle(0.5)
    assert second.stop() == 0
    runs = finished_runs(project)
    assert len(runs) == 4 and all(r.status == "success" for r in runs)
    fired: dict[str, list[str]] = {}
    for r in runs:
        assert r.request is not None
        fired.setdefault(r.request["trigger"]["schedule"], []).append(r.request["trigger"]["slot"][11:16])
    assert fired["lazy"] == ["10:03"]  # one run for the missed window, the latest slot
    assert fired["eager"] == ["10:01", "10:02", "10:03"]  # each, one after the other
    missed = [e for e in second.event("schedule_fired") if e["name"] == "lazy"]
    assert missed[0]["missed"] == 2


def test_two_schedulers_on_one_project_fire_each_slot_once(tmp_path, daemons) -> None:
    project = make_project(tmp_path, """
        schedules:
          - {name: minutely, pipeline: tiny, interval: "* * * * *"}
        """)  # fmt: skip
    set_clock(project, "2026-01-01T10:00:30Z")
    one, two = daemons(project), daemons(project)
    wait_for(lambda: seen(project, "schedule:minutely"), what="a pass")
    for minute in (1, 2, 3):
        set_clock(project, f"2026-01-01T10:0{minute}:02Z")
        wait_for(lambda m=minute: len(finished_runs(project)) == m, what=f"the run of 10:0{minute}")
    one.settle(0.5)
    assert one.stop() == 0 and two.stop() == 0
    runs = all_runs(project)
    assert len(runs) == 3
    slots = sorted(r.request["trigger"]["slot"] for r in runs if r.request)
    assert slots == [f"2026-01-01T10:0{m}:00+00:00" for m in (1, 2, 3)]
    fired = len(one.event("schedule_fired")) + len(two.event("schedule_fired"))
    assert fired == 3


def test_sigterm_lets_a_running_run_finish_within_the_grace_period(tmp_path, daemons) -> None:
    project = make_project(tmp_path, """
        schedules:
          - {name: minutely, pipeline: slow, interval: "* * * * *", variables: {seconds: 1.5}}
        """)  # fmt: skip
    set_clock(project, "2026-01-01T10:00:30Z")
    daemon = daemons(project, "--grace", "30")
    wait_for(lambda: seen(project, "schedule:minutely"), what="a pass")
    set_clock(project, "2026-01-01T10:01:01Z")
    wait_for(lambda: any(r.status == "running" for r in all_runs(project)), what="the run to start")
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started >= 0.5  # it waited for the run
    [run] = finished_runs(project)
    assert run.status == "success" and (project / "ran.txt").read_text().split() == ["done"]
    assert daemon.event("scheduler_stopping") and daemon.event("scheduler_stopped")


def test_sigterm_interrupts_a_run_longer_than_the_grace_period_and_marks_its_steps(tmp_path, daemons) -> None:
    project = make_project(tmp_path, """
        schedules:
          - {name: minutely, pipeline: slow, interval: "* * * * *", variables: {seconds: 60}}
        """)  # fmt: skip
    set_clock(project, "2026-01-01T10:00:30Z")
    daemon = daemons(project, "--grace", "0.5")
    wait_for(lambda: seen(project, "schedule:minutely"), what="a pass")
    set_clock(project, "2026-01-01T10:01:01Z")
    wait_for(lambda: any(s.status == "running" for r in all_runs(project) for s in r.steps), what="the step")
    started = time.monotonic()
    assert daemon.stop(timeout=30) == 0
    assert time.monotonic() - started < 15
    shown = json.loads(
        run_elt("runs", "show", all_runs(project)[0].run_id, "--format", "json", cwd=project).stdout
    )
    assert shown["status"] == "failed" and shown["error"] == "interrupted"
    [step] = shown["steps"]
    assert step["status"] == "failed" and step["error"] == "interrupted: the run was stopped"
    assert not (project / "ran.txt").exists()  # the step's process group was killed, not left running
    assert daemon.event("run_interrupted")
    listed = json.loads(run_elt("schedule", "list", "--format", "json", cwd=project).stdout)
    assert listed["schedules"][0]["last"]["status"] == "failed"


# -- triggers -------------------------------------------------------------------------------------------


def test_a_file_dropped_in_a_watched_folder_runs_its_pipeline_once_with_its_path(tmp_path, daemons) -> None:
    project = make_project(tmp_path, """
        triggers:
          - {name: orders, kind: file, pipeline: ingest, path: incoming/*.csv, variable: files, poll: 0.2s}
        """)  # fmt: skip
    incoming = project / "incoming"
    incoming.mkdir()
    (project / "clock").write_text("2026-01-01T10:00:00Z")
    daemon = daemons(project)
    (incoming / "a.csv").write_text("id\n1\n")
    (incoming / "notes.txt").write_text("not watched")
    [first] = wait_for(lambda: finished_runs(project), what="the run for a.csv")
    assert first.status == "success" and first.name == "ingest"
    assert first.request is not None and first.request["variables"] == {"files": ["incoming/a.csv"]}
    assert first.request["trigger"]["trigger"] == "orders"
    assert (project / "seen.txt").read_text().split() == ["incoming/a.csv"]

    daemon.settle(1.0)
    assert len(all_runs(project)) == 1  # the same file, unchanged: no new run

    (incoming / "a.csv").write_text("id\n1\n2\n")  # changed
    wait_for(lambda: len(finished_runs(project)) == 2, what="the run for the changed a.csv")
    (incoming / "b.csv").write_text("id\n3\n")
    (incoming / "c.csv").write_text("id\n4\n")
    expected = ["incoming/a.csv", "incoming/a.csv", "incoming/b.csv", "incoming/c.csv"]
    wait_for(lambda: sorted((project / "seen.txt").read_text().split()) == expected, what="b.csv and c.csv")
    assert daemon.stop() == 0

    again = daemons(project)  # a restart: every file has fired already
    again.settle(1.0)
    count = len(all_runs(project))
    assert again.stop() == 0
    assert count == len(finished_runs(project)) and all(r.status == "success" for r in finished_runs(project))
    files = [f for r in finished_runs(project) if r.request for f in r.request["variables"]["files"]]
    assert sorted(files) == ["incoming/a.csv", "incoming/a.csv", "incoming/b.csv", "incoming/c.csv"]


def test_an_s3_file_trigger_fires_each_object_version_once(tmp_path, moto_endpoint: str) -> None:  # noqa: F811
    client = _s3_client(moto_endpoint)
    bucket = f"drop-{tmp_path.name.lower().replace('_', '-')[-20:]}"
    client.create_bucket(Bucket=bucket)
    project = make_project(tmp_path, f"""
        triggers:
          - name: lake
            kind: file
            pipeline: ingest
            path: "s3://{bucket}/incoming/*.csv"
            poll: 0s
            s3: {{aws_access_key_id: test, aws_secret_access_key: test, endpoint_url: "{moto_endpoint}",
                  region: us-east-1}}
        """)  # fmt: skip
    client.put_object(Bucket=bucket, Key="incoming/a.csv", Body=b"id\n1\n")
    client.put_object(Bucket=bucket, Key="incoming/deeper/b.csv", Body=b"id\n2\n")  # `*` stays in its folder
    client.put_object(Bucket=bucket, Key="elsewhere/c.csv", Body=b"id\n3\n")

    def once() -> None:  # `--once`: fire what is due, wait for the runs, exit
        proc = subprocess.run([str(BIN / "elt"), "scheduler", "--once", "--log-format", "json"], cwd=project,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr

    once()
    [run] = finished_runs(project)
    assert run.status == "success" and run.request is not None
    assert run.request["variables"]["files"] == [f"s3://{bucket}/incoming/a.csv"]
    once()
    assert len(finished_runs(project)) == 1  # unchanged: fired already
    client.put_object(Bucket=bucket, Key="incoming/a.csv", Body=b"id\n1\n2\n")
    once()
    runs = finished_runs(project)
    assert len(runs) == 2 and runs[1].request is not None
    assert runs[1].request["variables"]["files"] == [f"s3://{bucket}/incoming/a.csv"]


def test_a_completion_trigger_runs_after_a_success_and_not_after_a_failure(tmp_path, daemons) -> None:
    project = make_project(
        tmp_path,
        """
        triggers:
          - {name: publish, kind: completion, after: daily, pipeline: tiny, variables: {tag: published}}
        """,
        pipelines="""
        daily:
          variables: {code: 0}
          steps:
            - {name: work, shell: "exit ${vars.code}"}
        """,
    )
    (project / "clock").write_text("2026-01-01T10:00:00Z")
    daemon = daemons(project)
    wait_for(lambda: seen(project, "trigger:publish"), what="a pass")

    failed = run_elt("run", "daily", "--var", "code=3", cwd=project, check=False)
    assert failed.returncode == 1
    daemon.settle(1.0)
    assert [r.name for r in all_runs(project)] == ["daily"]  # no publish after a failure

    ok = json.loads(run_elt("run", "daily", "--format", "json", cwd=project).stdout)
    published = wait_for(lambda: finished_runs(project, "tiny"), what="the publish run")
    assert published[0].status == "success"
    assert published[0].request is not None and published[0].request["trigger"]["after_runs"] == [
        ok["run_id"]
    ]
    assert (project / "ran.txt").read_text().split() == ["published"]
    daemon.settle(0.8)
    assert len(finished_runs(project, "tiny")) == 1  # once per successful run
    assert daemon.stop() == 0


def test_trigger_fire_starts_a_run_at_once_with_the_given_variables(tmp_path) -> None:
    project = make_project(tmp_path, """
        triggers:
          - {name: from-ci, kind: webhook, pipeline: tiny, auth: hmac-sha256, secret: "s3cret",
             variables: {tag: hook}}
        """)  # fmt: skip
    started = json.loads(run_elt("trigger", "fire", "from-ci", "--format", "json", cwd=project).stdout)
    run_id = started["run_id"]
    from elt.project import load_project
    from elt.schedule.fire import fire_trigger, wait_for_run

    assert wait_for_run(load_project(project), run_id, timeout=30).status == "success"
    second = fire_trigger(load_project(project), "from-ci", {"tag": "override"})
    record = wait_for_run(load_project(project), second, timeout=30)
    assert record.status == "success" and record.request is not None
    assert record.request["variables"] == {"tag": "override"}
    assert record.request["trigger"] == {"trigger": "from-ci", "kind": "webhook", "by": "fire"}
    assert (project / "ran.txt").read_text().split() == ["hook", "override"]
    waited = run_elt("trigger", "fire", "from-ci", "--var", "tag=[1, 2]", "--wait", "--format", "json",
                     cwd=project)  # fmt: skip
    assert json.loads(waited.stdout)["request"]["variables"] == {"tag": [1, 2]}
    unknown = run_elt("trigger", "fire", "from-cj", cwd=project, check=False)
    assert unknown.returncode == 2 and "no trigger named 'from-cj'" in unknown.stderr
    assert "did you mean 'from-ci'?" in unknown.stderr
