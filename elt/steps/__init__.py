"""What every kind of pipeline step gets and gives back.

The orchestrator (elt/orchestrator/) runs each attempt of a step in a process of its own and calls the
step kind's runner there with a `StepContext`; the runner returns a `StepOutput`, which the run history
stores and downstream steps read (`for_each` over a previous step's output, caching fingerprints).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from elt.project import Project


@dataclass(frozen=True)
class StepOutput:
    """What one successful attempt of a step produced.

    `rows` and `bytes` are what it moved or wrote (None where that means nothing, e.g. a shell step);
    `value` is its JSON-serializable result, which `for_each: ${steps.NAME.output}` iterates over and
    which feeds downstream steps' cache fingerprints; `summary` is kind-specific detail for run history.
    """

    rows: int | None = None
    bytes: int | None = None
    value: Any = None
    summary: dict[str, Any] = field(default_factory=dict)
    cached: bool = False  # true when the step was skipped because its cached output is still valid


@dataclass(frozen=True)
class StepContext:
    """What a step runner knows of its run."""

    project: Project
    run_id: str
    pipeline: str
    step: str
    variables: dict[str, Any]
    upstream: dict[str, StepOutput]  # outputs of the steps this one depends on, by step name
    log: Callable[[str], None]  # one line into the step's log (shown live on a terminal)
    item: Any = None  # the element of `for_each` this instance runs for
    # outputs of every step this one depends on, directly or not: a sync that moved new rows two steps
    # up changes what a cached step would compute, though the dbt step between reports the same
    earlier: dict[str, StepOutput] = field(default_factory=dict)
