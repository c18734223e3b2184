"""The `sql` step: statements, or a `.sql` file of them, run against a warehouse.

The database is the warehouse of the environment in force (where dbt builds: the DuckDB file, or
PostgreSQL in an environment whose `dbt` utility has `target: postgres`), unless the step names a loader
with `target:` (a target-postgres or target-duckdb of `elt.yml`) or gives a PostgreSQL `dsn:`.
All statements run in one transaction, unless the script has its own BEGIN/COMMIT. The step's `rows` is
what the last statement affected or returned; its `value`, the rows the last statement returned (the
first 1000).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import psycopg

from elt.errors import ProjectError, RunError
from elt.steps import StepContext, StepOutput
from elt.steps.warehouse import VALUE_ROW_CAP, database_of, json_safe, open_duckdb

# A script that controls its own transactions: BEGIN/COMMIT/ROLLBACK as a statement of their own.
_TRANSACTION_CONTROL = re.compile(
    r"(?:^|;)\s*(?:begin|commit|rollback|start\s+transaction)(?:\s+(?:work|transaction))?\s*(?:;|$)", re.I
)


def run_sql(spec: str, options: dict[str, Any], ctx: StepContext) -> StepOutput:
    """Run the statements of `spec` (SQL text, or the path of a `.sql` file relative to the project).

    Raises ProjectError for a missing file, RunError naming the failing statement and the database's
    message when a statement fails (nothing of the script is then committed, unless it commits itself).
    """
    sql, source = read_statements(spec, ctx)
    kind, address = database_of(ctx.project, options)
    if kind == "postgres":
        result = _run_postgres(sql, address, source)
    else:
        result = _run_duckdb(sql, Path(address), source, ctx)
    rows, returned, statements = result
    summary: dict[str, Any] = {"database": kind, "statements": statements}
    if source != "statement":
        summary["file"] = source
    if returned is not None:
        summary["truncated"] = rows is not None and rows > VALUE_ROW_CAP
        if summary["truncated"]:
            ctx.log(
                f"the last statement returned {rows} rows; the step's value keeps the first {VALUE_ROW_CAP}"
            )
    return StepOutput(rows=rows, value=returned, summary=summary)


def read_statements(spec: str, ctx: StepContext) -> tuple[str, str]:
    """(the SQL, where it came from: the file's path or `statement`)."""
    text = spec.strip()
    if text.lower().endswith(".sql") and "\n" not in text and " " not in text:
        path = Path(text) if Path(text).is_absolute() else ctx.project.root / text
        if not path.is_file():
            raise ProjectError(f"sql step '{ctx.step}': no file {path}")
        return path.read_text(encoding="utf-8"), text
    return spec, "statement"


def _run_duckdb(
    sql: str, path: Path, source: str, ctx: StepContext
) -> tuple[int | None, list[dict[str, Any]] | None, int]:
    con = open_duckdb(path, ctx.log)
    try:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as error:
            raise RunError(f"sql step '{ctx.step}' ({source}): {error}") from error
        if not statements:
            raise ProjectError(f"sql step '{ctx.step}' ({source}) has no statement")
        own_transaction = any(st.type == duckdb.StatementType.TRANSACTION for st in statements)
        if not own_transaction:
            con.execute("BEGIN")
        for number, statement in enumerate(statements, 1):
            try:
                con.execute(statement)
            except duckdb.Error as error:
                raise RunError(_failure(ctx.step, source, number, statement.query, error)) from error
        last = statements[-1]
        description = con.description or []
        if [d[0] for d in description] == ["Count"] and last.type != duckdb.StatementType.SELECT:
            counted = con.fetchone()
            outcome: tuple[int | None, list[dict[str, Any]] | None] = (
                int(counted[0]) if counted else None,
                None,
            )
        elif description:
            names = [d[0] for d in description]
            kept = [dict(zip(names, row, strict=True)) for row in con.fetchmany(VALUE_ROW_CAP)]
            total = len(kept)
            while chunk := con.fetchmany(10_000):
                total += len(chunk)
            outcome = (total, json_safe(kept))
        else:
            outcome = (None, None)
        if not own_transaction:
            con.execute("COMMIT")
        return outcome[0], outcome[1], len(statements)
    finally:
        con.close()


def _run_postgres(
    sql: str, conninfo: str, source: str
) -> tuple[int | None, list[dict[str, Any]] | None, int]:
    own_transaction = bool(_TRANSACTION_CONTROL.search(sql))
    try:
        conn = psycopg.connect(conninfo, autocommit=own_transaction)
    except psycopg.Error as error:
        raise RunError(f"sql step ({source}): cannot connect to PostgreSQL: {error}") from error
    with conn:
        cursor = conn.cursor()
        try:
            cursor.execute(sql.encode())  # bytes: no placeholders are parsed, `%` stays as written
        except psycopg.Error as error:
            raise RunError(f"sql step ({source}) failed in PostgreSQL: {str(error).strip()}") from error
        statements = 1
        while cursor.nextset():
            statements += 1
        if cursor.description:
            names = [c.name for c in cursor.description]
            kept = [dict(zip(names, row, strict=True)) for row in cursor.fetchmany(VALUE_ROW_CAP)]
            total = max(cursor.rowcount, len(kept))
            return total, json_safe(kept), statements
        return (cursor.rowcount if cursor.rowcount >= 0 else None), None, statements


def _failure(step: str, source: str, number: int, statement: str, error: Exception) -> str:
    first = next((line.strip() for line in statement.strip().splitlines() if line.strip()), "")
    return f"sql step '{step}' ({source}), statement {number} `{first[:80]}`: {error}"
