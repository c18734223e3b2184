"""What a conversion produces, as plain values: pipelines, steps, block files, schedules, triggers, and
the report of every construct found in the source with how (and whether) it was mapped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Construct:
    """One thing found in a flow (a task call, `.map()`, retries, a schedule…) and what became of it.

    `automatic` is False when the result needs a person: the place carries a `TODO` comment and the
    report lists it as a follow-up. `file` is set when the construct is in another file than the flow
    (a task imported from a module, a deployment of prefect.yaml).
    """

    kind: str
    line: int
    mapped_to: str
    automatic: bool
    note: str = ""
    file: str | None = None


@dataclass
class Step:
    """A pipeline step in the making (see docs/pipelines.md for each key)."""

    name: str
    kind: str  # "python" | "pipeline"
    target: str  # python: blocks/FILE.py:FUNCTION; pipeline: the pipeline's name
    line: int
    needs: list[str] = field(default_factory=list)
    arguments: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)  # pipeline steps
    for_each: Any = None
    retries: dict[str, Any] | None = None
    timeout: float | None = None
    cache: dict[str, Any] | None = None
    concurrency: Any = None
    condition: str = "success"
    todos: list[str] = field(default_factory=list)  # comments written above the step

    def as_yaml(self) -> dict[str, Any]:
        """The step as the mapping written into elt.yml."""
        entry: dict[str, Any] = {"name": self.name, self.kind: self.target}
        if self.needs:
            entry["needs"] = list(self.needs)
        if self.condition != "success":
            entry["if"] = self.condition
        if self.for_each is not None:
            entry["for_each"] = self.for_each
        if self.arguments:
            entry["arguments"] = self.arguments
        if self.variables:
            entry["variables"] = self.variables
        if self.retries:
            entry["retries"] = self.retries
        if self.timeout is not None:
            entry["timeout"] = _number(self.timeout)
        if self.cache is not None:
            entry["cache"] = self.cache
        if self.concurrency is not None:
            entry["concurrency"] = self.concurrency
        return entry


@dataclass
class Pipeline:
    """A pipeline converted from one flow."""

    name: str
    flow: str  # the flow function's name
    file: str  # the flow's file, as given
    line: int
    description: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    max_parallel: int | None = None
    notify: list[dict[str, Any]] = field(default_factory=list)
    todos: list[str] = field(default_factory=list)  # comments written above the pipeline's steps
    output: str | None = None  # the step whose value the flow returns (for parents' `pipeline:` steps)

    def as_yaml(self) -> dict[str, Any]:
        """The pipeline as the mapping written into elt.yml (steps without their comments)."""
        entry: dict[str, Any] = {}
        if self.description:
            entry["description"] = self.description
        if self.max_parallel is not None:
            entry["max_parallel"] = self.max_parallel
        if self.variables:
            entry["variables"] = self.variables
        if self.notify:
            entry["notify"] = self.notify
        entry["steps"] = [s.as_yaml() for s in self.steps]
        return entry


@dataclass(frozen=True)
class Schedule:
    """A `schedules:` entry; `todo` set when it could not be expressed (written commented out)."""

    name: str
    pipeline: str
    interval: str | None
    timezone: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    todo: str | None = None
    source: str = ""  # what it was in Prefect, for the comment above it

    def as_yaml(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "pipeline": self.pipeline}
        if self.interval is not None:
            entry["interval"] = self.interval
        if self.timezone:
            entry["timezone"] = self.timezone
        if self.variables:
            entry["variables"] = self.variables
        if not self.enabled:
            entry["enabled"] = False
        return entry


@dataclass(frozen=True)
class Trigger:
    """A `triggers:` entry of kind completion: `pipeline` runs after each successful run of `after`."""

    name: str
    after: str
    pipeline: str
    variables: dict[str, Any] = field(default_factory=dict)
    todo: str | None = None  # set when the pipeline to run is unknown (written commented out)
    source: str = ""

    def as_yaml(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "kind": "completion", "after": self.after}
        entry["pipeline"] = self.pipeline
        if self.variables:
            entry["variables"] = self.variables
        return entry


@dataclass(frozen=True)
class FollowUp:
    """Something a person has to do, at `line` of `file`."""

    line: int
    what: str
    file: str | None = None


@dataclass
class FlowReport:
    """Per flow: what was found, how it was mapped, what is left to do."""

    name: str  # the Prefect flow's name
    file: str
    pipeline: str
    constructs: list[Construct] = field(default_factory=list)
    follow_ups: list[FollowUp] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        """Constructs converted automatically / all constructs (1.0 when there are none)."""
        if not self.constructs:
            return 1.0
        return round(sum(c.automatic for c in self.constructs) / len(self.constructs), 2)


@dataclass(frozen=True)
class BlockFile:
    """A Python file written under the output project's blocks/ folder."""

    path: str  # relative to the project root: blocks/simple_etl.py
    text: str
    source: str  # the Prefect file it came from ("" for the compatibility module)


@dataclass
class Conversion:
    """Everything one `elt convert prefect` produces."""

    pipelines: list[Pipeline] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    blocks: list[BlockFile] = field(default_factory=list)
    flows: list[FlowReport] = field(default_factory=list)
    unused_tasks: list[dict[str, Any]] = field(default_factory=list)  # tasks no flow calls: file, task, line
    out: str = ""  # the project folder written

    @property
    def coverage(self) -> float:
        """Over all flows: constructs converted automatically / all constructs."""
        constructs = [c for f in self.flows for c in f.constructs]
        if not constructs:
            return 1.0
        return round(sum(c.automatic for c in constructs) / len(constructs), 2)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
