"""The `sync` step: `TAP [MAPPER...] TARGET`, an incremental sync (elt/sync.py)."""

from __future__ import annotations

from typing import Any, TextIO, cast

from elt.errors import EltError
from elt.logs import Reporter
from elt.steps import StepContext, StepOutput


def run_sync_step(spec: str, options: dict[str, Any], ctx: StepContext) -> StepOutput:
    """Run the sync; rows are the rows loaded, the summary is the sync's (state id, rows per stream)."""
    from elt.sync import run_sync

    names = spec.split()
    if len(names) < 2:
        raise EltError(f"step '{ctx.step}': sync needs 'TAP [MAPPER...] TARGET', got '{spec}'")
    timeout = options.get("timeout")
    result = run_sync(
        ctx.project,
        names[0],
        names[-1],
        mappers=tuple(names[1:-1]),
        reporter=step_reporter(ctx),
        full_refresh=bool(options.get("full_refresh")),
        state_strategy=str(options.get("state_strategy", "auto")),
        timeout=float(timeout) if timeout is not None else None,
        wait=bool(options.get("wait")),
        run_id=ctx.run_id,
    )
    summary = {**result.to_json(), "tap": names[0], "target": names[-1]}
    return StepOutput(rows=result.rows, value={"rows": result.rows}, summary=summary)


def step_reporter(ctx: StepContext) -> Reporter:
    """A Reporter whose lines go to the step's log."""
    return Reporter(cast(TextIO, _LogStream(ctx)), tty=False)


class _LogStream:
    """A text stream whose lines go to the step's log."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.ctx.log(line)
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False
