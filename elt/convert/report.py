"""The conversion report: per flow, the constructs found and how each was mapped, the follow-ups with
their lines, and the coverage (constructs converted automatically / all constructs); as text or JSON."""

from __future__ import annotations

from typing import Any

from elt.convert.model import Conversion, FlowReport


def report_json(conversion: Conversion) -> dict[str, Any]:
    """`{"flows": [{"name", "file", "pipeline", "constructs", "follow_ups", "coverage"}], "coverage", …}`."""
    return {
        "out": conversion.out,
        "flows": [_flow(f) for f in conversion.flows],
        "coverage": conversion.coverage,
        "pipelines": [p.name for p in conversion.pipelines],
        "schedules": [s.name for s in conversion.schedules if not s.todo],
        "triggers": [t.name for t in conversion.triggers if not t.todo],
        "blocks": [b.path for b in conversion.blocks],
        "unused_tasks": conversion.unused_tasks,
    }


def _flow(flow: FlowReport) -> dict[str, Any]:
    return {
        "name": flow.name,
        "file": flow.file,
        "pipeline": flow.pipeline,
        "constructs": [
            {
                "kind": c.kind,
                "line": c.line,
                "mapped_to": c.mapped_to,
                "automatic": c.automatic,
                "note": c.note,
                **({"file": c.file} if c.file else {}),
            }
            for c in flow.constructs
        ],
        "follow_ups": [
            {"line": f.line, "what": f.what, **({"file": f.file} if f.file else {})} for f in flow.follow_ups
        ],
        "coverage": flow.coverage,
    }


def report_text(conversion: Conversion) -> str:
    """The report for a terminal (and the project's conversion-report.md)."""
    lines = [f"# Conversion from Prefect into {conversion.out or 'the project'}", ""]
    for flow in conversion.flows:
        automatic = sum(c.automatic for c in flow.constructs)
        lines.append(f"## flow '{flow.name}' ({flow.file}) → pipeline '{flow.pipeline}'")
        lines.append(
            f"coverage {flow.coverage:.0%}: {automatic} of {len(flow.constructs)} constructs "
            "converted automatically"
        )
        lines.append("")
        for c in flow.constructs:
            mark = "✔" if c.automatic else "✘"
            where = f"{c.file}:{c.line}" if c.file else f"line {c.line}"
            note = f" — {c.note}" if c.note else ""
            lines.append(f"  {mark} {where:>10} {c.kind}: {c.mapped_to}{note}")
        if flow.follow_ups:
            lines += ["", "  to do by hand (TODO comments in elt.yml and blocks/):"]
            for f in flow.follow_ups:
                where = f"{f.file}:{f.line}" if f.file else f"{flow.file}:{f.line}"
                lines.append(f"  - {where}: {f.what}")
        lines.append("")
    if conversion.unused_tasks:
        lines.append("Tasks no flow calls (converted as blocks all the same):")
        lines += [f"  - {t['file']}:{t['line']} {t['task']}" for t in conversion.unused_tasks]
        lines.append("")
    total = [c for f in conversion.flows for c in f.constructs]
    lines.append(
        f"{len(conversion.flows)} flow(s) → {len(conversion.pipelines)} pipeline(s), "
        f"{len([s for s in conversion.schedules if not s.todo])} schedule(s), "
        f"{len([t for t in conversion.triggers if not t.todo])} trigger(s), "
        f"{len(conversion.blocks)} block file(s); coverage {conversion.coverage:.0%} "
        f"({sum(c.automatic for c in total)} of {len(total)} constructs)"
    )
    return "\n".join(lines) + "\n"
