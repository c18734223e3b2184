"""The `shell` step: a bash command run from the project root.

Its environment is elt's, the project's (`.env`), the step's `env:`, and `ELT_RUN_ID`, `ELT_STEP`,
`ELT_ITEM` (the `for_each` element, JSON unless a string) and `ELT_STEP_OUTPUT`: a file path where the
command may write its output (JSON, or else the text), which `for_each: ${steps.NAME.output}` of later
steps iterates over.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from elt.errors import RunError
from elt.steps import StepContext, StepOutput


def run_shell(spec: str, options: dict[str, Any], ctx: StepContext) -> StepOutput:
    """Run the command; output lines go to the step's log, a non-zero exit fails the step."""
    env = dict(os.environ)
    env.update(ctx.project.env())
    env.update({k: str(v) for k, v in (options.get("env") or {}).items()})
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    env["ELT_RUN_ID"] = ctx.run_id
    env["ELT_STEP"] = ctx.step
    env["ELT_ENVIRONMENT"] = ctx.project.environment or ""
    if ctx.item is not None:
        env["ELT_ITEM"] = ctx.item if isinstance(ctx.item, str) else json.dumps(ctx.item)
    with tempfile.TemporaryDirectory(prefix="elt-step-") as tmp:
        output_file = Path(tmp) / "output"
        env["ELT_STEP_OUTPUT"] = str(output_file)
        proc = subprocess.Popen(
            ["bash", "-c", spec], cwd=ctx.project.root, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            ctx.log(line.rstrip("\n"))
            tail = [*tail[-19:], line.rstrip("\n")]
        code = proc.wait()
        value = _read_output(output_file)
    if code != 0:
        lines = "".join("\n  " + line for line in tail)
        raise RunError(f"shell command exited with {code}{':' if lines else ''}{lines}")
    return StepOutput(value=value, summary={"exit_code": code})


def _read_output(path: Path) -> Any:
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8").strip()
    try:
        return json.loads(text)
    except ValueError:
        return text
