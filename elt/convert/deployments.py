"""Prefect deployments and their schedules as elt schedules.

Deployments come from the flow files (`flow.serve(...)`, `flow.to_deployment(...)` given to `serve()`,
`flow.deploy(...)`, `flow.from_source(...).deploy(...)`, Prefect 2's `Deployment.build_from_flow(...)`)
and from prefect.yaml (`deployments:` with `entrypoint`, `parameters`, `schedules` or Prefect 2's
`schedule`). Each schedule (cron, interval, rrule; `Cron(...)`, `Interval(...)`, `RRule(...)`,
`CronSchedule(...)`…) becomes a `schedules:` entry of the flow's pipeline with the deployment's and the
schedule's parameters as variables; one cron cannot express is written commented out with a TODO.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elt.convert.model import Construct, FlowReport, FollowUp, Schedule
from elt.convert.options import seconds, yaml_literal
from elt.convert.prefect import Catalog
from elt.convert.schedules import CronOrReason, interval_cron, rrule_cron
from elt.convert.source import FunctionDef, Module


@dataclass(frozen=True)
class PrefectSchedule:
    """One schedule of a deployment, as written in Prefect."""

    kind: str  # cron | interval | rrule | unknown
    value: Any  # the cron or rrule text, the interval's seconds
    line: int
    timezone: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    active: bool = True
    code: str = ""


@dataclass
class Deployment:
    """A deployment of a flow: its name, parameters, schedules, and options elt has no use for."""

    name: str
    flow: FunctionDef
    file: str  # where it is declared (a flow file or prefect.yaml)
    line: int
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[PrefectSchedule] = field(default_factory=list)
    paused: bool = False
    infrastructure: list[tuple[str, int]] = field(default_factory=list)  # work pool, image… and their line
    unsupported: list[tuple[str, int]] = field(default_factory=list)  # triggers, concurrency_limit…
    problems: list[tuple[str, int]] = field(default_factory=list)  # what could not be read


def module_deployments(module: Module, catalog: Catalog) -> list[Deployment]:
    """The deployments a flow file declares, in order."""
    inside = {id(n) for f in (*module.tasks.values(), *module.flows.values()) for n in ast.walk(f.node)}
    found: list[Deployment] = []
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Call) or id(node) in inside or not isinstance(node.func, ast.Attribute):
            continue
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        attr = node.func.attr
        flow: FunctionDef | None = None
        if attr in ("serve", "deploy", "to_deployment"):
            target = node.func.value
            if (
                isinstance(target, ast.Call)
                and isinstance(target.func, ast.Attribute)
                and target.func.attr == "from_source"
            ):
                flow = _entrypoint(catalog, _string(_keyword(target, "entrypoint", 1)), module.path.parent)
            else:
                found_flow = catalog.find(module, target)
                flow = (
                    found_flow
                    if found_flow is not None and found_flow in found_flow.module.flows.values()
                    else None
                )
        elif attr == "build_from_flow" and module.is_prefect(node.func.value, "Deployment"):
            given = keywords.get("flow") or (node.args[0] if node.args else None)
            found_flow = catalog.find(module, given) if given is not None else None
            flow = (
                found_flow
                if found_flow is not None and found_flow in found_flow.module.flows.values()
                else None
            )
        if flow is None:
            continue
        name = _string(keywords.get("name")) or (flow.name if attr == "serve" else "default")
        deployment = Deployment(name, flow, module.label, node.lineno)
        parameters = _literal(keywords.get("parameters"))
        if isinstance(parameters, dict):
            deployment.parameters = yaml_literal(parameters)
        elif "parameters" in keywords:
            deployment.problems.append(
                (f"parameters `{module.text(keywords['parameters'])}` are not literal", node.lineno)
            )
        deployment.paused = _literal(keywords.get("paused")) is True
        deployment.schedules = _schedules(module, keywords)
        for key in ("work_pool_name", "work_queue_name", "image", "job_variables", "build", "push"):
            if key in keywords:
                deployment.infrastructure.append((key, keywords[key].lineno))
        for key in ("triggers", "concurrency_limit", "global_limit"):
            if key in keywords:
                deployment.unsupported.append((key, keywords[key].lineno))
        found.append(deployment)
    return found


def yaml_deployments(path: Path, label: str, catalog: Catalog) -> list[Deployment]:
    """The deployments of a prefect.yaml whose entrypoints are converted flows."""
    from elt.yamlfile import load_located

    doc = load_located(path)
    data = doc.data if isinstance(doc.data, dict) else {}
    found: list[Deployment] = []
    for i, entry in enumerate(data.get("deployments") or []):
        if not isinstance(entry, dict):
            continue
        where = f"deployments[{i}]"
        flow = _entrypoint(catalog, str(entry.get("entrypoint") or ""), path.parent)
        if flow is None:
            continue
        deployment = Deployment(str(entry.get("name") or "default"), flow, label, doc.line_of(where))
        if isinstance(entry.get("parameters"), dict):
            deployment.parameters = entry["parameters"]
        deployment.paused = entry.get("paused") is True
        schedules = entry.get("schedules")
        if schedules is None and isinstance(entry.get("schedule"), dict):  # Prefect 2
            schedules, key = [entry["schedule"]], f"{where}.schedule"
        else:
            key = f"{where}.schedules"
        for j, schedule in enumerate(schedules or []):
            if isinstance(schedule, dict):
                line = doc.line_of(f"{key}[{j}]" if key.endswith("schedules") else key)
                deployment.schedules.append(_yaml_schedule(schedule, line))
        for option in ("work_pool", "build", "push", "pull"):
            if entry.get(option) or (option in ("build", "push", "pull") and data.get(option)):
                deployment.infrastructure.append(
                    (option, doc.line_of(f"{where}.{option}") if option in entry else 1)
                )
        for option in ("triggers", "concurrency_limit"):
            if option in entry:
                deployment.unsupported.append((option, doc.line_of(f"{where}.{option}")))
        found.append(deployment)
    return found


def deployment_schedules(
    deployments: list[Deployment],
    catalog: Catalog,
    reports: dict[tuple[str, str], FlowReport],
    taken: set[str],
) -> list[Schedule]:
    """elt schedules for the deployments; each deployment's constructs go into its flow's report."""
    schedules: list[Schedule] = []
    for deployment in deployments:
        flow = deployment.flow
        pipeline = catalog.pipelines[(flow.module.label, flow.name)]
        report = reports[(flow.module.label, flow.name)]
        file = deployment.file if deployment.file != flow.module.label else None
        params = set(flow.params)

        def record(kind: str, line: int, mapped_to: str, automatic: bool = True, note: str = "") -> None:
            report.constructs.append(Construct(kind, line, mapped_to, automatic, note, file))  # noqa: B023
            if not automatic:
                report.follow_ups.append(FollowUp(line, f"{mapped_to}: {note}" if note else mapped_to, file))  # noqa: B023

        unknown = sorted(set(deployment.parameters) - params)
        record(
            "deployment",
            deployment.line,
            f"`elt run {pipeline}`"
            + (f" with variables {deployment.parameters}" if deployment.parameters else ""),
            not unknown,
            f"parameters {unknown} are no parameters of the flow" if unknown else "",
        )
        for what, line in deployment.problems:
            record("deployment", line, "not converted", False, what)
        for key, line in deployment.infrastructure:
            record(
                f"deployment {key}",
                line,
                "nothing needed",
                True,
                "elt runs steps as local processes wherever elt (or `elt schedule`) runs",
            )
        for key, line in deployment.unsupported:
            record(
                f"deployment {key}",
                line,
                "not converted",
                False,
                "elt has no deployment triggers (see `triggers:`)"
                if key == "triggers"
                else "elt has no limit on concurrent runs of a pipeline",
            )
        for n, schedule in enumerate(deployment.schedules):
            name = _unique(
                deployment.name if len(deployment.schedules) == 1 else f"{deployment.name}-{n + 1}", taken
            )
            variables = {
                k: v for k, v in {**deployment.parameters, **schedule.parameters}.items() if k in params
            }
            converted = _cron(schedule)
            source = f"{schedule.kind} {schedule.value!r}" + (
                f" in {schedule.timezone}" if schedule.timezone else ""
            )
            entry = Schedule(
                name,
                pipeline,
                converted.cron,
                schedule.timezone,
                variables,
                enabled=schedule.active and not deployment.paused,
                source=f"Prefect {source}",
            )
            if converted.cron is None:
                entry = Schedule(
                    name,
                    pipeline,
                    "0 0 * * *",
                    schedule.timezone,
                    variables,
                    False,
                    todo=f"{source}: {converted.reason}",
                    source=f"Prefect {source}",
                )
                record(
                    "schedule",
                    schedule.line,
                    f"schedule '{name}' written commented out",
                    False,
                    f"{source}: {converted.reason}",
                )
            else:
                tz = f" ({schedule.timezone})" if schedule.timezone else ""
                record(
                    "schedule",
                    schedule.line,
                    f"schedule '{name}': {converted.cron}{tz}",
                    True,
                    converted.note,
                )
            schedules.append(entry)
    return schedules


def _cron(schedule: PrefectSchedule) -> CronOrReason:
    if schedule.kind == "cron" and isinstance(schedule.value, str):
        return CronOrReason(schedule.value)
    if schedule.kind == "interval" and isinstance(schedule.value, int | float):
        return interval_cron(float(schedule.value))
    if schedule.kind == "rrule" and isinstance(schedule.value, str):
        return rrule_cron(schedule.value)
    return CronOrReason(None, f"the schedule `{schedule.code}` could not be read")


def _schedules(module: Module, keywords: dict[str, ast.expr]) -> list[PrefectSchedule]:
    found: list[PrefectSchedule] = []
    for key in ("cron", "interval", "rrule"):
        node = keywords.get(key)
        if node is None:
            continue
        values = node.elts if isinstance(node, ast.List | ast.Tuple) else [node]
        for value in values:
            found.append(_plain(module, key, value))
    if "schedule" in keywords:
        found.append(_object(module, keywords["schedule"]))
    nodes = keywords.get("schedules")
    if isinstance(nodes, ast.List | ast.Tuple):
        found.extend(_object(module, n) for n in nodes.elts)
    elif nodes is not None:
        found.append(PrefectSchedule("unknown", None, nodes.lineno, code=module.text(nodes)))
    return found


def _plain(module: Module, kind: str, node: ast.expr) -> PrefectSchedule:
    if kind == "interval":
        return PrefectSchedule(kind, seconds(node), node.lineno, code=module.text(node))
    return PrefectSchedule(kind, _string(node), node.lineno, code=module.text(node))


def _object(module: Module, node: ast.expr) -> PrefectSchedule:
    """`Cron("0 6 * * *", timezone=…)`, `Interval(900)`, `RRule(…)`, `CronSchedule(cron=…)`…"""
    code = module.text(node)
    if not isinstance(node, ast.Call):
        return PrefectSchedule("unknown", None, node.lineno, code=code)
    kind_name = (module.qualify(node.func) or getattr(node.func, "id", "") or "").rsplit(".", 1)[-1]
    kind = {
        "Cron": "cron",
        "CronSchedule": "cron",
        "Interval": "interval",
        "IntervalSchedule": "interval",
        "RRule": "rrule",
        "RRuleSchedule": "rrule",
    }.get(kind_name, "unknown")
    first = node.args[0] if node.args else _keyword(node, kind, 0) if kind != "unknown" else None
    value = (seconds(first) if kind == "interval" else _string(first)) if first is not None else None
    timezone = _string(_keyword(node, "timezone", None))
    literal = _literal(_keyword(node, "parameters", None))
    parameters: dict[str, Any] = yaml_literal(literal) if isinstance(literal, dict) else {}
    active = _literal(_keyword(node, "active", None))
    if kind == "cron" and _literal(_keyword(node, "day_or", None)) is False:
        kind, value = "unknown", None  # day_or=False: both day fields must match, cron says either
    return PrefectSchedule(
        kind,
        value,
        node.lineno,
        timezone,
        parameters,
        active is not False,
        code,
    )


def _yaml_schedule(entry: dict[str, Any], line: int) -> PrefectSchedule:
    timezone = entry.get("timezone")
    parameters: dict[str, Any] = entry["parameters"] if isinstance(entry.get("parameters"), dict) else {}
    active = entry.get("active") is not False
    for kind in ("cron", "interval", "rrule"):
        if kind in entry:
            value = entry[kind]
            if kind == "interval" and not isinstance(value, int | float):
                value = None
            return PrefectSchedule(kind, value, line, timezone, parameters, active, f"{kind}: {entry[kind]}")
    return PrefectSchedule("unknown", None, line, code=str(entry))


def _entrypoint(catalog: Catalog, entrypoint: str | None, base: Path) -> FunctionDef | None:
    """The flow of `path/to/file.py:function`, relative to `base`."""
    if not entrypoint or ":" not in entrypoint:
        return None
    file, _, function = entrypoint.rpartition(":")
    wanted = (base / file).resolve()
    for module in catalog.modules:
        if module.path.resolve() == wanted or (
            not (base / file).exists() and module.path.name == Path(file).name
        ):
            return module.flows.get(function)
    return None


def _keyword(call: ast.Call, name: str, position: int | None) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    if position is not None and len(call.args) > position:
        return call.args[position]
    return None


def _string(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _literal(node: ast.expr | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate
