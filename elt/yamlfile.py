"""Read a YAML file into plain Python values while remembering the line of every key.

Paths are written the way error messages show them: `plugins.extractors[0].config.path`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from elt.errors import ProjectError


@dataclass(frozen=True)
class LocatedDocument:
    """A parsed YAML document: its data and the 1-based line of each path in it."""

    file: Path
    data: Any
    lines: dict[str, int]

    def line_of(self, path: str) -> int:
        """The line of `path`, or of its nearest ancestor that has one (1 for the document)."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = parent_path(path)
        return self.lines.get("", 1)


def parent_path(path: str) -> str:
    """`a.b[0].c` -> `a.b[0]` -> `a.b` -> `a` -> ``."""
    if path.endswith("]"):
        return path[: path.rindex("[")]
    return path.rpartition(".")[0]


def join_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def load_located(file: Path) -> LocatedDocument:
    """Parse `file`; a syntax error or duplicate key becomes a ProjectError naming file and line."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"{file}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{file}: cannot read: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or str(exc)
        raise ProjectError(f"{file.name}:{line}: invalid YAML: {problem}") from None
    lines: dict[str, int] = {"": 1}
    data = {} if node is None else _to_python(node, "", lines, file)
    return LocatedDocument(file=file, data=data, lines=lines)


def _to_python(node: yaml.Node, path: str, lines: dict[str, int], file: Path) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merged = _to_python(value_node, path, lines, file)
                for item in merged if isinstance(merged, list) else [merged]:
                    for k, v in item.items():
                        result.setdefault(k, v)
                continue
            key = _scalar(key_node)
            if isinstance(key, bool):  # YAML 1.1 reads a key `on:` or `yes:` as a boolean; keys are names
                key = key_node.value
            child = join_path(path, str(key))
            if key in result:
                raise ProjectError(
                    f"{file.name}:{key_node.start_mark.line + 1}: key '{child}': "
                    f"duplicate key (first at line {lines.get(child, '?')})"
                )
            lines[child] = key_node.start_mark.line + 1
            result[key] = _to_python(value_node, child, lines, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, join_path(path, i), lines, file) for i, item in enumerate(node.value)]
    value = _scalar(node)
    # Connectors receive config as JSON: dates stay the strings the user wrote.
    if isinstance(value, datetime.date | datetime.datetime):
        return node.value
    return value


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
