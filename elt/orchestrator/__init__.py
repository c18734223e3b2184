"""The orchestrator: pipelines of steps as a DAG, run in parallel, retried, cached and recorded.

| module | concern |
|---|---|
| `model` | `pipelines:` (or Meltano-style blocks) into `PipelineSpec` / `StepSpec` values, `${vars.X}` |
| `dag` | the networkx graph: `needs`, dbt steps' inferred dependencies on syncs, `--only` / `--from` |
| `executor` | the loop: attempts in processes of their own, timeouts, retries, skips, `for_each`, history |
| `attempt` | one attempt, in its own process: calls the step kind's runner (`elt/steps/`), writes JSON |
| `metrics` | `.elt/metrics.prom` at the end of each run |

docs/pipelines.md describes the YAML and the behaviour.
"""

from elt.orchestrator.executor import RunOptions, RunResult, StepResult, run_pipeline
from elt.orchestrator.model import PipelineSpec, StepSpec, load_pipeline, pipeline_from_blocks

__all__ = [
    "PipelineSpec",
    "RunOptions",
    "RunResult",
    "StepResult",
    "StepSpec",
    "load_pipeline",
    "pipeline_from_blocks",
    "run_pipeline",
]
