"""Per-step metrics of the last run as a Prometheus text file (`.elt/metrics.prom`).

Written at the end of each run, atomically, for node_exporter's textfile collector or any scraper.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from elt.orchestrator.executor import RunResult

_STATUS_VALUE = {"success": 1, "failed": 0}


def write_metrics(path: Path, result: RunResult) -> None:
    """Replace `path` with the metrics of `result`."""
    pipeline = _label(result.pipeline)
    lines = [
        "# HELP elt_run_status 1 if the last run of the pipeline succeeded, 0 if it failed.",
        "# TYPE elt_run_status gauge",
        f'elt_run_status{{pipeline="{pipeline}",run_id="{result.run_id}"}} '
        f"{_STATUS_VALUE.get(result.status, 0)}",
        "# HELP elt_run_seconds Duration of the last run of the pipeline.",
        "# TYPE elt_run_seconds gauge",
        f'elt_run_seconds{{pipeline="{pipeline}"}} {result.seconds:.3f}',
    ]
    series = {
        "elt_step_seconds": ("Duration of the step in the last run (all attempts).", lambda s: s.seconds),
        "elt_step_rows": ("Rows the step moved or wrote in the last run.", lambda s: s.rows or 0),
        "elt_step_attempts": ("Attempts the step took in the last run.", lambda s: s.attempts),
        "elt_step_success": ("1 if the step succeeded (or was cached or reused), else 0.",
                             lambda s: int(s.status in ("success", "cached", "reused"))),
    }  # fmt: skip
    for name, (help_text, value) in series.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for step in result.steps:
            labels = f'pipeline="{pipeline}",step="{_label(step.name)}",status="{step.status}"'
            lines.append(f"{name}{{{labels}}} {value(step)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".prom.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
