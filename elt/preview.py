"""`elt preview`: the first rows of a dbt model, a tap's stream or a Python block, with nothing written.

    model   → `dbt show --select MODEL --limit N` (the model's SQL run as a query, no table built)
    stream  → the tap's first N records of that stream: a built-in tap in this process, another tap
              as its own process with a catalog selecting only that stream, stopped after N records;
              no target runs and no state is read or saved
    block   → the block's function called as its pipeline step would call it (upstream values from the
              last run), its result shown instead of written

A name is tried as a block spec (`blocks/x.py:function`), `TAP.STREAM`, a model, a block function's name,
then a stream name unique among the project's extractors.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from elt.errors import EltError, RunError
from elt.project import Project

DEFAULT_LIMIT = 10


@dataclass(frozen=True)
class Preview:
    """Rows of a model, stream or block: `kind` says which, `name` what was previewed."""

    kind: str  # model | stream | block
    name: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> list[dict[str, Any]]:
        return self.rows


def preview(project: Project, name: str, limit: int = DEFAULT_LIMIT) -> Preview:
    """The first `limit` rows of the model, stream or block `name`; EltError naming what is unknown,
    with the closest known names."""
    if limit < 1:
        raise EltError(f"--limit must be at least 1, got {limit}")
    if re.fullmatch(r".+\.py:\w+", name):
        return preview_block(project, name, limit)
    extractors = _extractors(project)
    tap, dot, stream = name.partition(".")
    if dot and tap in extractors:
        return preview_stream(project, tap, stream, limit)
    models = model_names(project)
    if name in models:
        return preview_model(project, name, limit)
    blocks = block_functions(project)
    if name in blocks:
        if len(blocks[name]) > 1:
            raise EltError(
                f"'{name}' is a function of several block files",
                hint="name one: " + ", ".join(f"{spec}" for spec in blocks[name]),
            )
        return preview_block(project, blocks[name][0], limit)
    streams = _streams_by_name(project, extractors)
    taps = streams.get(name, [])
    if len(taps) == 1:
        return preview_stream(project, taps[0], name, limit)
    if len(taps) > 1:
        raise EltError(
            f"stream '{name}' is in several extractors",
            hint="name one: " + ", ".join(f"{t}.{name}" for t in taps),
        )
    known = [*models, *blocks, *streams, *(f"{t}.{s}" for s, ts in streams.items() for t in ts)]
    close = get_close_matches(name, known, n=3, cutoff=0.5)
    raise EltError(
        f"no model, stream or block named '{name}'",
        hint=(f"did you mean {', '.join(close)}? " if close else "")
        + "name a dbt model, TAP.STREAM, or a block as blocks/FILE.py:FUNCTION",
    )


# -- models ---------------------------------------------------------------------------------------------


def model_names(project: Project) -> list[str]:
    """The dbt project's model names, from its files (no dbt parse)."""
    from elt.dbt import dbt_dirs

    try:
        project_dir, _ = dbt_dirs(project)
    except EltError:
        return []
    import yaml

    settings = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8")) or {}
    names: set[str] = set()
    for folder in settings.get("model-paths") or ["models"]:
        for path in (project_dir / str(folder)).rglob("*"):
            if path.suffix in (".sql", ".py") and path.is_file():
                names.add(path.stem)
    return sorted(names)


def preview_model(project: Project, model: str, limit: int) -> Preview:
    """`dbt show` of the model: its query's first `limit` rows; no table is built."""
    from elt.blocks import write_block_sources
    from elt.dbt import run_dbt

    write_block_sources(project)
    # the model alone: by default dbt also selects the tests that use it, and show would run them
    args = ["--log-format", "json", "show", "--select", model, "--indirect-selection", "empty",
            "--limit", str(limit), "--output", "json"]  # fmt: skip
    captured = io.StringIO()
    # dbt reports the rows in its ShowNode event, which only its log output carries
    with contextlib.redirect_stdout(captured):
        result = run_dbt(project, args, quiet=False)
    if not result.success:
        raise RunError(f"dbt show of model '{model}' failed: {result.error}")
    for line in captured.getvalue().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("info", {}).get("name") == "ShowNode":
            preview_json = event["data"]["preview"]
            rows = json.loads(preview_json) if isinstance(preview_json, str) else preview_json
            return Preview("model", model, list(rows[0]) if rows else [], rows[:limit])
    raise RunError(f"dbt show of model '{model}' printed no rows")


# -- streams --------------------------------------------------------------------------------------------


def _extractors(project: Project) -> list[str]:
    from elt.plugins import declared_plugins

    return sorted(n for n, (ptype, _, _) in declared_plugins(project).items() if ptype == "extractors")


def _catalog_of(project: Project, tap_name: str) -> dict[str, Any]:
    """The tap's discovered catalog (built-in taps in this process, others as `--discover` does)."""
    from elt import inprocess
    from elt.logs import Redactor
    from elt.plugins import check_builtin_config, executable_path, find_plugin, secret_values
    from elt.sync import connector_context, process_env, tap_catalog, write_json

    tap = find_plugin(project, tap_name, "extractors")
    check_builtin_config(project, tap)
    redact = Redactor(secret_values(tap.config))
    log_file = project.system_dir / "logs" / f"preview-{tap.name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = process_env(project, tap, None)
    if tap.builtin:
        with log_file.open("a", encoding="utf-8") as log, connector_context(project, env):
            return inprocess.discover(tap.name, str(tap.builtin), tap.config, log, redact)
    workdir = _workdir(project, tap.name)
    try:
        config = write_json(workdir / "tap.config.json", tap.config)
        exe = executable_path(project, tap)
        return tap_catalog(project, tap, exe, config, env, redact, log_file, False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _streams_by_name(project: Project, extractors: list[str]) -> dict[str, list[str]]:
    from elt.singer import stream_names

    found: dict[str, list[str]] = {}
    for tap in extractors:
        try:
            names = stream_names(_catalog_of(project, tap))
        except EltError:
            continue  # a tap that cannot discover is not the one meant; `TAP.STREAM` says why
        for name in names:
            found.setdefault(name, []).append(tap)
    return found


def preview_stream(project: Project, tap_name: str, stream: str, limit: int) -> Preview:
    """The tap's first `limit` records of `stream`, read without a target, state or bookmarks."""
    from elt.plugins import find_plugin
    from elt.singer import select_catalog, stream_names

    tap = find_plugin(project, tap_name, "extractors")
    catalog = _catalog_of(project, tap_name)
    known = stream_names(catalog)
    if stream not in known:
        close = get_close_matches(stream, known, n=3, cutoff=0.5)
        raise EltError(
            f"{tap_name} has no stream '{stream}'",
            hint=(f"did you mean {', '.join(close)}? " if close else "") + f"streams: {', '.join(known)}",
        )
    selected = select_catalog(catalog, tap.select, {stream}, tap.metadata, tap.schema)
    if tap.builtin:
        rows = _builtin_records(project, tap, selected, stream, limit)
    else:
        rows = _process_records(project, tap, selected, stream, limit)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return Preview("stream", f"{tap_name}.{stream}", columns, rows)


def _builtin_records(
    project: Project, tap: Any, catalog: dict[str, Any], stream: str, limit: int
) -> list[Any]:
    from elt.inprocess import builtin_class
    from elt.sync import connector_context, process_env

    rows: list[dict[str, Any]] = []
    with connector_context(project, process_env(project, tap, None)):
        connector = builtin_class(str(tap.builtin))(
            config=tap.config, catalog=catalog, validate_config=True, setup_mapper=False
        )
        source = connector.streams[stream]
        for context in source.partitions or [None]:
            for record in source.get_records(context):
                rows.append(record)
                if len(rows) >= limit:
                    return rows
    return rows


def _process_records(
    project: Project, tap: Any, catalog: dict[str, Any], stream: str, limit: int
) -> list[Any]:
    from elt.plugins import executable_path
    from elt.sync import process_env, write_json

    workdir = _workdir(project, tap.name)
    rows: list[dict[str, Any]] = []
    try:
        config = write_json(workdir / "tap.config.json", tap.config)
        catalog_file = write_json(workdir / "catalog.json", catalog)
        log_file = project.system_dir / "logs" / f"preview-{tap.name}.log"
        with log_file.open("ab") as log:
            proc = subprocess.Popen(
                [str(executable_path(project, tap)), "--config", str(config), "--catalog", str(catalog_file)],
                cwd=project.root, env=process_env(project, tap, None), stdout=subprocess.PIPE,
                stderr=log, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    if b'"RECORD"' not in line[:40]:
                        continue
                    message = json.loads(line)
                    if message.get("type") == "RECORD" and message.get("stream") == stream:
                        rows.append(message["record"])
                        if len(rows) >= limit:
                            break
            finally:
                proc.kill()  # enough rows: the tap's remaining output is not wanted
                proc.wait()
        if proc.returncode not in (0, -9) and len(rows) < limit:
            raise RunError(f"{tap.name} exited with code {proc.returncode} (see {log_file})")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def _workdir(project: Project, tap_name: str) -> Path:
    workdir = project.system_dir / "run" / f"preview-{tap_name}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, mode=0o700)
    return workdir


# -- blocks ---------------------------------------------------------------------------------------------


def block_functions(project: Project) -> dict[str, list[str]]:
    """Block function name → its specs (`blocks/x.py:name`): decorated functions of `blocks/` and the
    functions of the pipelines' python steps."""
    from elt.blocks import declared_blocks

    found: dict[str, list[str]] = {}
    for block in declared_blocks(project):
        found.setdefault(block.function, []).append(
            f"{block.path.relative_to(project.root.resolve())}:{block.function}"
        )
    for _, step in _python_steps(project):
        function = step.spec.rpartition(":")[2]
        specs = found.setdefault(function, [])
        if not any(_same_block(project, s, step.spec) for s in specs):
            specs.append(step.spec)
    return found


def _python_steps(project: Project) -> list[tuple[str, Any]]:
    """(pipeline, StepSpec) of every python step of `pipelines:`."""
    from elt.orchestrator.model import load_pipeline

    steps: list[tuple[str, Any]] = []
    for name in project.data.get("pipelines") or {}:
        try:
            pipeline = load_pipeline(project, name)
        except EltError:
            continue  # `elt validate` and `elt run` report a broken pipeline
        steps.extend((name, s) for s in pipeline.steps if s.kind == "python")
    return steps


def _same_block(project: Project, a: str, b: str) -> bool:
    def key(spec: str) -> tuple[Path, str]:
        file, _, function = spec.rpartition(":")
        return (project.root / file).resolve(), function

    return key(a) == key(b)


def preview_block(project: Project, spec: str, limit: int) -> Preview:
    """Call the block as its pipeline step would (that pipeline's variables, its upstream steps' outputs
    of their last successful run), and show its result; no table is written."""
    from elt.orchestrator.attempt import output_from_json
    from elt.runs import last_outputs
    from elt.steps import StepContext
    from elt.steps.python import _as_arrow, call_block, check_failure
    from elt.steps.warehouse import json_safe

    pipeline_name, step_name, variables, upstream, earlier = "", "preview", {}, {}, {}
    options: dict[str, Any] = {}
    for name, step in _python_steps(project):
        if _same_block(project, step.spec, spec):
            import networkx as nx

            from elt.orchestrator.dag import build_graph
            from elt.orchestrator.model import load_pipeline

            pipeline = load_pipeline(project, name)
            graph = build_graph(project, pipeline)
            outputs = last_outputs(project.system_db, name, list(nx.ancestors(graph, step.name)))
            pipeline_name, step_name, options = name, step.name, step.options
            variables = dict(pipeline.variables if step.variables is None else step.variables)
            earlier = {k: output_from_json(v) for k, v in outputs.items()}
            upstream = {k: v for k, v in earlier.items() if k in set(graph.predecessors(step.name))}
            break

    def log(line: str) -> None:
        print(line, file=sys.stderr)

    ctx = StepContext(project, "preview", pipeline_name, step_name, variables, upstream, log, earlier=earlier)
    result, block, _ = call_block(spec, ctx, options)
    if block is not None and block.kind == "check":
        reason = check_failure(result)
        table = _as_arrow(result)
        if table is None:
            return Preview("block", spec, ["check"], [{"check": "passed" if reason is None else reason}])
        result = table
    table = _as_arrow(result)
    if table is not None:
        rows = json_safe(table.slice(0, limit).to_pylist())
        return Preview("block", spec, list(table.column_names), rows)
    value = json_safe(result)
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        rows = value[:limit]
        return Preview("block", spec, list(dict.fromkeys(k for r in rows for k in r)), rows)
    items = value[:limit] if isinstance(value, list) else [value]
    return Preview("block", spec, ["value"], [{"value": v} for v in items])
