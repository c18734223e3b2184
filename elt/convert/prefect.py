"""Prefect flows as elt pipelines, by static analysis of their code.

`convert_flows(catalog, options)` reads each `@flow` function statement by statement, the way Prefect
would run it, and builds a `Pipeline` (elt/convert/model.py): a task call becomes a python step of the
task's block, the values passed between tasks become `arguments: {PARAM: ${steps.STEP.output}}` and
`needs`, `.submit()` and `asyncio.gather` leave steps free to run in parallel, `.map()` becomes
`for_each`, `wait_for` more `needs`, a subflow a `pipeline:` step, `run_deployment` a completion
trigger, and the flow's parameters the pipeline's variables. Every construct met is recorded with what
it became; what has no elt equivalent (a branch on a task's result, a loop that accumulates, flow code
between task calls, a dynamic import) is still converted as closely as possible and gets a TODO.

Ordering follows Prefect's semantics: a task called directly blocks the flow, so every later call
needs it; a submitted or mapped task does not, until `.result()`/`.wait()` or a value it returns is
used.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from elt.convert.model import Construct, FlowReport, FollowUp, Pipeline, Step, Trigger
from elt.convert.options import (
    HARMLESS,
    NO_ELT_EQUIVALENT,
    cache_config,
    hook_deployment,
    literal,
    retry_policy,
    show,
    webhook_url,
    yaml_literal,
)
from elt.convert.source import FunctionDef, Module, is_dynamic_import, secret_name, variable_get

HOOK_STATES = {"on_completion": "Completed", "on_failure": "Failed", "on_crashed": "Crashed"}
_CALLS = ("task call", "submit", "map", "subflow")  # constructs a branch or loop makes conditional
_LOG_METHODS = ("debug", "info", "warning", "warn", "error", "exception", "critical", "log")
_ASYNC_UNFOLLOWED = (
    "create_task",
    "wait",
    "as_completed",
    "ensure_future",
    "run_in_executor",
    "create_task_group",
    "TaskGroup",
    "to_thread",
    "wait_for",
)


@dataclass(frozen=True)
class Options:
    """What the user tells the converter: concurrency limits of Prefect tags (they live on the server)."""

    tag_limits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Value:
    """What a flow expression is in elt: a YAML value (`${vars.folder}`, `${steps.extract.output}`, a
    literal), the steps it carries data from, or, when `exact` is False, code elt cannot express."""

    yaml: Any = None
    steps: tuple[str, ...] = ()
    exact: bool = True
    code: str = ""
    iterable: bool = False  # a list, as `.map()` would iterate it
    items: tuple[Value, ...] = ()  # the elements, for `a, b = await asyncio.gather(…)`
    # "logger", "item", "unmapped", "log" (nothing to convert), "empty" (`[]`), "secret:NAME" (a Secret
    # block), "reported" (already recorded with its TODO)
    special: str = ""

    @property
    def step(self) -> str | None:
        return self.steps[0] if len(self.steps) == 1 and self.yaml == _ref(self.steps[0]) else None


@dataclass
class HookStep:
    """A block that runs a Prefect state hook: written into the hook's file by elt/convert/code.py."""

    module: Module
    hook: str  # the hook function
    function: str  # the generated block function
    owner: str  # the flow's or task's Prefect name
    state: str  # Completed | Failed | Crashed


@dataclass
class FlowResult:
    """A converted flow: its pipeline, its report, triggers and the hook blocks to write."""

    flow: FunctionDef
    pipeline: Pipeline
    report: FlowReport
    triggers: list[Trigger] = field(default_factory=list)
    hooks: list[HookStep] = field(default_factory=list)


@dataclass
class Catalog:
    """Every module read, and what the conversion learns across them."""

    modules: list[Module]
    stems: dict[str, str]  # module label → its blocks/ module name
    pipelines: dict[tuple[str, str], str] = field(default_factory=dict)  # (label, flow fn) → pipeline
    data_input: set[tuple[str, str]] = field(default_factory=set)  # (label, task fn) given a task's result
    called: set[tuple[str, str]] = field(default_factory=set)  # (label, task fn) some flow calls
    results: dict[tuple[str, str], FlowResult] = field(default_factory=dict)

    def find(self, module: Module, node: ast.expr) -> FunctionDef | None:
        """The task or flow an expression names, in its module or one it imports from."""
        if isinstance(node, ast.Name):
            if node.id in module.tasks:
                return module.tasks[node.id]
            if node.id in module.flows:
                return module.flows[node.id]
        qualified = module.qualify(node)
        if not qualified or "." not in qualified:
            return None
        origin, _, name = qualified.rpartition(".")
        for other in self.modules:
            if other is not module and (other.path.stem == origin.rpartition(".")[2]):
                return other.tasks.get(name) or other.flows.get(name)
        return None

    def flow_by_name(self, name: str) -> FunctionDef | None:
        """A flow by its Prefect name (`daily-report`) or function name."""
        for module in self.modules:
            for flow in module.flows.values():
                if name in (flow_name(flow), flow.name):
                    return flow
        return None


def flow_name(flow: FunctionDef) -> str:
    """The flow's name in Prefect: `name=`, else the function's with `_` as `-`."""
    given = flow.options.get("name")
    if isinstance(given, ast.Constant) and isinstance(given.value, str):
        return given.value
    return flow.name.replace("_", "-")


def pipeline_name(flow: FunctionDef) -> str:
    """The pipeline's name: the flow's Prefect name, as a step name may spell it."""
    name = "".join(c if c.isalnum() or c in "_-." else "-" for c in flow_name(flow)).strip("-.")
    return name or flow.name


def convert_flows(catalog: Catalog, options: Options) -> list[FlowResult]:
    """Every flow of every module as a pipeline, subflows before the flows that call them."""
    for module in catalog.modules:
        for flow in module.flows.values():
            catalog.pipelines[(module.label, flow.name)] = pipeline_name(flow)
    for module in catalog.modules:
        for flow in module.flows.values():
            _convert(catalog, flow, options, ())
    return [catalog.results[(m.label, f)] for m in catalog.modules for f in m.flows]


def _convert(
    catalog: Catalog, flow: FunctionDef, options: Options, stack: tuple[str, ...]
) -> FlowResult | None:
    key = (flow.module.label, flow.name)
    if key in catalog.results:
        return catalog.results[key]
    if flow.name in stack:
        return None  # a flow that runs itself: the caller records it
    reader = _FlowReader(catalog, flow, options, (*stack, flow.name))
    result = reader.read()
    catalog.results[key] = result
    return result


def _ref(step: str) -> str:
    return "${steps." + step + ".output}"


class _FlowReader:
    """Reads one flow's body into a pipeline; see the module's docstring."""

    def __init__(self, catalog: Catalog, flow: FunctionDef, options: Options, stack: tuple[str, ...]):
        self.catalog = catalog
        self.flow = flow
        self.module = flow.module
        self.options = options
        self.stack = stack
        name = catalog.pipelines[(self.module.label, flow.name)]
        self.pipeline = Pipeline(name, flow.name, self.module.label, flow.line)
        self.report = FlowReport(flow_name(flow), self.module.label, name)
        self.result = FlowResult(flow, self.pipeline, self.report)
        self.env: dict[str, Value] = {}
        self.barrier: set[str] = set()  # steps every later call waits for
        self.ancestors: dict[str, set[str]] = {}
        self.pending: list[str] = []  # TODO comments for the next step
        self.under: list[str] = []  # why steps created now are not automatic (a branch, a loop)
        self.loop: Value | None = None  # the for_each of steps created in a converted loop
        self.step_options: list[dict[str, Any]] = []  # tags/concurrency of `with` blocks around calls
        self.recorded: set[tuple[str, int, str]] = set()
        self.flow_retries: dict[str, Any] | None = None  # the flow's retries, given to every step

    # -- recording -------------------------------------------------------------------------------------

    def construct(
        self,
        kind: str,
        node: ast.AST | int,
        mapped_to: str,
        automatic: bool = True,
        note: str = "",
        todo: str | None = None,
        step: Step | None = None,
        module: Module | None = None,
    ) -> None:
        """Record a construct; when not automatic, a follow-up and a TODO comment (above `step`, or
        above the next step written)."""
        line = node if isinstance(node, int) else getattr(node, "lineno", self.flow.line)
        module = module or self.module
        key = (kind, line, mapped_to)
        if key in self.recorded:
            return
        self.recorded.add(key)
        where = module.label if module is not self.module else None
        if self.under and automatic and kind in _CALLS:
            automatic, note = False, "; ".join([*([note] if note else []), *self.under])
        self.report.constructs.append(Construct(kind, line, mapped_to, automatic, note, where))
        if not automatic:
            what = todo or (f"{mapped_to}: {note}" if note else mapped_to)
            self.report.follow_ups.append(FollowUp(line, what, where))
            comment = f"TODO(prefect {module.path.name}:{line}): {what}"
            if step is not None:
                step.todos.append(comment)
            else:
                self.pending.append(comment)

    # -- the flow --------------------------------------------------------------------------------------

    def read(self) -> FlowResult:
        flow = self.flow
        self.construct("flow", flow.node, f"pipeline '{self.pipeline.name}'")
        description = flow.options.get("description")
        docstring = ast.get_docstring(flow.node)
        given = description.value if isinstance(description, ast.Constant) else None
        text = given if isinstance(given, str) else (docstring or "")
        origin = f"Prefect flow '{flow_name(flow)}' ({self.module.label}:{flow.line}), by elt convert prefect"
        self.pipeline.description = (f"{text.strip().splitlines()[0]} — " if text.strip() else "") + origin
        self._parameters()
        self._flow_options()
        for statement in flow.node.body:
            self._statement(statement)
        self._flow_hooks()
        self.pipeline.todos.extend(self.pending)
        self.pending = []
        return self.result

    def _parameters(self) -> None:
        for name in self.flow.params:
            default = self.flow.defaults.get(name)
            node = default if default is not None else self.flow.node
            if default is None:
                self.pipeline.variables[name] = None
                self.construct(
                    "parameter",
                    node,
                    f"variable '{name}' (no default)",
                    False,
                    todo=f"parameter '{name}' has no default: give the variable a value or pass "
                    f"`elt run {self.pipeline.name} --var {name}=…`",
                )
            else:
                try:
                    value = ast.literal_eval(default)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    self.pipeline.variables[name] = None
                    self.construct(
                        "parameter",
                        node,
                        f"variable '{name}'",
                        False,
                        todo=f"parameter '{name}' defaults to `{self.module.text(default)}`, "
                        "which is not a literal: set the variable's default",
                    )
                else:
                    self.pipeline.variables[name] = yaml_literal(value)
                    self.construct("parameter", node, f"variable '{name}' = {show(yaml_literal(value))}")
            self.env[name] = Value(
                "${vars." + name + "}", iterable=isinstance(self.pipeline.variables[name], list)
            )

    def _flow_options(self) -> None:
        options = self.flow.options
        for key, node in options.items():
            if key in NO_ELT_EQUIVALENT:
                self.construct(f"flow {key}", node, "not converted", False, NO_ELT_EQUIVALENT[key])
            elif key not in HARMLESS:
                self.construct(f"flow {key}", node, "not converted", False, "an option elt does not know")
            elif HARMLESS[key]:
                self.construct(f"flow {key}", node, "nothing needed", True, HARMLESS[key])
        runner = options.get("task_runner")
        if runner is not None:
            self._task_runner(runner)
        if "retries" in options:
            retries, automatic, note = retry_policy(
                self.module, options["retries"], options.get("retry_delay_seconds"), None
            )
            self.flow_retries = retries
            self.construct(
                "flow retries",
                options["retries"],
                f"retries on every step: {show(retries)}",
                False,
                "elt retries steps, not whole pipelines; " + (note or "Prefect reran the flow"),
            )
        if "timeout_seconds" in options:
            self.construct(
                "flow timeout",
                options["timeout_seconds"],
                "not converted",
                False,
                "elt has no pipeline timeout: give the long steps a `timeout`",
            )

    def _task_runner(self, runner: ast.expr) -> None:
        call = runner if isinstance(runner, ast.Call) else None
        kind = (self.module.qualify(call.func if call else runner) or self.module.text(runner)).rsplit(
            ".", 1
        )[-1]
        workers = next((k.value for k in call.keywords if k.arg == "max_workers"), None) if call else None
        if (
            kind == "ThreadPoolTaskRunner"
            and isinstance(workers, ast.Constant)
            and isinstance(workers.value, int)
        ):
            self.pipeline.max_parallel = workers.value
            self.construct("task_runner", runner, f"max_parallel: {workers.value}")
        elif kind in ("ThreadPoolTaskRunner", "ConcurrentTaskRunner", "PrefectTaskRunner"):
            self.construct("task_runner", runner, "parallel steps (max_parallel: the CPU cores)")
        elif kind == "SequentialTaskRunner":
            self.pipeline.max_parallel = 1
            self.construct("task_runner", runner, "max_parallel: 1")
        else:
            self.construct(
                "task_runner",
                runner,
                "parallel steps on this machine",
                False,
                f"{kind} ran tasks on a cluster; elt runs each step as a local process",
            )

    # -- statements ------------------------------------------------------------------------------------

    def _statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Expr):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return  # a docstring
            before = len(self.pipeline.steps)
            value = self._value(node.value, statement=True)
            if (
                not value.exact
                and len(self.pipeline.steps) == before
                and value.special not in ("log", "reported")
            ):
                self._flow_code(node)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            self._assign(node)
        elif isinstance(node, ast.AugAssign):
            self._value(node.value)
            if isinstance(node.target, ast.Name):
                self.env[node.target.id] = Value(exact=False, code=node.target.id)
            self._flow_code(node)
        elif isinstance(node, ast.Return):
            self._return(node)
        elif isinstance(node, ast.If):
            self._if(node)
        elif isinstance(node, ast.For | ast.AsyncFor):
            self._for(node)
        elif isinstance(node, ast.While):
            self.construct(
                "loop",
                node,
                "its steps run once",
                False,
                todo=f"`while {self.module.text(node.test)}` loop: elt runs each step once; "
                "repeat the pipeline (a schedule, a trigger) or loop inside a block",
            )
            with self._under(f"inside `while` (line {node.lineno})"):
                for statement in node.body:
                    self._statement(statement)
        elif isinstance(node, ast.With | ast.AsyncWith):
            self._with(node)
        elif isinstance(node, ast.Try):
            self.construct(
                "flow code",
                node,
                "its steps run unguarded",
                False,
                todo="try/except around task calls: elt fails the step instead; use retries, "
                "`on_failure: continue` or an `if: failure` step",
            )
            for statement in node.body:
                self._statement(statement)
            with self._under(f"in an except/finally block (line {node.lineno})"):
                for handler in node.handlers:
                    for statement in handler.body:
                        self._statement(statement)
                for statement in node.finalbody:
                    self._statement(statement)
        elif isinstance(node, ast.Import | ast.ImportFrom | ast.Pass):
            return
        else:
            self._flow_code(node)

    def _flow_code(self, node: ast.stmt) -> None:
        text = self.module.text(node)
        if len(text) > 80:
            text = text[:77] + "..."
        self.construct(
            "flow code",
            node,
            "not converted",
            False,
            todo=f"flow code `{text}` is not a task call: move it into a block or drop it",
        )

    def _assign(self, node: ast.Assign | ast.AnnAssign) -> None:
        if node.value is None:
            return
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        before = len(self.pipeline.steps)
        if isinstance(node.value, ast.List | ast.Tuple) and not node.value.elts:
            value = Value([], special="empty", iterable=True)
        else:
            value = self._value(node.value)
        for target in targets:
            if isinstance(target, ast.Name):
                self.env[target.id] = value
            elif isinstance(target, ast.Tuple | ast.List) and len(value.items) == len(target.elts):
                for element, item in zip(target.elts, value.items, strict=True):
                    if isinstance(element, ast.Name):
                        self.env[element.id] = item
            else:
                for part in ast.walk(target):
                    if isinstance(part, ast.Name):
                        self.env[part.id] = Value(exact=False, code=self.module.text(node.value))
                self._flow_code(node)
                return
        if not value.exact and len(self.pipeline.steps) == before and value.special != "reported":
            self._flow_code(node)

    def _return(self, node: ast.Return) -> None:
        if node.value is None or (isinstance(node.value, ast.Constant) and node.value.value is None):
            return
        value = self._value(node.value)
        if value.step:
            self.pipeline.output = value.step
            self.construct(
                "return", node, f"the value of step '{value.step}' (what `pipeline:` steps pass on)"
            )
        elif value.exact and not value.steps:
            self.construct("return", node, "nothing (a constant)", True, "a pipeline's value is its steps'")
        else:
            self.construct(
                "return",
                node,
                "not converted",
                False,
                todo=f"the flow returns `{self.module.text(node.value)}`; a pipeline's value is "
                "its steps': have one block return it",
            )

    def _if(self, node: ast.If) -> None:
        test = self.module.text(node.test)
        uses = self._value(node.test, statement=False)
        on_result = " on a task's result" if uses.steps else ""
        self.construct(
            "conditional",
            node,
            "both branches' steps run",
            False,
            todo=f"`if {test}`{on_result}: elt runs every step; split the branches into "
            "pipelines and decide in a block, or check the condition inside the tasks",
        )
        with self._under(f"ran only if `{test}` (line {node.lineno})"):
            for statement in node.body:
                self._statement(statement)
        if node.orelse:
            with self._under(f"ran only if not `{test}` (line {node.lineno})"):
                for statement in node.orelse:
                    self._statement(statement)

    def _for(self, node: ast.For | ast.AsyncFor) -> None:
        over = self._value(node.iter)
        simple = self._map_like(node)
        if not isinstance(node.target, ast.Name) or not over.exact or self.loop is not None:
            self.construct(
                "loop",
                node,
                "its steps run once",
                False,
                todo=f"loop `for {self.module.text(node.target)} in {self.module.text(node.iter)}`: "
                "elt runs each step once; use for_each or loop inside a block",
            )
            names = [n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)]
            saved = {name: self.env[name] for name in names if name in self.env}
            for name in names:  # the loop variable is no value elt knows
                self.env[name] = Value(exact=False, code=name)
            with self._under(f"inside the loop of line {node.lineno}"):
                for statement in node.body:
                    self._statement(statement)
            for name in names:
                if name in saved:
                    self.env[name] = saved[name]
                else:
                    self.env.pop(name, None)
            return
        before = len(self.pipeline.steps)
        self.env[node.target.id] = Value("${for_each.item}", special="item")
        self.loop = over
        try:
            if simple:
                self.construct(
                    "loop",
                    node,
                    f"for_each over {show(over.yaml)}, one instance at a time",
                    note="the loop only calls tasks: each call is a for_each step",
                )
                for statement in node.body:
                    self._statement(statement)
            else:
                self.construct(
                    "loop",
                    node,
                    f"for_each over {show(over.yaml)}",
                    False,
                    todo=f"loop `for {node.target.id} in {self.module.text(node.iter)}` has side "
                    "effects besides task calls: its task calls became for_each steps, the "
                    "rest was not converted",
                )
                for statement in node.body:
                    self._statement(statement)
        finally:
            self.loop = None
            self.env.pop(node.target.id, None)
        if simple and len(self.pipeline.steps) > before:
            last = self.pipeline.steps[-1]
            self.barrier = {last.name}
            appended = self._appended_list(node)
            if appended:
                self.env[appended] = Value(_ref(last.name), (last.name,), iterable=True)

    def _map_like(self, node: ast.For | ast.AsyncFor) -> bool:
        """Whether a loop only calls one task per element (possibly appending what it returns)."""
        if len(node.body) != 1 or node.orelse:
            return False
        statement = node.body[0]
        call = statement.value if isinstance(statement, ast.Expr) else None
        if isinstance(call, ast.Await):
            call = call.value
        if isinstance(call, ast.Call) and self._callee(call) is not None:
            return True
        return self._appended_list(node) is not None

    def _appended_list(self, node: ast.For | ast.AsyncFor) -> str | None:
        statement = node.body[0] if len(node.body) == 1 else None
        call = statement.value if isinstance(statement, ast.Expr) else None
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "append"
            and isinstance(call.func.value, ast.Name)
            and self.env.get(call.func.value.id, Value()).special == "empty"
            and len(call.args) == 1
        ):
            inner = call.args[0]
            inner = inner.value if isinstance(inner, ast.Await) else inner
            if isinstance(inner, ast.Call) and self._callee(inner) is not None:
                return call.func.value.id
        return None

    def _with(self, node: ast.With | ast.AsyncWith) -> None:
        extra: dict[str, Any] = {}
        for item in node.items:
            call = item.context_expr
            args = call.args if isinstance(call, ast.Call) else []
            func = call.func if isinstance(call, ast.Call) else None
            if func is not None and self.module.is_prefect(func, "tags"):
                tags = [a.value for a in args if isinstance(a, ast.Constant)]
                extra["tags"] = tags
                self.construct("tags", node, f"tags {tags} on the steps inside")
            elif func is not None and self.module.is_prefect(func, "concurrency") and args:
                name = args[0]
                if isinstance(name, ast.Constant) and isinstance(name.value, str):
                    extra["concurrency"] = self._limit(name.value, node)
            else:
                self.construct(
                    "flow code",
                    node,
                    "its body's steps are converted",
                    False,
                    todo=f"`with {self.module.text(call)}` around task calls is not converted",
                )
        self.step_options.append(extra)
        try:
            for statement in node.body:
                self._statement(statement)
        finally:
            self.step_options.pop()

    def _limit(
        self, name: str, node: ast.AST | int, module: Module | None = None, step: Step | None = None
    ) -> dict[str, Any]:
        limit = self.options.tag_limits.get(name)
        if limit is not None:
            self.construct(
                "concurrency", node, f"concurrency: {{key: {name}, limit: {limit}}}", module=module
            )
            return {"key": name, "limit": limit}
        self.construct(
            "concurrency",
            node,
            f"concurrency: {{key: {name}, limit: 1}}",
            False,
            todo=f"concurrency limit '{name}' is set on the Prefect server: 1 assumed; rerun with "
            f"--tag-limit {name}=N or edit the step's `concurrency`",
            module=module,
            step=step,
        )
        return {"key": name, "limit": 1}

    @contextmanager
    def _under(self, why: str) -> Iterator[None]:
        self.under.append(why)
        try:
            yield
        finally:
            self.under.pop()

    # -- expressions -----------------------------------------------------------------------------------

    def _value(self, node: ast.expr, *, statement: bool = False, blocking: bool = True) -> Value:
        """What an expression is in elt; task and subflow calls in it become steps."""
        module = self.module
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bytes | complex) or node.value is Ellipsis:
                return Value(exact=False, code=module.text(node))
            return Value(node.value)
        if isinstance(node, ast.Await):
            awaited = self._value(node.value, statement=statement, blocking=True)
            if isinstance(node.value, ast.Name):  # a task started earlier: what follows waits for it
                self.barrier |= set(awaited.steps)
            return awaited
        if isinstance(node, ast.Name):
            if node.id in self.env:
                return self.env[node.id]
            if node.id in module.constants:
                literal = yaml_literal(module.constants[node.id])
                return Value(literal, iterable=isinstance(literal, list))
            return Value(exact=False, code=node.id)
        if isinstance(node, ast.JoinedStr):
            return self._template(node)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            items = [self._value(e, blocking=blocking) for e in node.elts if not isinstance(e, ast.Starred)]
            if any(isinstance(e, ast.Starred) for e in node.elts):
                return Value(exact=False, code=module.text(node), steps=_steps(items))
            exact = all(i.exact for i in items)
            return Value(
                [i.yaml for i in items] if exact else None,
                _steps(items),
                exact,
                module.text(node),
                iterable=True,
                items=tuple(items),
            )
        if isinstance(node, ast.Dict):
            if any(k is None or not isinstance(k, ast.Constant) for k in node.keys):
                return Value(exact=False, code=module.text(node))
            values = [self._value(v, blocking=blocking) for v in node.values]
            exact = all(v.exact for v in values)
            keys = [k.value for k in node.keys]  # type: ignore[union-attr]
            return Value(
                dict(zip(keys, [v.yaml for v in values], strict=True)) if exact else None,
                _steps(values),
                exact,
                module.text(node),
            )
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self._value(node.left), self._value(node.right)
            if left.exact and right.exact and isinstance(left.yaml, str) and isinstance(right.yaml, str):
                return Value(left.yaml + right.yaml)
            return Value(exact=False, code=module.text(node), steps=_steps([left, right]))
        if isinstance(node, ast.Call):
            return self._call_value(node, statement=statement, blocking=blocking)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call):
            block = node.value
            if (
                node.attr == "value"
                and isinstance(block.func, ast.Attribute)
                and block.func.attr == "load"
                and module.is_prefect(block.func.value, "JSON", "String", "DateTime")
                and block.args
                and isinstance(block.args[0], ast.Constant)
            ):
                return self._variable(str(block.args[0].value), None, node, block=True)
        if isinstance(node, ast.ListComp | ast.GeneratorExp):
            return self._comprehension(node, blocking)
        for child in ast.walk(node):  # what else it reads may still run tasks, e.g. `len(x)`
            if isinstance(child, ast.Call) and child is not node and self._callee(child) is not None:
                return Value(exact=False, code=module.text(node), steps=self._value(child).steps)
        steps = tuple(
            s
            for child in ast.walk(node)
            if isinstance(child, ast.Name)
            for s in self.env.get(child.id, Value()).steps
        )
        return Value(exact=False, code=module.text(node), steps=steps)

    def _template(self, node: ast.JoinedStr) -> Value:
        text = ""
        for part in node.values:
            if isinstance(part, ast.Constant):
                text += str(part.value)
                continue
            assert isinstance(part, ast.FormattedValue)
            inner = self._value(part.value)
            if (
                part.format_spec is not None
                or part.conversion not in (-1, 115)
                or not inner.exact
                or inner.steps
            ):
                return Value(exact=False, code=self.module.text(node), steps=inner.steps)
            if isinstance(inner.yaml, dict | list):
                return Value(exact=False, code=self.module.text(node))
            text += "" if inner.yaml is None else str(inner.yaml)
        return Value(text)

    def _comprehension(self, node: ast.ListComp | ast.GeneratorExp, blocking: bool) -> Value:
        code = self.module.text(node)
        if (
            len(node.generators) != 1
            or node.generators[0].ifs
            or not isinstance(node.generators[0].target, ast.Name)
        ):
            return Value(exact=False, code=code)
        generator = node.generators[0]
        assert isinstance(generator.target, ast.Name)
        name = generator.target.id
        over = self._value(generator.iter)
        element = node.elt.value if isinstance(node.elt, ast.Await) else node.elt
        if _is_started(self.module, element):  # asyncio.create_task(task(…)): the task's call
            assert isinstance(element, ast.Call)
            element = element.args[0]
            blocking = False
        # [f.result() for f in futures]: the futures' values
        if (
            isinstance(element, ast.Call)
            and isinstance(element.func, ast.Attribute)
            and element.func.attr in ("result", "wait")
            and isinstance(element.func.value, ast.Name)
            and element.func.value.id == name
        ):
            self.barrier |= set(over.steps)
            return over
        if not isinstance(element, ast.Call) or self._callee(element) is None or self.loop is not None:
            return Value(exact=False, code=code, steps=over.steps)
        if not over.exact:  # one step, as close as it gets
            self.env[name] = Value(exact=False, code=name)
            try:
                with self._under(f"ran once per element of `{over.code}` (line {node.lineno})"):
                    value = self._call_value(element, statement=False, blocking=blocking)
            finally:
                self.env.pop(name, None)
            return Value(exact=False, code=code, steps=value.steps)
        self.env[name] = Value("${for_each.item}", special="item")
        self.loop = over
        try:
            value = self._call_value(element, statement=False, blocking=blocking, comprehension=True)
        finally:
            self.loop = None
            self.env.pop(name, None)
        return replace(value, iterable=True)

    def _call_value(
        self, call: ast.Call, *, statement: bool, blocking: bool, comprehension: bool = False
    ) -> Value:
        module = self.module
        func = call.func
        if is_dynamic_import(module, call):
            self.construct(
                "dynamic import",
                call,
                "not converted",
                False,
                todo=f"dynamic import `{module.text(call)}`: import the module in the block that needs it",
            )
            return Value(exact=False, code=module.text(call), special="reported")
        secret = secret_name(module, call)
        if secret is not None:
            return self._secret(secret, call)
        variable = variable_get(module, call)
        if variable is not None:
            return self._variable(variable[0], variable[1], call, has_default=_has_default(call))
        if isinstance(func, ast.Attribute) and func.attr == "load" and module.is_prefect(func.value):
            kind = (module.qualify(func.value) or "").rsplit(".", 1)[-1]
            name = str(call.args[0].value) if call.args and isinstance(call.args[0], ast.Constant) else "?"
            if kind == "Secret":
                return Value(exact=False, code=module.text(call), special=f"secret:{name}")
            self.construct(
                "block",
                call,
                "not converted",
                False,
                todo=f"Prefect block {kind} '{name}': put its settings in elt.yml (secrets as "
                "${secret:NAME}) and pass them to the blocks that need them",
            )
            return Value(exact=False, code=module.text(call), special="reported")
        if isinstance(func, ast.Attribute) and func.attr == "get" and not call.args:
            holder = self._value(func.value)
            if holder.special.startswith("secret:"):
                return self._secret(holder.special.partition(":")[2], call)
        if module.is_prefect(func, "unmapped"):
            return replace(self._value(call.args[0]), special="unmapped") if call.args else Value(exact=False)
        if module.is_prefect(func, "get_run_logger"):
            return Value(special="logger")
        if module.is_prefect(func, "run_deployment"):
            return self._run_deployment(call, statement)
        if module.is_prefect(func, "wait"):  # prefect.futures.wait(futures)
            for arg in call.args:
                self.barrier |= set(self._value(arg).steps)
            return Value(special="log")
        if self._is_log(call):
            self.construct("log", call, "not converted", True, "a log line of the flow; elt logs every step")
            return Value(special="log")
        if isinstance(func, ast.Attribute) and func.attr in ("result", "wait") and not self._callee(call):
            inner = self._value(func.value, blocking=blocking)
            if inner.steps:
                self.barrier |= set(inner.steps)
                return inner if func.attr == "result" else Value(special="log", steps=inner.steps)
        qualified = module.qualify(func) or ""
        if qualified.startswith("asyncio.") or qualified.startswith("anyio."):
            return self._asyncio(call, qualified.rpartition(".")[2])
        if qualified in ("os.path.join", "posixpath.join"):
            parts = [self._value(a) for a in call.args]
            if all(p.exact and isinstance(p.yaml, str) for p in parts):
                return Value("/".join(str(p.yaml).rstrip("/") for p in parts))
        if isinstance(func, ast.Name) and func.id == "str" and len(call.args) == 1:
            inner = self._value(call.args[0])
            if inner.exact and isinstance(inner.yaml, str):
                return inner
        callee = self._callee(call)
        if callee is not None:
            target, how, overrides = callee
            if target.module.flows.get(target.name) is target:
                return self._subflow(call, target)
            return self._task_call(
                call, target, how, overrides, blocking=blocking, comprehension=comprehension
            )
        steps: list[Value] = [self._value(a) for a in call.args]
        steps += [self._value(k.value) for k in call.keywords]
        return Value(exact=False, code=module.text(call), steps=_steps(steps))

    def _is_log(self, call: ast.Call) -> bool:
        func = call.func
        if isinstance(func, ast.Name) and func.id == "print":
            return True
        return (
            isinstance(func, ast.Attribute)
            and func.attr in _LOG_METHODS
            and isinstance(func.value, ast.Name)
            and (
                self.env.get(func.value.id, Value()).special == "logger" or func.value.id in ("logger", "log")
            )
        )

    def _variable(
        self,
        name: str,
        default: Any,
        node: ast.AST,
        *,
        has_default: bool = True,
        block: bool = False,
        step: Step | None = None,
        module: Module | None = None,
    ) -> Value:
        """A Prefect Variable (or JSON/String block) as a pipeline variable of the same name."""
        key = "".join(c if c.isalnum() else "_" for c in name)
        if key in self.flow.params:
            key = f"{key}_variable"
        self.pipeline.variables.setdefault(key, yaml_literal(default))
        what = f"block {name}" if block else f"Variable '{name}'"
        if block or not has_default:
            self.construct(
                "variable",
                node,
                f"variable '{key}'",
                False,
                todo=f"{what} lives on the Prefect server: set variable '{key}' in elt.yml (or pass --var)",
                step=step,
                module=module,
            )
        else:
            self.construct(
                "variable",
                node,
                f"variable '{key}' = {show(yaml_literal(default))}",
                note="its value on the Prefect server may differ from the default",
                module=module,
            )
        return Value("${vars." + key + "}", iterable=isinstance(default, list))

    def _secret(self, name: str, node: ast.AST | int, module: Module | None = None, where: str = "") -> Value:
        """A Prefect Secret block as an elt secret of the default backend, named as an environment
        variable could be (`crm-api-token` → `CRM_API_TOKEN`); its value is for the user to set."""
        key = "".join(c if c.isalnum() else "_" for c in name).upper().strip("_") or "SECRET"
        reference = "${secret:" + key + "}"
        self.construct(
            "secret", node, f"{where}{reference}", note=f"Prefect Secret block '{name}'", module=module
        )
        line = node if isinstance(node, int) else getattr(node, "lineno", self.flow.line)
        follow_up = FollowUp(
            line,
            f"set secret {key} (Prefect's Secret block '{name}'): `elt secrets set {key}`, "
            "or the environment variable",
            module.label if module and module is not self.module else None,
        )
        if follow_up not in self.report.follow_ups:
            self.report.follow_ups.append(follow_up)
        return Value(reference)

    def _asyncio(self, call: ast.Call, name: str) -> Value:
        if name == "gather":
            before = set(self.barrier)
            items: list[Value] = []
            for arg in call.args:
                if isinstance(arg, ast.Starred) and isinstance(arg.value, ast.ListComp | ast.GeneratorExp):
                    items.append(self._comprehension(arg.value, blocking=False))
                elif isinstance(arg, ast.Starred):
                    items.append(
                        Value(exact=False, code=self.module.text(arg), steps=self._value(arg.value).steps)
                    )
                else:
                    self.barrier = set(before)
                    items.append(self._value(arg, blocking=False))
            self.barrier = before | set(_steps(items))
            self.construct("asyncio.gather", call, "parallel steps")
            if len(call.args) == 1 and isinstance(call.args[0], ast.Starred) and items[0].step:
                return items[0]
            exact = all(i.exact for i in items)
            return Value(
                [i.yaml for i in items] if exact else None,
                _steps(items),
                exact,
                self.module.text(call),
                iterable=True,
                items=tuple(items),
            )
        if name == "run":
            return self._value(call.args[0]) if call.args else Value(special="log")
        if _is_started(self.module, call):
            self.construct("async orchestration", call, "a parallel step, as with .submit()")
            return self._value(call.args[0], blocking=False)
        if name in _ASYNC_UNFOLLOWED:
            steps = _steps([self._value(a) for a in call.args])
            self.construct(
                "async orchestration",
                call,
                "not converted",
                False,
                todo=f"`{self.module.text(call)}`: the converter cannot follow this async "
                "orchestration; the task calls in it became steps",
            )
            return Value(exact=False, code=self.module.text(call), steps=steps, special="reported")
        if name == "sleep":
            self.construct(
                "flow code",
                call,
                "not converted",
                False,
                todo=f"`{self.module.text(call)}` between task calls: elt does not wait there",
            )
            return Value(special="log")
        return Value(exact=False, code=self.module.text(call))

    def _callee(self, call: ast.Call) -> tuple[FunctionDef, str, dict[str, ast.expr]] | None:
        """(task or flow, how it is called: direct|submit|map|fn, `with_options` overrides)."""
        func = call.func
        how = "direct"
        overrides: dict[str, ast.expr] = {}
        if isinstance(func, ast.Attribute) and func.attr in ("submit", "map", "fn", "delay"):
            how = {"delay": "submit"}.get(func.attr, func.attr)
            func = func.value
        if (
            isinstance(func, ast.Call)
            and isinstance(func.func, ast.Attribute)
            and func.func.attr == "with_options"
        ):
            overrides = {k.arg: k.value for k in func.keywords if k.arg}
            func = func.func.value
        found = self.catalog.find(self.module, func)
        return (found, how, overrides) if found is not None else None

    # -- steps -----------------------------------------------------------------------------------------

    def _new_name(self, base: str) -> str:
        names = {s.name for s in self.pipeline.steps}
        candidate, n = base, 2
        while candidate in names:
            candidate, n = f"{base}_{n}", n + 1
        return candidate

    def _add(self, step: Step, data: tuple[str, ...], extra_needs: tuple[str, ...] = ()) -> None:
        """Append a step needing the barrier, the steps it takes data from and `extra_needs`, with
        needs already implied by others left out."""
        wanted = {s for s in (*self.barrier, *data, *extra_needs) if s in self.ancestors and s != step.name}
        implied = {a for s in wanted for a in self.ancestors[s]}
        step.needs = [s for s in self.ancestors if s in wanted and s not in implied]
        self.ancestors[step.name] = set(wanted) | implied
        step.todos[:0] = self.pending
        self.pending = []
        for extra in self.step_options:
            if "concurrency" in extra and step.concurrency is None:
                step.concurrency = extra["concurrency"]
        self.pipeline.steps.append(step)

    def _bind(self, call: ast.Call, target: FunctionDef) -> tuple[dict[str, ast.expr], list[str]]:
        """The call's arguments by parameter name, and what could not be bound."""
        bound: dict[str, ast.expr] = {}
        problems: list[str] = []
        positional = [p for p in target.params if p not in {a.arg for a in target.node.args.kwonlyargs}]
        for i, arg in enumerate(call.args):
            if isinstance(arg, ast.Starred):
                problems.append(f"`*{self.module.text(arg.value)}`")
            elif i < len(positional):
                bound[positional[i]] = arg
            else:
                problems.append(f"positional argument `{self.module.text(arg)}`")
        for keyword in call.keywords:
            if keyword.arg is None:
                problems.append(f"`**{self.module.text(keyword.value)}`")
            elif keyword.arg not in ("wait_for", "return_state"):
                bound[keyword.arg] = keyword.value
        return bound, problems

    def _task_call(
        self,
        call: ast.Call,
        task: FunctionDef,
        how: str,
        overrides: dict[str, ast.expr],
        *,
        blocking: bool,
        comprehension: bool,
    ) -> Value:
        stem = self.catalog.stems[task.module.label]
        step = Step(self._new_name(task.name), "python", f"blocks/{stem}.py:{task.name}", call.lineno)
        self.catalog.called.add((task.module.label, task.name))
        bound, problems = self._bind(call, task)
        data: list[str] = []
        mapped: list[tuple[str, Value]] = []
        for param, expr in bound.items():
            value = self._value(expr, blocking=blocking)
            data.extend(value.steps)
            if how == "map" and value.special != "unmapped" and (value.iterable or value.steps):
                mapped.append((param, value))
                continue
            if not value.exact:
                self.construct(
                    "argument",
                    expr,
                    f"argument '{param}' of step '{step.name}' left out",
                    False,
                    todo=f"argument `{param}={value.code}` of {task.name} could not be converted: "
                    "pass it through a variable or compute it in the block",
                    step=step,
                )
                continue
            step.arguments[param] = value.yaml
            for source in value.steps:
                self.construct("data", expr, f"arguments.{param} ← {_ref(source)} (needs: {source})")
        for problem in problems:
            self.construct(
                "argument",
                call,
                f"{problem} left out",
                False,
                todo=f"{problem} in the call of {task.name} cannot be bound to a parameter",
                step=step,
            )
        if task.varargs and (problems or any(p not in task.params for p in bound)):
            self.construct(
                "argument",
                call,
                "arguments of *args/**kwargs",
                False,
                todo=f"{task.name} takes *args/**kwargs: check the step's arguments",
                step=step,
            )
        wait_for = next((k.value for k in call.keywords if k.arg == "wait_for"), None)
        waits: tuple[str, ...] = ()
        if wait_for is not None:
            waits = self._value(wait_for).steps
            self.construct("wait_for", wait_for, f"needs: {list(waits)}" if waits else "nothing to wait for")
        if any(k.arg == "return_state" for k in call.keywords):
            self.construct(
                "return_state",
                call,
                "not converted",
                False,
                todo="return_state=True: elt steps give their value, not a state; use `if: failure` "
                "steps for failures",
                step=step,
            )
        if how == "map":
            self._mapped(step, mapped, call)
        elif self.loop is not None:
            step.for_each = self.loop.yaml
            if blocking and how == "direct":  # Prefect ran these calls one after the other
                step.concurrency = 1
        if data or (self.loop is not None and self.loop.steps):
            self.catalog.data_input.add((task.module.label, task.name))
        self._task_options(step, task, overrides)
        self._task_body_arguments(step, task)
        self._add(step, tuple(data) + (self.loop.steps if self.loop else ()), waits)
        self._task_hooks(step, task)
        kind = {"submit": "submit", "map": "map", "fn": "task call"}.get(how, "task call")
        mapped_to = f"step '{step.name}' (python: {step.target})"
        if how == "submit":
            mapped_to += ", parallel: needs only the steps it takes data from"
        elif how == "map" or self.loop is not None:
            mapped_to += f", for_each: {show(step.for_each)}"
        note = "`.fn()` calls the function without a task run; elt runs a step" if how == "fn" else ""
        self.construct(kind, call, mapped_to, note=note, step=step)
        if blocking and how in ("direct", "fn"):
            self.barrier = {step.name}
        return Value(
            _ref(step.name), (step.name,), iterable=how == "map" or self.loop is not None or comprehension
        )

    def _mapped(self, step: Step, mapped: list[tuple[str, Value]], call: ast.Call) -> None:
        if not mapped:
            self.construct(
                "map",
                call,
                "a single step",
                False,
                todo="`.map()` with nothing to iterate: check which argument is the list",
                step=step,
            )
            return
        param, value = mapped[0]
        if not value.exact:
            self.construct(
                "map",
                call,
                "for_each left out",
                False,
                todo=f"`.map()` over `{value.code}`, which the converter cannot express",
                step=step,
            )
            return
        step.for_each = value.yaml
        step.arguments[param] = "${for_each.item}"
        for source in value.steps:
            self.construct("data", call, f"for_each ← {_ref(source)} (needs: {source})")
        for other, rest in mapped[1:]:
            step.arguments[other] = rest.yaml
            self.construct(
                "map",
                call,
                f"argument '{other}' passed whole",
                False,
                todo=f"`.map()` zips '{param}' with '{other}'; elt's for_each iterates one list: "
                f"'{other}' is passed whole, pair them in a block",
                step=step,
            )

    def _task_options(self, step: Step, task: FunctionDef, overrides: dict[str, ast.expr]) -> None:
        options = {**task.options, **overrides}
        module = task.module
        for key, node in options.items():
            if key in NO_ELT_EQUIVALENT:
                self.construct(
                    f"task {key}", node, "not converted", False, NO_ELT_EQUIVALENT[key], module=module
                )
            elif key not in HARMLESS:
                self.construct(
                    f"task {key}", node, "not converted", False, "an option elt does not know", module=module
                )
            elif HARMLESS[key]:
                self.construct(f"task {key}", node, "nothing needed", True, HARMLESS[key], module=module)
        if "retries" in options:
            retries, automatic, note = retry_policy(
                module,
                options["retries"],
                options.get("retry_delay_seconds"),
                options.get("retry_jitter_factor"),
            )
            step.retries = retries
            self.construct(
                "retries",
                options["retries"],
                f"retries: {show(retries)}",
                automatic,
                note,
                module=module,
                step=step,
            )
        elif self.flow_retries:
            step.retries = dict(self.flow_retries)
        if "timeout_seconds" in options:
            seconds = literal(options["timeout_seconds"])
            if isinstance(seconds, int | float) and not isinstance(seconds, bool):
                step.timeout = float(seconds)
                self.construct("timeout", options["timeout_seconds"], f"timeout: {seconds:g}", module=module)
            else:
                self.construct(
                    "timeout",
                    options["timeout_seconds"],
                    "not converted",
                    False,
                    "timeout_seconds is not a number",
                    module=module,
                    step=step,
                )
        cache = cache_config(module, options)
        if cache is not None:
            config, automatic, mapped_to, note = cache
            step.cache = config
            where = (
                options.get("cache_key_fn") or options.get("cache_policy") or options.get("cache_expiration")
            )
            self.construct("cache", where or task.node, mapped_to, automatic, note, module=module, step=step)
        tags = options.get("tags")
        if tags is not None:
            names = literal(tags)
            if isinstance(names, list | tuple | set) and all(isinstance(t, str) for t in names):
                limited = [t for t in names if t in self.options.tag_limits]
                if limited and step.concurrency is None:
                    step.concurrency = self._limit(limited[0], tags, module, step)
                else:
                    self.construct(
                        "tags",
                        tags,
                        f"tags {sorted(names)}: labels only",
                        True,
                        "if Prefect limits a tag's concurrency, rerun with --tag-limit TAG=N",
                        module=module,
                    )
            else:
                self.construct(
                    "tags",
                    tags,
                    "not converted",
                    False,
                    "tags are not a literal list",
                    module=module,
                    step=step,
                )
        for extra in self.step_options:
            if "tags" in extra and step.concurrency is None:
                limited = [t for t in extra["tags"] if t in self.options.tag_limits]
                if limited:
                    step.concurrency = {"key": limited[0], "limit": self.options.tag_limits[limited[0]]}

    def _task_body_arguments(self, step: Step, task: FunctionDef) -> None:
        """Secrets, variables and concurrency the task's body asks Prefect for, as the step's."""
        body = task.module.bodies[task.name]
        for param, name in body.secrets.items():
            line = next((e.lineno for e, p in body.rewrites if p == param), task.node.lineno)
            value = self._secret(name, line, task.module, f"arguments.{param}: ")
            step.arguments[param] = value.yaml
        for param, (name, default) in body.variables.items():
            where: ast.AST = next((e for e, p in body.rewrites if p == param), task.node)
            value = self._variable(name, default, where, step=step, module=task.module)
            step.arguments[param] = value.yaml
        for name, line in body.concurrency:
            if step.concurrency is None:
                step.concurrency = self._limit(name, line, task.module, step)
        for line in body.dynamic_imports:
            self.construct(
                "dynamic import",
                line,
                "kept in the block",
                False,
                todo="the task imports a module dynamically: check the block can import it",
                module=task.module,
            )
        for name, line in body.prefect_uses:
            self.construct(
                "prefect API",
                line,
                "not converted",
                False,
                todo=f"the task uses {name}, which elt does not provide: replace it in the block",
                module=task.module,
            )
        if task.is_async:
            self.construct("async task", task.node, "an async block (elt awaits it)", module=task.module)

    def _task_hooks(self, step: Step, task: FunctionDef) -> None:
        for option in ("on_completion", "on_failure"):
            node = task.options.get(option)
            if node is None:
                continue
            for hook in node.elts if isinstance(node, ast.List | ast.Tuple) else [node]:
                self._hook(hook, option, task.name, task.module, after=step)

    def _flow_hooks(self) -> None:
        for option in ("on_completion", "on_failure", "on_crashed"):
            node = self.flow.options.get(option)
            if node is None:
                continue
            for hook in node.elts if isinstance(node, ast.List | ast.Tuple) else [node]:
                self._hook(hook, option, flow_name(self.flow), self.module, after=None)

    def _hook(self, hook: ast.expr, option: str, owner: str, module: Module, after: Step | None) -> None:
        name = hook.id if isinstance(hook, ast.Name) else None
        function = next(
            (
                n
                for n in module.tree.body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name
            ),
            None,
        )
        if function is None:
            self.construct(
                "hook",
                hook,
                "not converted",
                False,
                todo=f"{option} hook `{module.text(hook)}` is not a function of this file",
                module=module,
            )
            return
        url = webhook_url(module, function)
        if url is not None and after is None:
            on = "success" if option == "on_completion" else "failure"
            self.pipeline.notify.append({"url": url, "on": [on]})
            self.construct(
                "hook",
                hook,
                f"notify: {url} on {on}",
                True,
                "elt posts its own JSON event, not the hook's body",
                module=module,
            )
            return
        deployment = hook_deployment(module, function)
        if deployment is not None and option == "on_completion" and after is None:
            name, parameters = deployment
            self._trigger(
                name,
                hook,
                parameters or {},
                automatic=parameters is not None,
                kind="hook",
                note="the flow's on_completion hook ran it; elt starts it when the pipeline succeeded"
                if parameters is not None
                else "the hook's parameters are not literal: give the trigger its variables",
            )
            return
        state = HOOK_STATES[option]
        block = f"{function.name}__{option}"
        stem = self.catalog.stems[module.label]
        step = Step(self._new_name(block), "python", f"blocks/{stem}.py:{block}", hook.lineno)
        if option != "on_completion":
            step.condition = "failure"
        saved = self.barrier
        if after is not None:
            self.barrier = {after.name}
        elif option == "on_completion":
            sinks = [
                s.name
                for s in self.pipeline.steps
                if s.condition == "success" and not any(s.name in o.needs for o in self.pipeline.steps)
            ]
            self.barrier = set(sinks)
        else:
            self.barrier = set()
        self._add(step, ())
        self.barrier = saved
        self.result.hooks.append(HookStep(module, function.name, block, owner, state))
        when = "when the pipeline's steps succeeded" if option == "on_completion" else "when a step failed"
        if after is not None:
            when = f"after step '{after.name}'" + (" failed" if option != "on_completion" else " succeeded")
        note = (
            "flow, flow_run and state are stand-ins (name, parameters, state) from blocks/prefect_compat.py"
        )
        if option == "on_crashed":
            note += "; elt has no crashed state: it runs when a step failed"
        self.construct("hook", hook, f"step '{step.name}' {when}", True, note, module=module)
        for used, line in _prefect_in(module, function):
            self.construct(
                "prefect API",
                line,
                "not converted",
                False,
                todo=f"hook {function.name} uses {used}, which elt does not provide",
                module=module,
            )

    # -- subflows and deployments ----------------------------------------------------------------------

    def _subflow(self, call: ast.Call, flow: FunctionDef) -> Value:
        child = _convert(self.catalog, flow, self.options, self.stack)
        name = self.catalog.pipelines[(flow.module.label, flow.name)]
        step = Step(self._new_name(name), "pipeline", name, call.lineno)
        if child is None:
            self.construct(
                "subflow",
                call,
                "not converted",
                False,
                todo=f"flow {flow.name} calls itself (through {' → '.join(self.stack)})",
            )
            return Value(exact=False, code=self.module.text(call))
        bound, problems = self._bind(call, flow)
        data: list[str] = []
        for param, expr in bound.items():
            value = self._value(expr)
            data.extend(value.steps)
            if value.steps or not value.exact:
                self.construct(
                    "argument",
                    expr,
                    f"variable '{param}' of pipeline '{name}' left out",
                    False,
                    todo=f"subflow parameter `{param}={self.module.text(expr)}`: a pipeline step "
                    "passes variables, not step outputs; read it in the child's blocks",
                    step=step,
                )
                continue
            step.variables[param] = value.yaml
        for problem in problems:
            self.construct(
                "argument",
                call,
                f"{problem} left out",
                False,
                todo=f"{problem} in the call of subflow {flow.name} cannot be bound",
                step=step,
            )
        self._add(step, tuple(data))
        self.barrier = {step.name}
        self.construct("subflow", call, f"step '{step.name}' (pipeline: {name})")
        if child.pipeline.output:
            inner = f"{step.name}/{child.pipeline.output}"
            return Value(_ref(inner), (step.name,))
        return Value(exact=False, code=self.module.text(call), steps=(step.name,))

    def _run_deployment(self, call: ast.Call, statement: bool) -> Value:
        name_node = (
            call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "name"), None)
        )
        name = name_node.value if isinstance(name_node, ast.Constant) else None
        parameters = next((k.value for k in call.keywords if k.arg == "parameters"), None)
        variables: dict[str, Any] = {}
        exact = True
        if parameters is not None:
            value = self._value(parameters)
            if value.exact and isinstance(value.yaml, dict) and "${" not in repr(value.yaml):
                variables = value.yaml
            else:
                exact = False
        timeout = next((k.value for k in call.keywords if k.arg == "timeout"), None)
        fire_and_forget = isinstance(timeout, ast.Constant) and timeout.value == 0
        last = statement and self._is_last(call)
        if not isinstance(name, str):
            self.construct(
                "run_deployment",
                call,
                "not converted",
                False,
                todo=f"run_deployment of `{self.module.text(name_node) if name_node else '?'}`: "
                "not a literal 'flow/deployment' name",
            )
            return Value(exact=False, code=self.module.text(call))
        self._trigger(
            name,
            call,
            variables,
            automatic=exact and (fire_and_forget or last),
            note="" if exact else "its parameters come from the run: pass them as the trigger's variables",
        )
        return Value(exact=False, code=self.module.text(call), special="log")

    def _is_last(self, call: ast.Call) -> bool:
        body = self.flow.node.body
        return bool(body) and any(n is call for n in ast.walk(body[-1]))

    def _trigger(
        self,
        deployment: str,
        node: ast.AST,
        variables: dict[str, Any],
        *,
        automatic: bool,
        note: str = "",
        kind: str = "run_deployment",
    ) -> None:
        """A completion trigger that runs the pipeline of `deployment`'s flow after this pipeline."""
        flow_part = deployment.partition("/")[0]
        target = self.catalog.flow_by_name(flow_part)
        name = f"{self.pipeline.name}-then-{deployment.replace('/', '-')}"
        source = f"run_deployment('{deployment}') in {self.module.label}:{getattr(node, 'lineno', 0)}"
        if target is None:
            todo = f"no converted flow '{flow_part}'"
            self.result.triggers.append(Trigger(name, self.pipeline.name, flow_part, variables, todo, source))
            self.construct(
                kind,
                node,
                "trigger written commented out",
                False,
                todo=f"deployment '{deployment}' runs flow '{flow_part}', which was not converted: "
                "convert it too and uncomment the trigger",
            )
            return
        pipeline = self.catalog.pipelines[(target.module.label, target.name)]
        self.result.triggers.append(Trigger(name, self.pipeline.name, pipeline, variables, source=source))
        mapped_to = f"trigger '{name}': {pipeline} runs after {self.pipeline.name} succeeds"
        if automatic:
            note = note or "Prefect started it at this line; elt starts it when the whole pipeline succeeded"
            self.construct(kind, node, mapped_to, True, note)
        else:
            todo = note or (
                f"run_deployment('{deployment}') waits for the run and may use its result: elt "
                "triggers it after the pipeline"
            )
            self.construct(kind, node, mapped_to, False, todo=todo)


def _prefect_in(module: Module, function: ast.AST) -> list[tuple[str, int]]:
    from elt.convert.source import prefect_uses

    return prefect_uses(module, function)


def _is_started(module: Module, node: ast.expr) -> bool:
    """`asyncio.create_task(…)` or `asyncio.ensure_future(…)` of one call."""
    return (
        isinstance(node, ast.Call)
        and (module.qualify(node.func) or "") in ("asyncio.create_task", "asyncio.ensure_future")
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Call)
    )


def _has_default(call: ast.Call) -> bool:
    return len(call.args) > 1 or any(k.arg == "default" for k in call.keywords)


def _steps(values: list[Value]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s for v in values for s in v.steps))
