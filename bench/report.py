"""Render a bench run (the dict written to results.json) as the Markdown tables of results.md."""

from __future__ import annotations

from typing import Any

from cases import ELT_CASE, GROUPS

COLUMNS = (
    "case",
    "what runs",
    "versions",
    "wall s",
    "rows/s",
    r"÷ `\copy`",
    "elt ÷ this",
    "peak RSS MB",
    "rows arrived",
    "status",
)


def render_markdown(results: dict[str, Any]) -> str:
    """Header (machine, data, method), then one table per group of cases, then what failed to install."""
    machine = results["machine"]
    title = f"{results['rows']:,} rows" if results.get("data") or results.get("workers") else "docs"
    lines = [
        f"# elt bench: {title}, {results['started_at']}",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"{machine['system']}; load average {machine['load_start']} at the start, "
        f"{machine['load_end']} at the end (other work on the machine slows every case: compare the ratios "
        "of this run, not absolute times).",
    ]
    if results.get("data"):
        lines += [
            "",
            f"Source: PostgreSQL {results['versions']['system'].get('postgresql', '?')}, "
            f"`{results['data']['table']}` ({results['data']['rows']:,} rows, "
            f"{'built' if results['data']['created'] else 'reused'}). Peak RSS: {results['rss_method']}.",
            "",
            r"`÷ \copy`: this case's rows/s over `psql \copy`'s (the limit). `elt ÷ this`: the rows/s of "
            "elt's case in the same group over this case's (above 1: elt is faster). Incremental rows/s "
            "count the rows moved.",
        ]
    else:
        lines += ["", f"Peak RSS: {results['rss_method']}."]
    by_name = {case["name"]: case for case in results["cases"]}
    copy_rate = _rate(by_name.get("copy"))
    for group, title in GROUPS.items():
        cases = [case for case in results["cases"] if case["group"] == group]
        if not cases:
            continue
        heading = title
        if group == "incremental" and results.get("updated_rows"):
            heading += f" ({results['updated_rows']:,} rows)"
        if group == "file" and results.get("singer_file"):
            singer = results["singer_file"]
            heading += f" ({singer['bytes'] / 2**20:,.0f} MB, {singer['records']:,} RECORD messages)"
        elt_rate = _rate(by_name.get(ELT_CASE[group]))
        lines += ["", f"## {heading}", "", _row(COLUMNS), _row(["---"] * len(COLUMNS))]
        for case in cases:
            rate = _rate(case)
            to_copy = _ratio(rate, copy_rate) if group != "incremental" else "—"
            elt = "—" if case["name"] == ELT_CASE[group] else _ratio(elt_rate, rate)
            lines.append(
                _row(
                    [
                        f"`{case['name']}`",
                        case["title"],
                        case["tools"],
                        _number(case["seconds"], 2),
                        _number(rate, 0),
                        to_copy,
                        elt,
                        _number(case["peak_rss_mb"], 0),
                        _arrived(case),
                        _status(case),
                    ]
                )
            )
    if results.get("docs"):
        lines += _docs_section(results["docs"])
    if results.get("workers"):
        lines += _workers_section(results["workers"])
    failed_installs = {name: error for name, error in results.get("install_errors", {}).items() if error}
    if failed_installs:
        lines += ["", "## Peers that failed to install", ""]
        lines += [f"- `{name}`: {error}" for name, error in failed_installs.items()]
    return "\n".join(lines) + "\n"


DOCS_COLUMNS = (
    "case",
    "what runs",
    "versions",
    "wall s",
    "limit s",
    "warm s",
    "peak RSS MB",
    "nodes",
    "columns",
    "column coverage",
    "`elt dbt compile` s",
    "status",
)


WORKERS_COLUMNS = (
    "setting",
    "wall s",
    "rows/s",
    "rows arrived",
    "distinct ids",
    "partitions by worker",
    "status",
)


def _workers_section(workers: dict[str, Any]) -> list[str]:
    """The partitioned sync locally and on 1 and 2 Celery workers: one row per setting, the speed-up."""
    lines = ["", f"## `{workers['case']}`: {workers.get('title', '')}", ""]
    if workers.get("error"):
        return [*lines, f"failed: {workers['error']}"]
    lines += [
        f"{workers['rows']:,} rows of the events table, "
        f"`partition: {{by: id, count: {workers['partitions']}}}`, "
        f"built-in tap-postgres → target-postgres; workers: `elt worker --concurrency 1` on "
        f"{workers['broker']}, {workers['cores']} cores. 2 workers over 1: "
        f"{_number(workers['speedup_2_over_1'], 2)}×.",
        "",
        _row(WORKERS_COLUMNS),
        _row(["---"] * len(WORKERS_COLUMNS)),
    ]
    for row in workers["settings"]:
        spread = ", ".join(f"{k}: {v}" for k, v in sorted(row["partitions_by_worker"].items())) or "—"
        status = "ok" if row["status"] == "ok" else f"{row['status']}: {row['reason']}"
        cells = [row["setting"], _number(row["seconds"], 2), _number(row["rows_per_s"], 0),
                 _number(row["arrived"], 0), _number(row["distinct_ids"], 0), spread, status]  # fmt: skip
        lines.append(_row(cells))
    return lines


def _docs_section(docs: dict[str, Any]) -> list[str]:
    """`elt docs generate` on the synthetic project: one row, with what it found and the limit."""
    status = {"ok": "ok", "over limit": f"⚠ {docs['reason']}"}.get(docs["status"])
    status = status or f"failed: {docs['reason']}"
    coverage = "—" if docs["coverage"] is None else f"{docs['coverage']:.1%}"
    lines = [
        "",
        f"## `elt docs generate` on a synthetic {docs['models']:,}-model dbt project",
        "",
        "bench/dbt_project_gen.py's project, compiled first with `elt dbt compile` (measured, not part of "
        "the figure: dbt parse excluded); `wall s` is `elt docs generate --rebuild` (column lineage built "
        "from the manifest, site written), `warm s` the same without `--rebuild` (lineage from its cache). "
        f"Project: `{docs['project']}`.",
        "",
        _row(DOCS_COLUMNS),
        _row(["---"] * len(DOCS_COLUMNS)),
        _row(
            [
                "`docs_1000_models`",
                "elt docs generate --rebuild --format json",
                docs["tools"],
                _number(docs["seconds"], 2),
                _number(docs["limit_seconds"], 0),
                _number(docs["warm_seconds"], 2),
                _number(docs["peak_rss_mb"], 0),
                _number(docs["nodes"], 0),
                _number(docs["columns"], 0),
                coverage,
                _number(docs["compile_seconds"], 1),
                status,
            ]
        ),
    ]
    if docs.get("notes"):
        lines += ["", "Notes of `elt docs generate`:", ""] + [f"- {note}" for note in docs["notes"]]
    return lines


def _rate(case: dict[str, Any] | None) -> float | None:
    return case["rows_per_s"] if case and case["status"] != "failed" else None


def _ratio(top: float | None, bottom: float | None) -> str:
    if not top or not bottom:
        return "—"
    value = top / bottom
    if value >= 10:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def _number(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _arrived(case: dict[str, Any]) -> str:
    arrived = case["arrived"]
    if arrived is None:
        return "—"
    text = f"{arrived['rows']:,}"
    if arrived["distinct_ids"] is not None and arrived["distinct_ids"] != arrived["rows"]:
        text += f" ({arrived['distinct_ids']:,} ids)"
    if arrived["moved"] is not None:
        text = f"{arrived['moved']:,} moved; table {text}, {arrived['updated']:,} updated"
    return f"**{text}**" if case["status"] == "rows differ" else text


def _status(case: dict[str, Any]) -> str:
    if case["status"] == "ok":
        return "ok"
    if case["status"] == "rows differ":
        return f"⚠ {case['reason']}"
    return f"failed: {case['reason']}"


def _row(cells: list[str] | tuple[str, ...]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"
