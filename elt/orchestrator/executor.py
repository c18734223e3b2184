"""Run a pipeline's DAG: ready steps in parallel (up to `max_parallel`), each attempt in its own process.

The executor is one loop in elt's process: it starts attempts (`python -m elt.orchestrator.attempt`),
polls them, kills a timed-out attempt's process group, schedules retries with their backoff, expands
`for_each` into instances once the list is known, and skips what a failure makes pointless. Every
run, step and attempt is recorded in the system database as it happens, so that a run whose elt
process died shows as `died` and can be resumed (`elt run --resume RUN`).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from elt.errors import EltError
from elt.logs import RateMeter, Reporter
from elt.notify import payload, send
from elt.orchestrator.dag import build_graph, select_steps
from elt.orchestrator.executors import AttemptHandle, executor_settings, start_attempt
from elt.orchestrator.model import STEP_OUTPUT, PipelineSpec, StepSpec
from elt.project import Project
from elt.runs import AttemptRecord, RunLog, RunRecord, StepRecord, last_outputs, now

SUCCEEDED = ("success", "cached", "reused")
TERMINAL = (*SUCCEEDED, "failed", "skipped")
_POLL_SECONDS = 0.05
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\[\]-]")  # characters a step's name loses in file names and task ids
_CANCEL_CHECK_SECONDS = 0.5  # how often a run looks for a cancel request (`elt runs cancel`, the API)


@dataclass(frozen=True)
class RunOptions:
    """How to run: a part of the pipeline, resuming a run, cache and lock behaviour."""

    only: tuple[str, ...] = ()
    start: str | None = None  # --from
    no_cache: bool = False
    wait: bool = False
    resume: RunRecord | None = None
    request: dict[str, Any] = field(default_factory=dict)  # stored with the run, for --resume
    run_id: str | None = None  # chosen by whoever started the run (the API answers with it); else new


@dataclass(frozen=True)
class StepResult:
    """What became of one step (or one `for_each` instance) in a run."""

    name: str
    kind: str
    status: str
    seconds: float
    attempts: int = 0
    rows: int | None = None
    bytes: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    output: dict[str, Any] | None = None
    log_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "status": self.status, "seconds": round(self.seconds, 3),
            "attempts": self.attempts, "rows": self.rows, "bytes": self.bytes, "summary": self.summary,
            "error": self.error, "log_file": self.log_file,
        }  # fmt: skip


@dataclass(frozen=True)
class RunResult:
    run_id: str
    pipeline: str
    status: str
    seconds: float
    steps: list[StepResult]

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "steps": [s.to_json() for s in self.steps],
        }

    def failure(self) -> StepResult | None:
        """The first step that failed, if any."""
        return next((s for s in self.steps if s.status == "failed"), None)


@dataclass
class _Task:
    """One step or `for_each` instance being run: its attempts and where they write."""

    name: str
    node: str
    spec: StepSpec
    position: int
    item: Any = None
    attempt: int = 0
    lost: int = 0  # attempts that died with their worker (not counted against `retries:`)
    handle: AttemptHandle | None = None
    worker: str | None = None  # the celery worker running the attempt, once it reports
    started: float = 0.0
    first_started: float = 0.0
    started_at: str | None = None
    not_before: float = 0.0
    log_file: Path | None = None
    state: str = "waiting"  # waiting | running | done
    result: StepResult | None = None


def run_pipeline(
    project: Project,
    pipeline: PipelineSpec,
    reporter: Reporter,
    options: RunOptions | None = None,
    on_step: Callable[[StepResult], None] | None = None,
) -> RunResult:
    """Run `pipeline` and record it; returns the result whether steps failed or not."""
    return _Execution(project, pipeline, reporter, options or RunOptions(), on_step).run()


class _Execution:
    def __init__(
        self,
        project: Project,
        pipeline: PipelineSpec,
        reporter: Reporter,
        options: RunOptions,
        on_step: Callable[[StepResult], None] | None,
    ) -> None:
        self.project = project
        self.pipeline = pipeline
        self.reporter = reporter
        self.options = options
        self.on_step = on_step
        self.graph = build_graph(project, pipeline)
        self.selected = select_steps(self.graph, options.only, options.start)
        self.runs = RunLog(project.system_db)
        self.executor = executor_settings(project)
        self.status: dict[str, str] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, list[_Task]] = {}
        self.results: dict[str, StepResult] = {}
        self.stopped_by: str | None = None
        self.resources = {n: _resources(project, self.graph.nodes[n]["spec"]) for n in self.graph}
        self.limits = {
            n: found for n in self.graph if (found := concurrency_limit(n, self.graph.nodes[n]["spec"]))
        }
        self.rows_done = 0
        self.meter = RateMeter()
        self.progress_at = 0.0
        self.notifying: list[threading.Thread] = []

    # -- the loop ------------------------------------------------------------------------------------

    def run(self) -> RunResult:
        self.record = self.runs.start(
            "run", self.pipeline.name, self.project.environment, self.options.request, self.options.run_id
        )
        self.logs_dir = self.project.system_dir / "logs" / self.record.run_id
        self.work_dir = self.project.system_dir / "runs" / self.record.run_id
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.reporter.event("run_started", f"▶ run {self.record.run_id} of {self.pipeline.name}",
                            run_id=self.record.run_id, pipeline=self.pipeline.name)  # fmt: skip
        self._plan()
        checked = time.monotonic()
        cancelled: dict[str, Any] | None = None
        try:
            while self._step_loop():
                time.sleep(_POLL_SECONDS)
                if time.monotonic() - checked >= _CANCEL_CHECK_SECONDS:
                    checked = time.monotonic()
                    cancelled = self.runs.cancel_request(self.record.run_id)
                    if cancelled is not None:
                        self._cancel(str(cancelled.get("by") or "someone"))
                        break
        except BaseException:
            self._kill_all()
            self._mark_interrupted()
            self.reporter.done_progress()
            self.runs.finish(self.record, "failed", time.monotonic() - started, {}, "interrupted")
            raise
        self.reporter.done_progress()
        ordered = sorted(self.results.values(), key=lambda r: self._position(r.name))
        failed = any(r.status == "failed" for r in ordered)
        status = "cancelled" if cancelled else "failed" if failed else "success"
        result = RunResult(
            self.record.run_id, self.pipeline.name, status, time.monotonic() - started, ordered
        )
        failure = result.failure()
        error = f"step '{failure.name}' failed: {failure.error}" if failure else None
        if cancelled:
            error = f"cancelled by {cancelled.get('by')} at {cancelled.get('at')}"
        self.runs.finish(self.record, status, result.seconds, result.to_json(), error)
        from elt.orchestrator.metrics import write_metrics

        write_metrics(self.project.system_dir / "metrics.prom", result)
        self._notify(
            "failure" if failed or cancelled else "success", status, error=error,
            steps=[{"name": s.name, "status": s.status, "rows": s.rows, "seconds": round(s.seconds, 3)}
                   for s in ordered],
            seconds=result.seconds,
        )  # fmt: skip
        for thread in self.notifying:
            thread.join(timeout=60)
        return result

    def _notify(self, event: str, status: str, **details: Any) -> None:
        """Tell the pipeline's webhooks, in the background: a slow hook holds no step back."""
        hooks = [hook for hook in self.pipeline.notify if event in hook.events]
        if not hooks:
            return
        from dataclasses import replace

        from elt.secrets import resolve_secrets

        try:  # `${secret:…}` in a hook's url or headers: resolved only when it is called
            hooks = [replace(hook, url=resolve_secrets(self.project, hook.url, "notify"),
                             headers=resolve_secrets(self.project, dict(hook.headers), "notify"))
                     for hook in hooks]  # fmt: skip
        except EltError as error:
            self.reporter.event("notify_failed", f"warning: {error}", run_id=self.record.run_id)
            return
        body = payload(
            event, pipeline=self.pipeline.name, run_id=self.record.run_id,
            environment=self.project.environment, status=status, started_at=self.record.started_at,
            ended_at=now() if event != "retry" else None, **details,
        )  # fmt: skip

        def warn(message: str) -> None:
            self.reporter.event("notify_failed", f"warning: {message}", run_id=self.record.run_id)

        thread = threading.Thread(
            target=send, args=(hooks, event, body), kwargs={"warn": warn, "redact": self.reporter.redact},
            name=f"notify-{event}", daemon=True,
        )  # fmt: skip
        thread.start()
        self.notifying.append(thread)

    def _plan(self) -> None:
        """Every step recorded as pending; steps reused from the resumed run or not selected set aside."""
        from elt.blocks import write_block_sources

        # dbt parses every model at each command: one selecting from a block's table must find it
        # declared before the block first runs
        write_block_sources(self.project)
        reused = self._reusable()
        excluded: list[str] = []
        for node in self.graph:
            spec: StepSpec = self.graph.nodes[node]["spec"]
            position = self._position(node)
            if node in reused:
                previous = reused[node]
                self.status[node] = "reused"
                self.outputs[node] = previous.output or {}
                result = StepResult(node, spec.kind, "reused", 0.0, 0, previous.rows, previous.bytes,
                                    previous.summary, None, previous.output, previous.log_file)  # fmt: skip
                self._finish_record(result, position)
            elif node not in self.selected:
                self.status[node] = "excluded"
                excluded.append(node)
            else:
                self.status[node] = "pending"
                self.runs.step(self.record, StepRecord(position, node, spec.kind, "pending"))
        # Steps left out with --only/--from: the selected ones read their outputs of the last run
        self.outputs.update(last_outputs(self.project.system_db, self.pipeline.name, excluded))

    def _reusable(self) -> dict[str, StepRecord]:
        previous = self.options.resume
        if previous is None:
            return {}
        done = {s.name: s for s in previous.steps if s.status in SUCCEEDED}
        bad = {n for n in self.graph if n not in done}
        rerun = bad | {d for n in bad for d in nx.descendants(self.graph, n)}
        return {n: done[n] for n in self.graph if n not in rerun}

    def _step_loop(self) -> bool:
        """One turn: decide ready steps, start what may start, collect what ended. False when all done."""
        for node in nx.topological_sort(self.graph):
            if self.status[node] == "pending":
                self._decide(node)
        self._start_ready()
        self._poll()
        self._progress()
        return any(s in ("pending", "queued") for s in self.status.values())

    def _decide(self, node: str) -> None:
        preds = list(self.graph.predecessors(node))
        states = [self.status[p] for p in preds]
        if any(s not in (*TERMINAL, "excluded") for s in states):
            return
        spec: StepSpec = self.graph.nodes[node]["spec"]
        bad = [p for p in preds if self.status[p] in ("failed", "skipped")]
        if spec.condition == "success":
            if self.stopped_by is not None:
                return self._skip(node, f"the run stopped after step '{self.stopped_by}' failed")
            if bad:
                return self._skip(node, f"upstream step '{bad[0]}' {self.status[bad[0]]}")
        elif spec.condition == "failure" and not bad and not (not preds and self.stopped_by):
            return self._skip(node, "no upstream step failed")
        if spec.kind == "pipeline":
            return self._complete_barrier(node, bad)
        items = self._items(node, spec)
        if isinstance(items, str):
            self.status[node] = "queued"
            return self._finish_node(node, StepResult(node, spec.kind, "failed", 0.0, error=items))
        position = self._position(node)
        if items is None:
            self.tasks[node] = [_Task(node, node, spec, position)]
        else:
            self.tasks[node] = [_Task(f"{node}[{i}]", node, spec, position + i + 1, item)
                                for i, item in enumerate(items)]  # fmt: skip
        self.status[node] = "queued"
        if not self.tasks[node]:
            self._node_done(node)

    def _items(self, node: str, spec: StepSpec) -> list[Any] | str | None:
        """The `for_each` list (None without for_each), or an error message."""
        value = spec.for_each
        if value is None:
            return None
        if isinstance(value, str):
            match = STEP_OUTPUT.match(value)
            if match:
                source = match.group(1)
                if source not in self.outputs:
                    return f"for_each: no output of step '{source}' (is it upstream of '{node}'?)"
                value = self.outputs[source].get("value")
            else:
                try:
                    value = json.loads(value)
                except ValueError:
                    value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            return f"for_each: expected a list, got {type(value).__name__} {value!r}"
        return value

    def _skip(self, node: str, reason: str) -> None:
        spec: StepSpec = self.graph.nodes[node]["spec"]
        self.status[node] = "queued"
        self._finish_node(node, StepResult(node, spec.kind, "skipped", 0.0, error=reason))

    def _complete_barrier(self, node: str, bad: list[str]) -> None:
        """A `pipeline:` step ends when its pipeline's steps (its upstream) have."""
        spec: StepSpec = self.graph.nodes[node]["spec"]
        children = list(spec.options.get("steps", []))
        value = {c: self.outputs.get(c, {}).get("value") for c in children}
        rows = sum(self.outputs.get(c, {}).get("rows") or 0 for c in children)
        status = "failed" if bad else "success"
        error = f"step '{bad[0]}' of pipeline '{spec.spec}' {self.status[bad[0]]}" if bad else None
        self.status[node] = "queued"
        output = {"rows": rows, "value": value, "summary": {"pipeline": spec.spec}}
        self._finish_node(node, StepResult(node, "pipeline", status, 0.0, 0, rows, None,
                                           {"pipeline": spec.spec}, error, output))  # fmt: skip

    # -- starting and polling attempts -----------------------------------------------------------------

    def _start_ready(self) -> None:
        running = [t for ts in self.tasks.values() for t in ts if t.state == "running"]
        busy = {r for t in running for r in self.resources[t.node]}
        held = Counter(self.limits[t.node][0] for t in running if t.node in self.limits)
        limit = max(1, self.pipeline.max_parallel)
        clock = time.monotonic()
        for node in nx.topological_sort(self.graph):
            for task in self.tasks.get(node, []):
                if len(running) >= limit:
                    return
                if task.state != "waiting" or task.not_before > clock:
                    continue
                if self.stopped_by and task.attempt == 0 and task.spec.condition == "success":
                    task.state = "done"
                    task.result = StepResult(
                        task.name,
                        task.spec.kind,
                        "skipped",
                        0.0,
                        error=f"the run stopped after step '{self.stopped_by}' failed",
                    )
                    self._task_done(task)
                    continue
                if busy & self.resources[node]:
                    continue
                capped = self.limits.get(node)  # `concurrency:`
                if capped is not None and held[capped[0]] >= capped[1]:
                    continue
                self._launch(task)
                running.append(task)
                busy |= self.resources[node]
                if capped is not None:
                    held[capped[0]] += 1

    def _launch(self, task: _Task) -> None:
        task.attempt += 1
        safe = _UNSAFE.sub("_", task.name)
        task.log_file = self.logs_dir / f"{safe}.{task.attempt}.log"
        options = {**task.spec.options, "wait": self.options.wait}
        if task.spec.timeout is not None and task.spec.kind == "sync":
            options["timeout"] = task.spec.timeout
        request = {
            "project_dir": str(self.project.root),
            "environment": self.project.environment,
            "run_id": self.record.run_id,
            "pipeline": self.pipeline.name,
            "step": task.name,
            "kind": task.spec.kind,
            "spec": task.spec.spec,
            "options": options,
            "variables": self.pipeline.variables if task.spec.variables is None else task.spec.variables,
            "upstream": {p: self.outputs.get(p, {}) for p in self.graph.predecessors(task.node)},
            "earlier": {p: self.outputs.get(p, {}) for p in nx.ancestors(self.graph, task.node)},
            "item": task.item,
            "cache_expire": task.spec.cache_expire,
            "no_cache": self.options.no_cache,
            "timeout_seconds": task.spec.timeout,  # a worker enforces it too
        }
        task.worker = None
        task.handle = start_attempt(
            self.executor, self.project, request, self.work_dir, task.log_file,
            queue=self._queue(task.spec),
            task_id=attempt_task_id(self.record.run_id, task.name, task.attempt),
        )  # fmt: skip
        task.state, task.started, task.started_at = "running", time.monotonic(), now()
        if task.attempt == 1:
            task.first_started = task.started
        self.runs.attempt(
            self.record.run_id,
            AttemptRecord(task.name, task.attempt, "running", task.started_at, log_file=str(task.log_file)),
        )
        self.runs.step(self.record, StepRecord(task.position, task.name, task.spec.kind, "running",
                                               task.started_at, attempts=task.attempt,
                                               log_file=str(task.log_file)))  # fmt: skip
        what = f"{task.spec.kind}: {task.spec.spec}"
        again = f" (attempt {task.attempt})" if task.attempt > 1 else ""
        if self.executor.kind != "local":
            what += f", to queue {self._queue(task.spec)}"
        self.reporter.event("step_started", f"▶ {task.name} ({what}){again}", run_id=self.record.run_id,
                            step=task.name, kind=task.spec.kind, attempt=task.attempt)  # fmt: skip

    def _poll(self) -> None:
        for tasks in list(self.tasks.values()):
            for task in tasks:
                if task.state == "running":
                    self._check(task)

    def _queue(self, spec: StepSpec) -> str:
        """The queue a step goes to: its `queue:`, else its pipeline's, else the executor's."""
        entry = (self.project.data.get("pipelines") or {}).get(self.pipeline.name) or {}
        return str(spec.options.get("queue") or entry.get("queue") or self.executor.queue)

    def _check(self, task: _Task) -> None:
        assert task.handle is not None
        polled = task.handle.poll()
        if polled.lost is not None:
            self._record_lost(task, polled.lost, polled.worker)
        elif polled.worker is not None and polled.worker != task.worker:
            task.worker = polled.worker
            running = AttemptRecord(task.name, task.attempt, "running", task.started_at or now(),
                                    log_file=str(task.log_file), worker=task.worker)  # fmt: skip
            self.runs.attempt(self.record.run_id, running)
        outcome = polled.outcome
        timeout, since = task.spec.timeout, task.handle.running_since
        if outcome is None:
            if timeout is None or since is None or time.monotonic() - since <= timeout:
                return
            task.handle.cancel()
            outcome = {"ok": False, "error": f"timed out after {timeout:g}s", "retryable": True}
        if "log" in outcome and task.log_file is not None:  # a worker without the project's folder
            task.log_file.write_text(str(outcome.pop("log")), encoding="utf-8")
        seconds = time.monotonic() - task.started
        ok = bool(outcome.get("ok"))
        output = outcome.get("output") if ok else None
        cached = bool(output and output.get("cached"))
        status = "cached" if cached else ("success" if ok else "failed")
        self.runs.attempt(self.record.run_id, AttemptRecord(
            task.name, task.attempt, status, task.started_at or now(), now(), seconds,
            outcome.get("error"), str(task.log_file), task.worker))  # fmt: skip
        retry = task.spec.retries
        if not ok and outcome.get("retryable", True) and task.attempt - task.lost <= retry.count:
            delay = retry.delay_before(task.attempt - task.lost)
            delay += delay * retry.jitter * random.random()
            task.state, task.not_before = "waiting", time.monotonic() + delay
            self.reporter.event(
                "step_retry", f"↻ {task.name} failed (attempt {task.attempt}), retrying in {delay:.1f}s: "
                f"{_first_line(outcome.get('error'))}", run_id=self.record.run_id, step=task.name,
                attempt=task.attempt, delay=round(delay, 3), error=outcome.get("error"),
            )  # fmt: skip
            self._notify("retry", "running", step=task.name, attempt=task.attempt, error=outcome.get("error"))
            return
        task.state = "done"
        output = output or None
        task.result = StepResult(
            task.name, task.spec.kind, status, time.monotonic() - task.first_started, task.attempt,
            output.get("rows") if output else None, output.get("bytes") if output else None,
            (output or {}).get("summary") or {}, outcome.get("error"), output, str(task.log_file),
        )  # fmt: skip
        self._task_done(task)

    def _record_lost(self, task: _Task, why: str, worker: str | None) -> None:
        """A worker died running the task and the broker started it again on `worker`: the attempt that
        died is recorded as such, and the step goes on as the next attempt."""
        self.runs.attempt(self.record.run_id, AttemptRecord(
            task.name, task.attempt, "died", task.started_at or now(), now(),
            time.monotonic() - task.started, why, str(task.log_file), task.worker))  # fmt: skip
        self.reporter.event("step_lost", f"↻ {task.name}: {why}", run_id=self.record.run_id, step=task.name,
                            attempt=task.attempt)  # fmt: skip
        task.attempt += 1
        task.lost += 1
        task.started, task.started_at, task.worker = time.monotonic(), now(), worker
        self.runs.attempt(self.record.run_id, AttemptRecord(
            task.name, task.attempt, "running", task.started_at, log_file=str(task.log_file),
            worker=worker))  # fmt: skip
        self.runs.step(self.record, StepRecord(task.position, task.name, task.spec.kind, "running",
                                               task.started_at, attempts=task.attempt,
                                               log_file=str(task.log_file)))  # fmt: skip

    def _task_done(self, task: _Task) -> None:
        assert task.result is not None
        if task.name != task.node:  # a for_each instance: recorded alone, the node when all are done
            self._finish_record(task.result, task.position)
        if all(t.state == "done" for t in self.tasks[task.node]):
            self._node_done(task.node)

    def _node_done(self, node: str) -> None:
        spec: StepSpec = self.graph.nodes[node]["spec"]
        tasks = self.tasks[node]
        results = [t.result for t in tasks if t.result is not None]
        if spec.for_each is None and results:
            return self._finish_node(node, results[0])
        failed = [r for r in results if r.status == "failed"]
        skipped = [r for r in results if r.status == "skipped"]
        status = (
            "failed" if failed else ("skipped" if skipped and len(skipped) == len(results) else "success")
        )
        counted = [r.rows for r in results if r.rows is not None]
        rows = sum(counted) if counted else None
        value = [(r.output or {}).get("value") for r in results]
        output = {"rows": rows, "value": value, "summary": {"instances": len(results)}}
        seconds = max((r.seconds for r in results), default=0.0)
        error = f"{len(failed)} of {len(results)} instance(s) failed: {failed[0].error}" if failed else None
        self._finish_node(node, StepResult(node, spec.kind, status, seconds, sum(r.attempts for r in results),
                                           rows, None, {"instances": len(results)}, error,
                                           output if status == "success" else None))  # fmt: skip

    def _finish_node(self, node: str, result: StepResult) -> None:
        spec: StepSpec = self.graph.nodes[node]["spec"]
        self.status[node] = result.status
        if result.status in SUCCEEDED:
            self.outputs[node] = result.output or {}
            self.rows_done += result.rows or 0
        self._finish_record(result, self._position(node))
        if result.status == "failed" and spec.on_failure != "continue" and self.stopped_by is None:
            self.stopped_by = node

    def _finish_record(self, result: StepResult, position: int) -> None:
        self.results[result.name] = result
        self.runs.step(self.record, StepRecord(
            position, result.name, result.kind, result.status, None, now(), result.seconds,
            result.summary, result.error, result.rows, result.bytes, result.attempts, result.output,
            result.log_file))  # fmt: skip
        icon = {"failed": "✘", "skipped": "–", "cancelled": "■"}.get(result.status, "✔")
        detail = f": {_first_line(result.error)}" if result.error else ""
        rows = f", {result.rows:,} rows" if result.rows else ""
        self.reporter.event(
            f"step_{result.status}",
            f"{icon} {result.name} {result.status} ({result.seconds:.1f}s{rows}){detail}",
            run_id=self.record.run_id, step=result.name, status=result.status,
            seconds=round(result.seconds, 3), rows=result.rows, attempts=result.attempts, error=result.error,
        )  # fmt: skip
        if self.on_step is not None:
            self.on_step(result)

    def _progress(self) -> None:
        running = [t.name for ts in self.tasks.values() for t in ts if t.state == "running"]
        clock = time.monotonic()
        if not running or clock - self.progress_at < 0.5:
            return
        self.progress_at = clock
        done = sum(1 for s in self.status.values() if s in TERMINAL)
        rate = self.meter.rate(self.rows_done)
        self.reporter.progress(f"running: {', '.join(running)} │ {done}/{len(self.selected)} steps done │ "
                               f"{self.rows_done:,} rows ({rate:,.0f} rows/s)")  # fmt: skip

    def _cancel(self, by: str) -> None:
        """Stop the run as asked: its running attempts are killed (on workers too), and they and every
        step not yet ended are recorded `cancelled`; `elt run --resume` runs them again."""
        self.reporter.event("run_cancelling", f"■ run {self.record.run_id} cancelled by {by}: stopping",
                            run_id=self.record.run_id, by=by)  # fmt: skip
        self._kill_all()
        error = f"cancelled by {by}"
        for tasks in self.tasks.values():
            for task in tasks:
                if task.state != "running":
                    continue
                task.state = "done"
                self._cut_short(task, "cancelled", error)
                if task.name != task.node:  # a for_each instance: a row of its own
                    self._finish_record(StepResult(
                        task.name, task.spec.kind, "cancelled", time.monotonic() - task.first_started,
                        task.attempt, error=error, log_file=str(task.log_file)), task.position)  # fmt: skip
        for node in self.graph:
            if self.status[node] in ("pending", "queued"):
                spec: StepSpec = self.graph.nodes[node]["spec"]
                tasks = self.tasks.get(node, [])
                began = [t for t in tasks if t.attempt]
                seconds = time.monotonic() - min(t.first_started for t in began) if began else 0.0
                log = str(began[0].log_file) if len(tasks) == 1 and began else None
                self.status[node] = "cancelled"
                why = error if began else f"not started: {error}"
                self._finish_record(StepResult(node, spec.kind, "cancelled", seconds,
                                               sum(t.attempt for t in tasks), error=why, log_file=log),
                                    self._position(node))  # fmt: skip

    def _kill_all(self) -> None:
        for tasks in self.tasks.values():
            for task in tasks:
                if task.state == "running" and task.handle is not None:
                    task.handle.cancel()

    def _mark_interrupted(self) -> None:
        """Steps and attempts cut short by an interruption (Ctrl-C, a scheduler stopping) are recorded
        as failed, so that history shows no step still running and `elt run --resume` runs them again."""
        error = "interrupted: the run was stopped"
        for tasks in self.tasks.values():
            for task in tasks:
                if task.state != "running":
                    continue
                self._cut_short(task, "failed", error)
                self.runs.step(self.record, StepRecord(
                    task.position, task.name, task.spec.kind, "failed", None, now(),
                    time.monotonic() - task.first_started, {}, error, attempts=task.attempt,
                    log_file=str(task.log_file)))  # fmt: skip

    def _cut_short(self, task: _Task, status: str, error: str) -> None:
        """Record the running attempt of `task`, stopped by the run, as `status` with `error`."""
        self.runs.attempt(self.record.run_id, AttemptRecord(
            task.name, task.attempt, status, task.started_at or now(), now(),
            time.monotonic() - task.started, error, str(task.log_file), task.worker))  # fmt: skip

    def _position(self, name: str) -> int:
        node = name.split("[", 1)[0]
        base = int(self.graph.nodes[node]["position"]) * 1000 if node in self.graph else 0
        if node != name:
            base += int(name[len(node) + 1 : -1]) + 1
        return base


def attempt_task_id(run_id: str, step: str, attempt: int) -> str:
    """The id of an attempt's process (local) or task (celery): the run, the step, the attempt number."""
    return f"{run_id}:{_UNSAFE.sub('_', step)}:{attempt}"


def _stop_leftovers(project: Project, died: RunRecord) -> None:
    """Revoke the celery tasks of attempts a died run left on workers: a worker that cannot see the
    run's history (no shared project folder) would otherwise run them to their end, beside the resumed
    run's."""
    settings = executor_settings(project)
    if settings.kind != "celery":
        return  # local attempts died with their elt process
    from elt.orchestrator.executors import revoke

    left = [a for s in died.steps for a in s.attempt_records if a.status in ("died", "running")]
    revoke(settings, [attempt_task_id(died.run_id, a.step, a.attempt) for a in left])


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def concurrency_limit(node: str, spec: StepSpec) -> tuple[str, int] | None:
    """(key, limit) of a step's `concurrency:`: `N` lets N instances of the step (`for_each`) run at
    once; `{key: K, limit: N}` lets N attempts of the steps sharing key K run at once. None: no limit."""
    value = spec.options.get("concurrency")
    if value is None:
        return None
    if isinstance(value, dict):
        return str(value.get("key") or f"step:{node}"), max(1, int(value.get("limit", 1)))
    return f"step:{node}", max(1, int(value))


def _resources(project: Project, spec: StepSpec) -> set[str]:
    """What a step writes that another step of the run must not write at the same time."""
    try:
        if spec.kind == "sync":
            from elt.plugins import find_plugin
            from elt.state import state_id_for

            names = spec.spec.split()
            tap, target = find_plugin(project, names[0]), find_plugin(project, names[-1])
            found = {f"state:{state_id_for(project.environment, tap.name, target.name)}"}
            path = target.config.get("path") or target.config.get("filepath")
            if "duckdb" in target.name and path:
                found.add(f"duckdb:{(project.root / str(path)).resolve()}")
            return found
        if spec.kind in ("dbt", "sql", "export") or (spec.kind == "python" and "table" in spec.options):
            from elt.dbt import dbt_env

            env = dbt_env(project)
            found = {"dbt"} if spec.kind == "dbt" else set()
            if env["ELT_DBT_TARGET"] == "duckdb":
                found.add(f"duckdb:{(project.root / env['ELT_WAREHOUSE_PATH']).resolve()}")
            return found
    except (EltError, KeyError):
        return {"dbt"} if spec.kind == "dbt" else set()
    return set()


def run_request(
    project: Project,
    blocks: list[str],
    *,
    variables: dict[str, Any] | None = None,
    only: tuple[str, ...] = (),
    start: str | None = None,
    no_cache: bool = False,
    wait: bool = False,
    resume: str | None = None,
    run_id: str | None = None,
    trigger: dict[str, Any] | None = None,
    reporter: Reporter,
    on_step: Callable[[StepResult], None] | None = None,
) -> RunResult:
    """What `elt run` does: a pipeline or blocks (or the run `resume` again), with the CLI's options;
    `run_id` names the run when its starter chose the id beforehand; `trigger` says what started it (a
    schedule's slot, a trigger's files), kept in the run's request."""
    from elt.orchestrator.model import pipeline_from_blocks

    previous = None
    if resume is not None:
        if blocks:
            raise EltError("--resume takes a run id and no pipeline or blocks")
        previous = RunLog(project.system_db).get(resume)
        if previous.status == "running":
            raise EltError(f"run {previous.run_id} is still running", hint="wait for it, or kill it first")
        if previous.kind != "run" or not previous.request:
            raise EltError(f"run {previous.run_id} is a '{previous.kind}' run; only `elt run` runs resume")
        if previous.status == "died":
            _stop_leftovers(project, previous)
        blocks = list(previous.request["blocks"])
        variables = {**previous.request.get("variables", {}), **(variables or {})}
    elif not blocks:
        raise EltError("nothing to run: give a pipeline name, blocks such as `TAP TARGET dbt:build`, "
                       "or --resume RUN")  # fmt: skip
    pipeline = pipeline_from_blocks(project, blocks, variables)
    request = {"blocks": blocks, "variables": variables or {}, "only": list(only), "from": start}
    if previous is not None:
        request["resumed_from"] = previous.run_id
    if trigger is not None:
        request["trigger"] = trigger
    options = RunOptions(only, start, no_cache, wait, previous, request, run_id)
    return run_pipeline(project, pipeline, reporter, options, on_step)
