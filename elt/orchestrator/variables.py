"""The variables a pipeline takes, and checking values given for them from outside (the API, webhooks).

pipeline_variables(project, "daily")                     # {"since": "2024-01-01", "region": None}
check_variables(project, "daily", {"since": "2024-06-01"})  # or EltError naming `variables.NAME`
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from elt.errors import EltError
from elt.orchestrator.model import load_pipeline
from elt.project import Project

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REFERENCE = re.compile(r"\$\{vars\.([A-Za-z_][A-Za-z0-9_]*)\}")
_SCALARS = (str, int, float, bool)
_WRONG_KINDS: dict[type, str] = {dict: "an object", list: "a list in a list"}


def pipeline_variables(project: Project, pipeline: str) -> dict[str, Any]:
    """The variables `pipeline` knows: declared ones with their defaults, and ones its steps (and the
    pipelines it runs) refer to as `${vars.NAME}` without declaring them, with None."""
    pipelines = project.data.get("pipelines") or {}
    if pipeline not in pipelines:
        known = ", ".join(sorted(pipelines)) or "none"
        raise EltError(f"{project.file.name}: no pipeline named '{pipeline}' (pipelines: {known})")
    found: dict[str, Any] = {}
    pending, seen = [pipeline], set()
    while pending:
        name = pending.pop()
        if name in seen or name not in pipelines:
            continue
        seen.add(name)
        entry = pipelines[name]
        for key, value in (entry.get("variables") or {}).items():
            found.setdefault(str(key), value)
        for reference in _REFERENCE.findall(json.dumps(entry.get("steps") or [], default=str)):
            found.setdefault(reference, None)
        pending.extend(str(s["pipeline"]) for s in entry.get("steps") or [] if "pipeline" in s)
    return found


def check_variables(project: Project, pipeline: str, variables: Mapping[str, Any]) -> dict[str, Any]:
    """`variables` for a run of `pipeline`, checked: each must be a variable of the pipeline, and a
    string, number, boolean or list of them (what `for_each` iterates over); and the pipeline must load
    with them. EltError naming `variables.NAME` otherwise."""
    known = pipeline_variables(project, pipeline)
    for name, value in variables.items():
        where = f"variables.{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise EltError(
                f"{where}: a variable's name is letters, digits and '_', not starting with a digit"
            )
        if name not in known:
            names = ", ".join(sorted(known)) or "none"
            raise EltError(f"{where}: pipeline '{pipeline}' has no variable '{name}' (variables: {names})")
        wrong = [v for v in (value if isinstance(value, list) else [value]) if not isinstance(v, _SCALARS)]
        if wrong:
            kind = _WRONG_KINDS.get(type(wrong[0]), "null")
            raise EltError(f"{where}: expected a string, number, boolean or a list of them, got {kind}")
    checked = dict(variables)
    load_pipeline(project, pipeline, checked)
    return checked
