"""The static lineage site: the graph as `data.js`, next to the page, script and styles that show it.

The site is a folder that works opened from disk (file://) or served over HTTP, with nothing fetched from
elsewhere: `index.html`, `style.css` and `app.js` are copied from `elt/docs_site/assets/`, and the graph,
with each node's position computed here (elt/docs_site/layout.py), is one `window.ELT_LINEAGE = {…}`
assignment in `data.js`, which a page opened from disk can load with a script tag where it could not fetch
JSON. `site.json` records digests of what was written, so that `elt docs serve` rewrites only a stale site.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elt.docs_site.layout import NODE_HEIGHT, NODE_WIDTH, layout_graph
from elt.lineage.model import NODE_TYPES, ColumnRef, LineageGraph, Node

if TYPE_CHECKING:
    from elt.project import Project

ASSETS = Path(__file__).parent / "assets"
ASSET_FILES = ("index.html", "style.css", "app.js")
DATA_FILE = "data.js"
MANIFEST_FILE = "site.json"


@dataclass(frozen=True)
class SiteResult:
    """A written (or found up to date) site: where it is and what it shows."""

    out_dir: Path
    nodes: int
    edges: int
    columns: int
    coverage: float  # resolved / total columns of the lineage
    data_bytes: int  # size of data.js
    seconds: float  # laying out and writing the site
    lineage_seconds: float = 0.0  # loading (or building) the lineage, when `build_site` did it
    generated: bool = True  # False when the site was already up to date and nothing was written
    notes: tuple[str, ...] = ()  # the lineage's notes: what was missing or skipped while building it

    @property
    def index(self) -> Path:
        return self.out_dir / "index.html"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.index),
            "out_dir": str(self.out_dir),
            "nodes": self.nodes,
            "edges": self.edges,
            "columns": self.columns,
            "coverage": round(self.coverage, 4),
            "data_bytes": self.data_bytes,
            "seconds": round(self.seconds + self.lineage_seconds, 3),
            "site_seconds": round(self.seconds, 3),
            "lineage_seconds": round(self.lineage_seconds, 3),
            "generated": self.generated,
            "notes": list(self.notes),
        }


def default_site_dir(project: Project) -> Path:
    """`.elt/site/` in the project."""
    return project.system_dir / "site"


def build_site(
    project: Project, out_dir: Path | None = None, *, rebuild: bool = False, only_if_stale: bool = False
) -> SiteResult:
    """Load the project's lineage (rebuilt from its inputs if `rebuild`) and write its site in `out_dir`
    (default `.elt/site/`). With `only_if_stale`, a site that would be written the same is kept as it is
    (`generated` False)."""
    from elt.lineage import load_lineage

    out = (out_dir or default_site_dir(project)).resolve()
    started = time.perf_counter()
    graph = load_lineage(project, rebuild=rebuild)
    lineage_seconds = time.perf_counter() - started
    result = generate_site(graph, out, only_if_changed=only_if_stale and not rebuild)
    return replace(result, lineage_seconds=lineage_seconds)


def generate_site(graph: LineageGraph, out_dir: Path, *, only_if_changed: bool = False) -> SiteResult:
    """Write the site of `graph` into `out_dir` (created if needed): index.html, style.css, app.js, data.js
    and site.json. Files are replaced whole, so a server reading the folder never sees half a file.

    With `only_if_changed`, nothing is written when the folder already holds these very files (the
    digests in site.json match); the result then says `generated` False.
    """
    started = time.perf_counter()
    data = site_data(graph)
    encoded = (
        "window.ELT_LINEAGE = " + json.dumps(data, separators=(",", ":"), default=str) + ";\n"
    ).encode()
    digests = {"data": hashlib.sha256(encoded).hexdigest()[:16], "assets": assets_digest()}
    result = SiteResult(
        out_dir=out_dir,
        nodes=len(graph.nodes),
        edges=len(data["edges"]),
        columns=sum(len(n.columns) for n in graph.nodes),
        coverage=graph.coverage.ratio,
        data_bytes=len(encoded),
        seconds=0.0,
        notes=tuple(graph.notes),
    )
    if only_if_changed and _written_before(out_dir, digests):
        return replace(result, generated=False, seconds=time.perf_counter() - started)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ASSET_FILES:
        _write(out_dir / name, (ASSETS / name).read_bytes())
    _write(out_dir / DATA_FILE, encoded)
    manifest = {**digests, "fingerprint": graph.fingerprint, "generated_at": graph.generated_at,
                "nodes": result.nodes, "edges": result.edges, "columns": result.columns}  # fmt: skip
    _write(out_dir / MANIFEST_FILE, json.dumps(manifest, indent=2).encode())
    return replace(result, seconds=time.perf_counter() - started)


def site_data(graph: LineageGraph) -> dict[str, Any]:
    """The value `data.js` assigns: the graph with positions, compact (references to nodes by index,
    empty fields left out) because a project of a thousand models has tens of thousands of columns."""
    index = {node.id: i for i, node in enumerate(graph.nodes)}
    edges = sorted(
        {(index[e.source], index[e.target]) for e in graph.edges if e.source in index and e.target in index}
    )
    layout = layout_graph(len(graph.nodes), edges, [node.type == "test" for node in graph.nodes])
    nodes = [
        _node_data(node, index, x, y) for node, (x, y) in zip(graph.nodes, layout.positions, strict=True)
    ]
    present = {node.type for node in graph.nodes}
    return {
        "project": graph.project,
        "environment": graph.environment,
        "generated_at": graph.generated_at,
        "fingerprint": graph.fingerprint,
        "types": [t for t in NODE_TYPES if t in present] + sorted(present - set(NODE_TYPES)),
        "size": {
            "width": layout.width,
            "height": layout.height,
            "node_width": NODE_WIDTH,
            "node_height": NODE_HEIGHT,
        },  # fmt: skip
        "nodes": nodes,
        "edges": [list(e) for e in edges],
        "coverage": graph.coverage.to_json(),
        "notes": list(graph.notes),
    }


def _node_data(node: Node, index: dict[str, int], x: int, y: int) -> dict[str, Any]:
    data: dict[str, Any] = {"id": node.id, "type": node.type, "name": node.name, "x": x, "y": y}
    for key in ("description", "path", "relation", "materialized", "sql", "raw_sql"):
        value = getattr(node, key)
        if value:
            data[key] = value
    if node.columns:
        data["columns"] = [_column_data(c.name, c.data_type, c.description, c.upstream, c.unresolved, index)
                           for c in node.columns]  # fmt: skip
    if node.indirect:
        data["indirect"] = [_ref(r, index) for r in node.indirect]
    if node.tests:
        data["tests"] = list(node.tests)
    if node.freshness:
        data["freshness"] = node.freshness
    if node.runs:
        data["runs"] = [
            {k: v for k, v in (("run_id", r.run_id), ("started_at", r.started_at), ("status", r.status),
                               ("seconds", r.seconds), ("rows", r.rows), ("message", r.message))
             if v is not None}
            for r in node.runs
        ]  # fmt: skip
    if node.meta:
        data["meta"] = node.meta
    return data


def _column_data(
    name: str,
    data_type: str | None,
    description: str | None,
    upstream: tuple[ColumnRef, ...],
    unresolved: str | None,
    index: dict[str, int],
) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name}
    if data_type:
        data["data_type"] = data_type
    if description:
        data["description"] = description
    if upstream:
        data["upstream"] = [_ref(r, index) for r in upstream]
    if unresolved:
        data["unresolved"] = unresolved
    return data


def _ref(ref: ColumnRef, index: dict[str, int]) -> list[Any]:
    """[node index, column, kind]; the node's id where the graph has no such node."""
    return [index.get(ref.node, ref.node), ref.column, ref.kind]


def assets_digest() -> str:
    """Of the page, script and styles: a site written by another version of them is stale."""
    digest = hashlib.sha256()
    for name in ASSET_FILES:
        digest.update((ASSETS / name).read_bytes())
    return digest.hexdigest()[:16]


def _written_before(out_dir: Path, digests: dict[str, str]) -> bool:
    """Whether `out_dir` holds a whole site whose site.json names these digests."""
    try:
        manifest = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    complete = all((out_dir / name).is_file() for name in (*ASSET_FILES, DATA_FILE))
    return complete and isinstance(manifest, dict) and all(manifest.get(k) == v for k, v in digests.items())


def _write(path: Path, content: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)
