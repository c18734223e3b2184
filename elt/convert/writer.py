"""A conversion written into a project folder: blocks/ files and entries added to its elt.yml.

A new folder gets a minimal elt.yml. An existing elt.yml keeps every byte it had: the new pipelines,
schedules and triggers are inserted as text at the end of their sections (or as new sections at the
end), with the TODO comments above the entries they concern; a name that is already taken (a pipeline,
schedule, trigger or blocks/ file) stops the conversion before anything is written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from elt.convert.code import COMPAT_MODULE, COMPAT_TEXT
from elt.convert.model import Conversion, Pipeline, Schedule, Trigger
from elt.errors import ProjectError

PROJECT_FILE = "elt.yml"
NEW_PROJECT = """\
# An elt project converted from Prefect by `elt convert prefect` (docs/convert-prefect.md).
# `elt validate` checks this file; `elt run PIPELINE` runs a pipeline.
version: 1
"""


def check_names(conversion: Conversion, out: Path) -> None:
    """Refuse names the project already has, before anything is written."""
    file = out / PROJECT_FILE
    data: dict[str, Any] = {}
    if file.is_file():
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ProjectError(f"{file}: cannot be read as YAML: {error}") from None
        if not isinstance(data, dict):
            raise ProjectError(f"{file}: expected a mapping of top-level keys")
    clashes: list[str] = []
    pipelines = data["pipelines"] if isinstance(data.get("pipelines"), dict) else {}
    for pipeline in conversion.pipelines:
        if pipeline.name in pipelines:
            clashes.append(f"pipeline '{pipeline.name}' (from {pipeline.file}:{pipeline.line})")
    for key, entries in (("schedules", conversion.schedules), ("triggers", conversion.triggers)):
        existing = {e.get("name") for e in data.get(key) or [] if isinstance(e, dict)}
        clashes.extend(f"{key[:-1]} '{e.name}'" for e in entries if e.name in existing)
    for block in conversion.blocks:
        if block.source and (out / block.path).exists():
            clashes.append(f"file {block.path} (from {block.source})")
    if clashes:
        raise ProjectError(
            f"{file if file.is_file() else out}: already has {', '.join(clashes)}",
            hint="remove or rename them, or convert into another folder with --out",
        )


def write_project(conversion: Conversion, out: Path) -> None:
    """Write the blocks and merge the entries into `out/elt.yml` (created when missing)."""
    check_names(conversion, out)
    out.mkdir(parents=True, exist_ok=True)
    for block in conversion.blocks:
        path = out / block.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not block.source and path.exists():
            continue  # the compatibility module of an earlier conversion, maybe edited: kept
        path.write_text(block.text, encoding="utf-8")
    file = out / PROJECT_FILE
    text = file.read_text(encoding="utf-8") if file.is_file() else NEW_PROJECT
    sections = {
        "pipelines": render_pipelines(conversion.pipelines),
        "schedules": render_list([_schedule_lines(s) for s in conversion.schedules]),
        "triggers": render_list([_trigger_lines(t) for t in conversion.triggers]),
    }
    for key, lines in sections.items():
        if lines:
            text = merge_section(text, key, lines, file)
    file.write_text(text, encoding="utf-8")


def compat_block() -> tuple[str, str]:
    """(path, text) of the module of stand-ins for Prefect helpers."""
    return f"blocks/{COMPAT_MODULE}.py", COMPAT_TEXT


# -- rendering -------------------------------------------------------------------------------------------


def render_pipelines(pipelines: list[Pipeline]) -> list[str]:
    """The pipelines as lines of a `pipelines:` mapping (keys at column 0)."""
    lines: list[str] = []
    for pipeline in pipelines:
        lines.append(f"{_key(pipeline.name)}:")
        entry = pipeline.as_yaml()
        for key, value in entry.items():
            if key != "steps":
                lines.extend("  " + line for line in _dump({key: value}))
        lines.append("  steps:")
        for step in pipeline.steps:
            for todo in step.todos:
                lines.append(f"    # {_one_line(todo)}")
            first, *rest = _dump(step.as_yaml())
            lines.append("    - " + first)
            lines.extend("      " + line for line in rest)
        for todo in pipeline.todos:
            lines.append(f"    # {_one_line(todo)}")
    return lines


def render_list(entries: list[list[str]]) -> list[str]:
    """Entries of a list section (`- name: …`), each given as its lines."""
    return [line for entry in entries for line in entry]


def _schedule_lines(schedule: Schedule) -> list[str]:
    lines = [f"# {_one_line(schedule.source)}"] if schedule.source else []
    first, *rest = _dump(schedule.as_yaml())
    body = ["- " + first, *("  " + line for line in rest)]
    if schedule.todo:
        return [
            *lines,
            f"# TODO: {_one_line(schedule.todo)}; write the cron that fits and uncomment",
            *("# " + line for line in body),
        ]
    return [*lines, *body]


def _trigger_lines(trigger: Trigger) -> list[str]:
    lines = [f"# {_one_line(trigger.source)}"] if trigger.source else []
    first, *rest = _dump(trigger.as_yaml())
    body = ["- " + first, *("  " + line for line in rest)]
    if trigger.todo:
        return [*lines, f"# TODO: {_one_line(trigger.todo)}", *("# " + line for line in body)]
    return [*lines, *body]


def _dump(value: dict[str, Any]) -> list[str]:
    """A mapping as block-style lines; lists and mappings of plain values on one line (`{a: 1}`)."""
    lines: list[str] = []
    for key, item in value.items():
        if isinstance(item, dict | list) and item and not _flat(item):
            lines.append(f"{_key(key)}:")
            if isinstance(item, dict):
                lines.extend("  " + line for line in _dump(item))
                continue
            for element in item:
                if isinstance(element, dict) and element:
                    first, *rest = _dump(element)
                    lines += ["  - " + first, *("    " + line for line in rest)]
                else:
                    lines.append("  - " + _inline(element))
        else:
            lines.append(f"{_key(key)}: {_inline(item)}")
    return lines


def _flat(value: dict[str, Any] | list[Any]) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return all(not isinstance(i, dict | list) or (not i) for i in items) and len(_inline(value)) <= 90


def _inline(value: Any) -> str:
    text = yaml.safe_dump(
        value, default_flow_style=True, sort_keys=False, allow_unicode=True, width=1_000_000
    )
    return text.strip().removesuffix("...").strip()


def _key(name: Any) -> str:
    return _inline(str(name))


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- merging into elt.yml ----------------------------------------------------------------------------------

_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\s*:(.*)$")


def merge_section(text: str, key: str, entries: list[str], file: Path) -> str:
    """`text` with `entries` (lines at column 0) added at the end of its top-level `key` section, or a
    new section at the end; the rest of the file is left as it was."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _top_key(line) == key), None)
    if start is None:
        tail = "" if not text or text.endswith("\n") else "\n"
        return text + tail + "\n" + f"{key}:\n" + "\n".join("  " + e if e else e for e in entries) + "\n"
    rest = _TOP_KEY.match(lines[start])
    inline = rest.group(2).split("#", 1)[0].strip() if rest else ""
    if inline in ("{}", "[]", "null", "~"):
        lines[start] = f"{key}:"
    elif inline:
        raise ProjectError(
            f"{file}:{start + 1}: `{key}:` is written inline; elt convert adds to block-style sections only",
            hint=f"write `{key}:` with one entry per line, then convert again",
        )
    end = start + 1
    while end < len(lines) and not _top_key(lines[end]) and not lines[end].startswith(("---", "...")):
        end += 1
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1  # trailing blank lines and comments stay after the section
    indent = 2
    for line in lines[start + 1 : end]:
        if line.strip() and not line.lstrip().startswith("#"):
            indent = len(line) - len(line.lstrip())
            break
    pad = " " * indent
    added = [pad + e if e else e for e in entries]
    merged = lines[:end] + added + lines[end:]
    return "\n".join(merged) + "\n"


def _top_key(line: str) -> str | None:
    if not line or line[0].isspace() or line.startswith("#"):
        return None
    match = _TOP_KEY.match(line)
    return match.group(1) if match else None
