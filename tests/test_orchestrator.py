"""The orchestrator through `elt run`: parallel steps, retries, skips, fan-out, timeouts, resume after
kill -9, run history with rows per step, variables, validation and metrics. Every attempt is a real
process; the steps are shell commands that count their executions in files, and one real sync.

Each test that runs steps runs three times: with the `local` executor, with the `celery` executor on real
workers (`elt worker` on the local Redis), and with `local` and the system database in PostgreSQL
(`ELT_SYSTEM_DB`): the behaviour must be the same. Those marked `orchestrator_only`
check what the orchestrator alone does (validation, step selection, its terminal line), the same
whatever runs the attempts, and run with `local` only."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BIN, run_elt
from tests.workers import Cluster, cluster


@pytest.fixture(scope="module")
def redis_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster("redis", tmp_path_factory.mktemp("workers")) as workers:
        workers.start("one", concurrency=3)
        workers.start("two", concurrency=3)
        yield workers


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    only_local = metafunc.definition.get_closest_marker("orchestrator_only") is not None
    kinds = ["local"] if only_local else ["local", "celery", "local-history-in-postgres"]
    metafunc.parametrize("executor", kinds, indirect=True)


orchestrator_only = pytest.mark.orchestrator_only


@pytest.fixture(autouse=True)
def executor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The executor the test's `elt run` uses (through the ELT_* variables it inherits); with
    `local-history-in-postgres`, the local one with the system database in a fresh PostgreSQL database."""
    if request.param == "celery":
        workers: Cluster = request.getfixturevalue("redis_workers")
        for name, value in workers.env.items():
            monkeypatch.setenv(name, value)
    if request.param == "local-history-in-postgres":
        monkeypatch.setenv("ELT_SYSTEM_DB", request.getfixturevalue("system_db"))
    return str(request.param)


def run_json(project: Path, *args: str, code: int = 0) -> dict[str, Any]:
    proc = run_elt("run", *args, "--format", "json", cwd=project, check=False)
    assert proc.returncode == code, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def show(project: Path, run_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(
        run_elt("runs", "show", run_id, "--format", "json", cwd=project).stdout
    )
    return shown


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in result["steps"]}


def test_independent_steps_run_in_parallel_and_metrics_are_written(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          two:
            max_parallel: 2
            steps:
              # each step succeeds only if the other one is running at the same time
              - {name: one, shell: "touch one.up; sh meet.sh two.up"}
              - {name: two, shell: "touch two.up; sh meet.sh one.up"}
        """
    )
    (project / "meet.sh").write_text('for i in $(seq 99); do [ -f "$1" ] && exit 0; sleep .1; done; exit 1\n')
    result = run_json(project, "two")
    assert statuses(result) == {"one": "success", "two": "success"}
    metrics = (project / ".elt" / "metrics.prom").read_text()
    assert 'elt_step_seconds{pipeline="two",step="one",status="success"}' in metrics
    assert 'elt_run_status{pipeline="two",run_id="' + result["run_id"] + '"} 1' in metrics
    assert "elt_step_attempts" in metrics and "elt_step_rows" in metrics


def test_retries_happen_the_configured_times_with_growing_delays(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          flaky:
            steps:
              - name: flaky
                shell: echo x >> tries.txt; exit 1
                retries: {count: 2, delay: 0.4, backoff: exponential}
        """
    )
    proc = run_elt("run", "flaky", "--format", "json", cwd=project, check=False)
    assert proc.returncode == 1, proc.stderr
    assert (project / "tries.txt").read_text().count("x") == 3
    step = show(project, json.loads(proc.stdout)["run_id"])["steps"][0]
    assert step["attempts"] == 3 and step["status"] == "failed"
    # the delays the orchestrator chose double; the wall-clock gaps also hold a worker's dispatch time,
    # so they are only checked to be at least the delay
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert [e["delay"] for e in events if e["event"] == "step_retry"] == [0.4, 0.8]
    records = step["attempt_records"]
    gaps = [
        (datetime.fromisoformat(b["started_at"]) - datetime.fromisoformat(a["ended_at"])).total_seconds()
        for a, b in zip(records, records[1:], strict=False)
    ]
    assert gaps[0] >= 0.399 and gaps[1] >= 0.799, gaps  # timestamps are kept to the millisecond


def test_a_failure_skips_downstream_and_if_always_still_runs(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          p:
            steps:
              - {name: broken, shell: exit 3}
              - {name: after, shell: echo after >> ran.txt, needs: [broken]}
              - {name: cleanup, shell: echo cleanup >> ran.txt, if: always}
        """
    )
    proc = run_elt("run", "p", cwd=project, check=False)
    assert proc.returncode == 1
    assert "step 'broken' failed: shell command exited with 3" in proc.stderr
    assert (project / "ran.txt").read_text().split() == ["cleanup"]
    last = json.loads(run_elt("runs", "list", "--format", "json", "--limit", "1", cwd=project).stdout)[0]
    assert {s["name"]: s["status"] for s in last["steps"]} == {
        "broken": "failed", "after": "skipped", "cleanup": "success",
    }  # fmt: skip


def test_on_failure_continue_lets_independent_branches_go_on(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          p:
            max_parallel: 1
            steps:
              - {name: broken, shell: exit 1, on_failure: continue}
              - {name: after_broken, shell: "true", needs: [broken]}
              - {name: other, shell: echo other >> ran.txt}
              - {name: after_other, shell: echo after_other >> ran.txt, needs: [other]}
        """
    )
    result = run_json(project, "p", code=1)
    assert statuses(result) == {
        "broken": "failed", "after_broken": "skipped", "other": "success", "after_other": "success",
    }  # fmt: skip
    assert (project / "ran.txt").read_text().split() == ["other", "after_other"]


def test_for_each_over_a_list_and_over_a_previous_steps_output(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          fan:
            steps:
              - {name: literal, shell: echo $ELT_ITEM >> literal.txt, for_each: [a, b, c]}
              - {name: list, shell: "echo '[1, 2]' > $ELT_STEP_OUTPUT"}
              - name: each
                shell: echo $ELT_ITEM >> each.txt
                needs: [list]
                for_each: ${steps.list.output}
        """
    )
    result = run_json(project, "fan")
    assert sorted((project / "literal.txt").read_text().split()) == ["a", "b", "c"]
    assert sorted((project / "each.txt").read_text().split()) == ["1", "2"]
    names = statuses(result)
    assert {
        n: names[n] for n in ("literal[0]", "literal[1]", "literal[2]", "each[0]", "each[1]")
    } == dict.fromkeys(("literal[0]", "literal[1]", "literal[2]", "each[0]", "each[1]"), "success")


def test_a_timeout_kills_the_step(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          slow:
            steps:
              - {name: sleepy, shell: sleep 31, timeout: 1}
        """
    )
    started = time.monotonic()
    result = run_json(project, "slow", code=1)
    assert time.monotonic() - started < 10
    step = result["steps"][0]
    assert step["status"] == "failed" and "timed out after 1s" in step["error"]
    assert not still_running("sleep 31")


def still_running(command: str) -> bool:
    """Whether a process runs `command` (each test's sleeps last a number of seconds of its own)."""
    found = subprocess.run(["pgrep", "-f", f"^{command}$"], capture_output=True, text=True, check=False)
    return bool(found.stdout.strip())


def start_slow_run(write_project, sleep: int) -> tuple[Path, subprocess.Popen[str]]:
    """`elt run p` of first → slow → last, once `slow` has started; `slow` sleeps `sleep` seconds unless
    the project holds a file `go`. Each step appends its name to ran.txt (`slow` also slow-done)."""
    project = write_project(
        f"""
        version: 1
        pipelines:
          p:
            steps:
              - {{name: first, shell: echo first >> ran.txt}}
              - name: slow
                shell: "echo slow >> ran.txt; [ -f go ] || sleep {sleep}; echo slow-done >> ran.txt"
                needs: [first]
              - {{name: last, shell: echo last >> ran.txt, needs: [slow]}}
        """
    )
    elt = subprocess.Popen([str(BIN / "elt"), "run", "p", "--format", "json"], cwd=project,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    ran = project / "ran.txt"
    while not (ran.exists() and "slow" in ran.read_text()):
        assert elt.poll() is None and time.monotonic() < deadline, elt.communicate()
        time.sleep(0.05)
    return project, elt


def test_resume_after_kill_9_reruns_only_what_had_not_succeeded(write_project) -> None:
    project, elt = start_slow_run(write_project, 33)
    ran = project / "ran.txt"
    os.kill(elt.pid, signal.SIGKILL)
    elt.communicate()
    died = json.loads(run_elt("runs", "list", "--format", "json", "--limit", "1", cwd=project).stdout)[0]
    assert died["status"] == "died"
    # the step's process does not outlive the run: locally it dies with elt; a worker that sees the
    # run's history stops it once the run is no longer running
    deadline = time.monotonic() + 20
    while still_running("sleep 33"):
        assert time.monotonic() < deadline, "the step of the killed run is still running"
        time.sleep(0.2)
    (project / "go").touch()
    resumed = run_json(project, "--resume", died["run_id"])
    assert statuses(resumed) == {"first": "reused", "slow": "success", "last": "success"}
    assert ran.read_text().split() == ["first", "slow", "slow", "slow-done", "last"]


def test_runs_cancel_kills_the_running_step_and_resume_runs_what_did_not_finish(write_project) -> None:
    project, elt = start_slow_run(write_project, 47)
    ran = project / "ran.txt"
    run_id = json.loads(run_elt("runs", "list", "--format", "json", cwd=project).stdout)[0]["run_id"]
    cancel = run_elt("runs", "cancel", run_id[:12], cwd=project)
    assert f"run {run_id}: cancelled (cancelled by " in cancel.stdout
    out, err = elt.communicate(timeout=30)
    assert elt.returncode == 1 and json.loads(out)["status"] == "cancelled"
    assert "cancelled by" in err and f"elt run --resume {run_id}" in err
    # the step's process is gone (on a worker too), and what came after never started
    assert not still_running("sleep 47")
    assert ran.read_text().split() == ["first", "slow"]
    shown = show(project, run_id)
    assert shown["status"] == "cancelled" and shown["error"].startswith("cancelled by ")
    steps = {s["name"]: (s["status"], s["error"]) for s in shown["steps"]}
    assert steps["first"] == ("success", None)
    assert steps["slow"][0] == steps["last"][0] == "cancelled"
    assert steps["last"][1].startswith("not started: cancelled by ")
    slow = next(s for s in shown["steps"] if s["name"] == "slow")
    assert [a["status"] for a in slow["attempt_records"]] == ["cancelled"]
    again = run_elt("runs", "cancel", run_id, cwd=project, check=False)
    assert again.returncode == 2 and f"run {run_id} is not running (its status: cancelled)" in again.stderr

    (project / "go").touch()
    resumed = run_json(project, "--resume", run_id)
    assert statuses(resumed) == {"first": "reused", "slow": "success", "last": "success"}
    assert ran.read_text().split() == ["first", "slow", "slow", "slow-done", "last"]


@orchestrator_only
def test_a_run_without_a_heartbeat_for_two_minutes_is_shown_died_wherever_it_ran(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          p:
            steps:
              - {name: one, shell: echo one}
        """
    )
    run_id = run_json(project, "p")["run_id"]
    # the run as a pod that vanished mid-run leaves it: running, on a host that never comes back
    with closing(sqlite3.connect(project / ".elt" / "elt.db")) as db, db:
        db.execute(
            "UPDATE runs SET status = 'running', ended_at = NULL, host = 'elt-run-7f9c-gone', pid = 1, "
            "heartbeat_at = '2026-01-01T00:00:00.000+00:00' WHERE run_id = ?", (run_id,),
        )  # fmt: skip
        db.execute("UPDATE steps SET status = 'running' WHERE run_id = ?", (run_id,))
    listed = json.loads(run_elt("runs", "list", "--format", "json", cwd=project).stdout)[0]
    assert listed["status"] == "died" and listed["steps"][0]["status"] == "died"
    assert "no heartbeat from the elt process (pid 1 on elt-run-7f9c-gone) since 2026-01" in listed["error"]
    too_late = run_elt("runs", "cancel", run_id, cwd=project, check=False)
    assert "is not running (its status: died)" in too_late.stderr


def test_runs_show_reports_rows_per_step_of_a_real_sync(write_project) -> None:
    project = write_project(
        """
        version: 1
        plugins:
          extractors:
            - name: tap-files
              config:
                files: [{entity: items, path: items.csv, keys: [id]}]
          loaders:
            - name: target-duckdb
              config: {path: warehouse.duckdb}
        pipelines:
          load:
            steps:
              - {name: items, sync: tap-files target-duckdb}
              - {name: count, shell: echo done, needs: [items]}
        """
    )
    (project / "items.csv").write_text("id,name\n" + "".join(f"{i},item {i}\n" for i in range(1, 43)))
    result = run_json(project, "load")
    shown = show(project, result["run_id"])
    rows = {s["name"]: s["rows"] for s in shown["steps"]}
    assert rows == {"items": 42, "count": None}
    assert shown["steps"][0]["summary"]["streams"] == {"items": {"rows": 42}}
    logs = run_elt("runs", "logs", result["run_id"], "--step", "count", cwd=project).stdout
    assert "done" in logs and "count · attempt 1 · success" in logs


def test_var_overrides_a_pipeline_variable(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          greet:
            variables: {who: world}
            steps:
              - {name: hello, shell: "echo hello ${vars.who} >> out.txt"}
        """
    )
    run_json(project, "greet")
    run_json(project, "greet", "--var", "who=elt")
    assert (project / "out.txt").read_text().splitlines() == ["hello world", "hello elt"]


@orchestrator_only
def test_validate_names_an_unknown_step_key_and_a_need_of_no_step(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          p:
            steps:
              - {name: a, shell: "true", retrys: 2}
              - {name: b, shell: "true", needs: [c]}
        """
    )
    proc = run_elt("validate", cwd=project, check=False)
    assert proc.returncode == 2
    assert "elt.yml:5: key 'pipelines.p.steps[0].retrys': unknown key" in proc.stderr
    assert "did you mean 'retries'?" in proc.stderr
    assert "elt.yml:6: key 'pipelines.p.steps[1].needs[0]': expected the name of a step of 'p', got 'c'" in (
        proc.stderr
    )


@orchestrator_only
def test_validate_accepts_the_issues_example(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          daily:
            max_parallel: 4
            steps:
              - {name: load_shop, sync: tap-files target-duckdb}
              - {name: load_crm,  sync: tap-postgres target-duckdb}
              - {name: models, dbt: build --select marts+, retries: {count: 2, delay: 10}}
              - {name: score, python: blocks/score.py:score, needs: [models], cache: {expire: 1h}}
              - {name: ping, shell: "curl -fsS $HEALTHCHECK_URL", if: always}
        """
    )
    assert "is valid" in run_elt("validate", cwd=project).stdout


def test_a_sync_whose_state_id_another_run_holds_refuses_or_waits(write_project) -> None:
    project = write_project(
        """
        version: 1
        plugins:
          extractors:
            - name: tap-files
              config:
                files: [{entity: items, path: items.csv, keys: [id]}]
          loaders:
            - name: target-duckdb
              config: {path: warehouse.duckdb}
        pipelines:
          load:
            steps:
              - {name: items, sync: tap-files target-duckdb}
        """
    )
    (project / "items.csv").write_text("id\n1\n")
    holder = subprocess.Popen([
        str(BIN / "python"), "-c",
        "import time; from pathlib import Path; from elt.project import load_project\n"
        "from elt.state.settings import open_state_store\n"
        "store = open_state_store(load_project(Path('.')))\n"
        "with store.lock('default:tap-files-to-target-duckdb', run_id='other-run'):\n"
        "    print('held', flush=True); time.sleep(4)",
    ], cwd=project, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    refused = run_elt("run", "load", cwd=project, check=False)
    assert refused.returncode == 1
    assert "is locked by run other-run" in refused.stderr and "--wait" in refused.stderr
    waited = run_json(project, "load", "--wait")
    assert statuses(waited) == {"items": "success"}
    holder.wait()


def test_caching_skips_an_unchanged_python_step_and_reruns_a_changed_one(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          p:
            steps:
              - {name: score, python: blocks/score.py:score, cache: {expire: 1h}}
        """
    )
    (project / "blocks").mkdir()
    block = project / "blocks" / "score.py"
    block.write_text("def score():\n    return [1, 2]\n")
    assert statuses(run_json(project, "p")) == {"score": "success"}
    cached = run_json(project, "p")
    assert statuses(cached) == {"score": "cached"}
    assert show(project, cached["run_id"])["steps"][0]["output"]["value"] == [1, 2]
    assert statuses(run_json(project, "p", "--no-cache")) == {"score": "success"}
    block.write_text("def score():\n    return [3]\n")
    assert statuses(run_json(project, "p")) == {"score": "success"}


def test_new_data_two_steps_up_reruns_a_cached_step(write_project) -> None:
    """The middle step reports the same output whatever the data (as a dbt build does); the first step's
    output is part of the cached step's fingerprint all the same."""
    project = write_project(
        """
        version: 1
        pipelines:
          p:
            steps:
              - {name: load, shell: 'cat data.txt > "$ELT_STEP_OUTPUT"'}
              - {name: build, shell: "true", needs: [load]}
              - {name: score, python: blocks/score.py:score, needs: [build], cache: {expire: 1h}}
              - {name: other, shell: "true"}
        """
    )
    (project / "blocks").mkdir()
    (project / "blocks" / "score.py").write_text("def score():\n    return 1\n")
    (project / "data.txt").write_text('{"rows": 10}')
    assert statuses(run_json(project, "p"))["score"] == "success"
    assert statuses(run_json(project, "p"))["score"] == "cached"
    (project / "data.txt").write_text('{"rows": 12}')
    assert statuses(run_json(project, "p"))["score"] == "success"
    assert statuses(run_json(project, "p", "--only", "score"))["score"] == "cached"


@orchestrator_only
def test_only_and_from_run_part_of_a_pipeline(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          p:
            steps:
              - {name: a, shell: echo a >> ran.txt}
              - {name: b, shell: echo b >> ran.txt, needs: [a]}
              - {name: c, shell: echo c >> ran.txt, needs: [b]}
        """
    )
    assert set(statuses(run_json(project, "p", "--only", "b"))) == {"b"}
    assert (project / "ran.txt").read_text().split() == ["b"]
    assert set(statuses(run_json(project, "p", "--from", "b"))) == {"b", "c"}
    assert (project / "ran.txt").read_text().split() == ["b", "b", "c"]


def test_a_pipeline_step_runs_another_pipeline_inside_the_run(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          inner:
            variables: {who: nobody}
            steps:
              - {name: hello, shell: 'echo "hello ${vars.who}" >> ran.txt'}
          outer:
            variables: {who: world}
            steps:
              - {name: first, shell: echo first >> ran.txt}
              - {name: sub, pipeline: inner, needs: [first]}
              - {name: last, shell: echo last >> ran.txt, needs: [sub], for_each: "${vars.items}"}
            """.replace("${vars.items}", "[1, 2]")
    )
    result = run_json(project, "outer", "--var", "who=elt")
    assert all(status == "success" for status in statuses(result).values()), statuses(result)
    lines = (project / "ran.txt").read_text().splitlines()
    assert lines[:2] == ["first", "hello elt"] and sorted(lines[2:]) == ["last", "last"]


@orchestrator_only
def test_a_terminal_gets_a_live_line_of_running_steps(write_project) -> None:
    import pty

    project = write_project(
        """
        version: 1
        pipelines:
          p:
            steps:
              - {name: slow, shell: sleep 1.5}
              - {name: after, shell: "true", needs: [slow]}
        """
    )
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "ELT_ENVIRONMENT"}
    proc = subprocess.Popen(
        [str(BIN / "elt"), "run", "p"], cwd=project, env=env, stdin=subprocess.DEVNULL,
        stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    text = seen.decode("utf-8", "replace")
    assert "\r\x1b[2Krunning: slow │ 0/2 steps done" in text  # redrawn in place while `slow` runs
    assert '{"ts"' not in text  # people on a terminal get lines, not JSON
    assert "after" in text and "succeeded" in text


def test_dbt_steps_and_elt_build_refuse_while_another_run_holds_the_dbt_project(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          models:
            steps:
              - {name: build, dbt: build}
        """
    )
    (project / "models").mkdir()
    (project / "models" / "dbt_project.yml").write_text("name: shop\nversion: '1'\nprofile: elt\n")
    holder = subprocess.Popen([
        str(BIN / "python"), "-c",
        "import time; from pathlib import Path\n"
        "from elt.project import load_project; from elt.state.settings import open_state_store\n"
        "from elt.steps.dbt import dbt_lock_id\n"
        "store = open_state_store(load_project(Path('.')))\n"
        "with store.lock(dbt_lock_id(load_project(Path('.'))), run_id='nightly-run'):\n"
        "    print('held', flush=True); time.sleep(6)",
    ], cwd=project, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for args in (("run", "models"), ("build",)):
            refused = run_elt(*args, cwd=project, check=False)
            assert refused.returncode == 1, refused.stderr
            assert "is locked by run nightly-run" in refused.stderr, refused.stderr
    finally:
        holder.kill()


def test_runs_logs_follow_prints_lines_while_the_step_runs(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          p:
            steps:
              - {name: talk, shell: "for i in 1 2 3 4; do echo line $i; sleep 0.5; done"}
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "ELT_ENVIRONMENT"}
    run = subprocess.Popen([str(BIN / "elt"), "run", "p"], cwd=project, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        run_id = None
        while run_id is None and time.monotonic() < deadline:
            listed = json.loads(run_elt("runs", "list", "--format", "json", cwd=project).stdout or "[]")
            running = [r for r in listed if r["status"] == "running"]
            run_id = running[0]["run_id"] if running else None
            time.sleep(0.1)
        assert run_id, "the run never showed up as running"
        follow = subprocess.Popen([str(BIN / "elt"), "runs", "logs", run_id, "--step", "talk", "--follow"],
                                  cwd=project, env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert follow.stdout is not None
        first = next(line for line in follow.stdout if " line " in line)
        assert first.strip().endswith("line 1")  # each line of a log starts with its time
        assert run.poll() is None  # seen while the step was still running
        rest = follow.stdout.read()
        assert follow.wait(timeout=30) == 0  # it ends when the run does
        assert "line 4" in rest
    finally:
        run.wait(timeout=60)


def test_concurrency_caps_instances_of_a_step_and_steps_sharing_a_key(write_project) -> None:
    # each attempt writes its start and end times; overlapping intervals ran at once
    stamp = (
        'echo "$ELT_STEP $(date +%s.%N) start" >> times.txt; sleep 0.6; '
        'echo "$ELT_STEP $(date +%s.%N) end" >> times.txt'
    )
    project = write_project(f"""
        version: 1
        pipelines:
          p:
            max_parallel: 8
            steps:
              - {{name: each, shell: '{stamp}', for_each: [1, 2, 3], concurrency: 1}}
              - {{name: a, shell: '{stamp}', concurrency: {{key: db, limit: 2}}}}
              - {{name: b, shell: '{stamp}', concurrency: {{key: db, limit: 2}}}}
              - {{name: c, shell: '{stamp}', concurrency: {{key: db, limit: 2}}}}
        """)  # fmt: skip

    result = run_json(project, "p")

    assert set(statuses(result).values()) == {"success"}
    spans: dict[str, list[float]] = {}
    for line in (project / "times.txt").read_text().splitlines():
        step, at, _ = line.split()
        spans.setdefault(step, []).append(float(at))

    def most_at_once(names: list[str]) -> int:
        events = sorted((t, +1 if i == 0 else -1) for n in names for i, t in enumerate(spans[n]))
        running = peak = 0
        for _, change in events:
            running += change
            peak = max(peak, running)
        return peak

    assert most_at_once(["each[0]", "each[1]", "each[2]"]) == 1
    assert most_at_once(["a", "b", "c"]) == 2


def test_a_pipeline_step_passes_variables_and_nested_steps_read_their_siblings_outputs(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          child:
            variables: {who: nobody, times: 1}
            steps:
              - {name: list, shell: 'echo "[\\"${vars.who}\\", \\"again\\"]" > $ELT_STEP_OUTPUT'}
              - name: each
                shell: 'echo "$ELT_ITEM x ${vars.times}" >> ran.txt'
                needs: [list]
                for_each: "${steps.list.output}"
          parent:
            variables: {name: elt}
            steps:
              - {name: sub, pipeline: child, variables: {who: "${vars.name}", times: 2}}
        """
    )

    result = run_json(project, "parent")

    assert set(statuses(result).values()) == {"success"}, statuses(result)
    assert sorted((project / "ran.txt").read_text().splitlines()) == ["again x 2", "elt x 2"]
