"""Validate a project file against the JSON Schema shipped in the package.

Each problem is reported as `elt.yml:LINE: key 'x.y': expected …, got …`, with a "did you mean" for
unknown keys that look like a typo of a known one.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from elt.schedule.model import check_document as check_schedules
from elt.yamlfile import LocatedDocument, join_path

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


@cache
def project_schema() -> dict[str, Any]:
    """The JSON Schema of elt.yml."""
    text = resources.files("elt").joinpath("schema/elt.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_document(doc: LocatedDocument) -> list[str]:
    """Return one located message per problem in `doc` (empty when it is valid)."""
    if not isinstance(doc.data, dict):
        return [f"{doc.file.name}:1: expected a mapping of top-level keys, got {_describe(doc.data)}"]
    validator = jsonschema.Draft202012Validator(project_schema())
    problems: list[tuple[int, str]] = []
    for error in validator.iter_errors(doc.data):
        for path, message in explain_error(error):
            line = doc.line_of(path)
            where = f"key '{path}': " if path else ""
            problems.append((line, f"{doc.file.name}:{line}: {where}{message}"))
    problems.extend(_check_steps(doc))
    problems.extend(check_schedules(doc))
    problems.extend(_check_executors(doc))
    problems.sort(key=lambda p: p[0])
    return list(dict.fromkeys(message for _, message in problems))


def validate_settings(
    doc_name: str, lines: LocatedDocument, prefix: str, value: dict[str, Any], schema: dict[str, Any]
) -> list[str]:
    """Check a plugin's `config` (at key path `prefix`) against the plugin's settings schema."""
    validator = jsonschema.Draft7Validator(schema)
    problems: list[tuple[int, str]] = []
    for error in validator.iter_errors(value):
        for path, message in explain_error(error, prefix):
            line = lines.line_of(path)
            problems.append((line, f"{doc_name}:{line}: key '{path}': {message}"))
    problems.sort(key=lambda p: p[0])
    return list(dict.fromkeys(message for _, message in problems))


def explain_error(error: jsonschema.ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """(key path, "expected …, got …") for one schema violation; `prefix` roots the path."""
    path = prefix
    for part in error.absolute_path:
        path = join_path(path, part)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(schema.get("properties", {}))
        results = []
        for key in error.instance:
            if key in known:
                continue
            guess = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"; did you mean '{guess[0]}'?" if guess else ""
            results.append(
                (
                    join_path(path, str(key)),
                    f"unknown key, expected one of {', '.join(known)}{hint}",
                )
            )
        return results
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else error.message
        return [(join_path(path, missing), "required key is missing")]
    if error.validator == "type":
        expected: Any = error.validator_value
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names if n != "null")
        return [(path, f"expected {wanted}, got {_describe(error.instance)}")]
    if error.validator == "enum":
        choices: Any = error.validator_value
        options = ", ".join(repr(v) for v in choices)
        return [(path, f"expected one of {options}, got {_describe(error.instance)}")]
    if error.validator == "pattern":
        # `x-expected` in the schema says what the pattern wants; names are the usual case
        expected = schema.get("x-expected", "a name of letters, digits, '_', '.' or '-'")
        return [(path, f"expected {expected}, got {_describe(error.instance)}")]
    if error.validator in ("minLength", "maxLength"):
        return [(path, f"expected {error.message.split(' is ', 1)[-1]}, got {_describe(error.instance)}")]
    if error.validator == "anyOf" and isinstance(error.instance, str):
        return [(path, f"expected one of the allowed forms, got {_describe(error.instance)}")]
    if error.validator == "minItems":
        return [(path, f"expected at least {error.validator_value} item(s), got an empty list")]
    return [(path, f"expected {error.message}")]


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string '{shown}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


STEP_TYPES = ("sync", "dbt", "python", "sql", "export", "pipeline", "shell")


def _check_steps(doc: LocatedDocument) -> list[tuple[int, str]]:
    """Rules the schema cannot say clearly: one type key per step, unique step names."""
    problems: list[tuple[int, str]] = []
    pipelines = doc.data.get("pipelines")
    if not isinstance(pipelines, dict):
        return problems
    for pname, pipeline in pipelines.items():
        steps = pipeline.get("steps") if isinstance(pipeline, dict) else None
        if not isinstance(steps, list):
            continue
        seen: set[str] = set()
        for i, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            path = f"pipelines.{pname}.steps[{i}]"
            kinds = [k for k in STEP_TYPES if k in step]
            if len(kinds) != 1:
                line = doc.line_of(path)
                got = ", ".join(kinds) if kinds else "none"
                problems.append(
                    (
                        line,
                        f"{doc.file.name}:{line}: key '{path}': expected exactly one step type "
                        f"({', '.join(STEP_TYPES)}), got {got}",
                    )
                )
            if "partition" in step:
                problems.extend(_check_partition(doc, path, step))
            name = step.get("name")
            if isinstance(name, str):
                if name in seen:
                    line = doc.line_of(f"{path}.name")
                    problems.append(
                        (
                            line,
                            f"{doc.file.name}:{line}: key '{path}.name': expected a unique step "
                            f"name, got '{name}' twice",
                        )
                    )
                seen.add(name)
        problems.extend(_check_needs(doc, pname, steps, pipelines))
    return problems


def _check_executors(doc: LocatedDocument) -> list[tuple[int, str]]:
    """A celery `executor:` of an environment names its broker."""
    problems: list[tuple[int, str]] = []
    for index, entry in enumerate(doc.data.get("environments") or []):
        executor = entry.get("executor") if isinstance(entry, dict) else None
        if isinstance(executor, dict) and executor.get("kind") == "celery" and not executor.get("broker_url"):
            key = f"environments[{index}].executor"
            line = doc.line_of(key)
            needs = (
                "the celery executor needs 'broker_url' (redis://HOST:6379/0 or amqp://USER:PASSWORD@HOST//)"
            )
            problems.append((line, f"{doc.file.name}:{line}: key '{key}': {needs}"))
    return problems


def _check_partition(doc: LocatedDocument, path: str, step: dict[str, Any]) -> list[tuple[int, str]]:
    """A `partition:` is on a sync step of `TAP TARGET`, without for_each, and cuts one way."""
    problems: list[tuple[int, str]] = []

    def problem(key: str, message: str) -> None:
        line = doc.line_of(key)
        problems.append((line, f"{doc.file.name}:{line}: key '{key}': {message}"))

    if "sync" not in step:
        problem(f"{path}.partition", "expected on a sync step only (it partitions the sync of one stream)")
    elif isinstance(step["sync"], str) and len(step["sync"].split()) != 2:
        problem(f"{path}.sync", f"expected 'TAP TARGET' for a partitioned sync, got '{step['sync']}'")
    if "for_each" in step:
        problem(f"{path}.for_each", "expected no for_each on a partitioned sync: it runs once per partition")
    partition = step["partition"]
    if isinstance(partition, dict):
        given = [key for key in ("count", "size", "every") if key in partition]
        if len(given) != 1:
            got = ", ".join(given) or "none"
            problem(f"{path}.partition", f"expected exactly one of count, size or every, got {got}")
    return problems


def _check_needs(
    doc: LocatedDocument, pname: str, steps: list[Any], pipelines: dict[str, Any]
) -> list[tuple[int, str]]:
    """`needs`, `for_each: ${steps.X.output}` and `pipeline:` name steps and pipelines that exist."""
    names = [s.get("name") for s in steps if isinstance(s, dict)]
    problems: list[tuple[int, str]] = []

    def problem(path: str, message: str) -> None:
        line = doc.line_of(path)
        problems.append((line, f"{doc.file.name}:{line}: key '{path}': {message}"))

    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        path = f"pipelines.{pname}.steps[{i}]"
        needs = step.get("needs")
        for j, need in enumerate(needs if isinstance(needs, list) else []):
            if need not in names:
                guess = difflib.get_close_matches(str(need), [str(n) for n in names], n=1, cutoff=0.6)
                hint = f"; did you mean '{guess[0]}'?" if guess else ""
                problem(f"{path}.needs[{j}]", f"expected the name of a step of '{pname}', got '{need}'{hint}")
        for_each = step.get("for_each")
        if isinstance(for_each, str) and for_each.startswith("${steps."):
            source = for_each[len("${steps.") :].rsplit(".output}", 1)[0]
            if source not in names:
                problem(
                    f"{path}.for_each",
                    f"expected ${{steps.NAME.output}} of a step of '{pname}', got '{for_each}'",
                )
        target = step.get("pipeline")
        if isinstance(target, str) and target not in pipelines:
            problem(f"{path}.pipeline", f"expected the name of a pipeline, got '{target}'")
        arguments = step.get("arguments") if isinstance(step.get("arguments"), dict) else {}
        for key, source in _step_references(arguments, f"{path}.arguments"):
            if not _reaches(steps, i, source, pipelines):
                problem(
                    key,
                    f"expected ${{steps.NAME.output}} of a step this one needs (directly or not), "
                    f"got '${{steps.{source}.output}}'",
                )
    return problems


def _step_references(value: Any, key: str) -> list[tuple[str, str]]:
    """(key path, step name) of each `${steps.NAME.output}` inside `value`."""
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in _step_references(v, join_path(key, str(k)))]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _step_references(v, join_path(key, i))]
    if isinstance(value, str) and value.startswith("${steps.") and value.endswith(".output}"):
        return [(key, value[len("${steps.") : -len(".output}")])]
    return []


def _reaches(steps: list[Any], index: int, source: str, pipelines: dict[str, Any]) -> bool:
    """Whether step `source` (`SUB/STEP` for a step of the pipeline a `pipeline:` step SUB runs) is
    upstream of `steps[index]` through `needs`."""
    by_name = {s.get("name"): s for s in steps if isinstance(s, dict)}
    head, _, rest = source.partition("/")
    seen: set[str] = set()
    todo = list(steps[index].get("needs") or [])
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        todo.extend(by_name[name].get("needs") or [])
    if head not in seen:
        return False
    if not rest:
        return True
    child = pipelines.get(str(by_name[head].get("pipeline")))
    child_steps = child.get("steps") if isinstance(child, dict) else None
    names = [s.get("name") for s in child_steps or [] if isinstance(s, dict)]
    inner = rest.partition("/")[0]
    return isinstance(child_steps, list) and inner in names
