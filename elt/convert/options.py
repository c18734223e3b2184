"""Prefect task and flow options as elt step options: retries and their delays, caches, timeouts.

Each mapping says whether it is exact: Prefect's list of retry delays becomes elt's `delay`, `backoff`
and `max_delay` when they reproduce it; a cache keyed on inputs (`task_input_hash`, `INPUTS`,
`TASK_SOURCE`) becomes `cache: {expire}` (elt's fingerprint covers code, inputs and variables); a custom
key function, or anything else, is converted as closely as possible and reported as not exact.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from elt.convert.source import Module

# Options elt has nothing for, and why.
NO_ELT_EQUIVALENT = {
    "on_cancellation": "elt has no cancellation hook",
    "on_running": "elt has no hook when a run starts",
    "retry_condition_fn": "elt retries every failure; a condition on retries has no equivalent",
    "on_rollback": "elt has no transactions",
    "on_commit": "elt has no transactions",
}
# Options that need nothing in elt (and why), or that the converter maps itself ("").
HARMLESS = {
    "name": "the step is named after the function; the task's name is only a label",
    "task_run_name": "elt names instances step[0], step[1]…",
    "flow_run_name": "elt names runs by time and id",
    "description": "kept in the pipeline's description",
    "version": "elt fingerprints the code itself",
    "log_prints": "what a block prints goes to the step's log",
    "persist_result": "elt keeps every step's value in its run history",
    "result_storage": "elt keeps every step's value in its run history",
    "result_serializer": "values are JSON in elt",
    "result_storage_key": "elt keeps every step's value in its run history",
    "cache_result_in_memory": "values are JSON in elt's run history",
    "validate_parameters": "variables are plain values in elt",
    "viz_return_value": "only for Prefect's visualisation",
    "refresh_cache": "elt run --no-cache refreshes cached steps",
    "asset_deps": "elt's lineage comes from its own steps",
    "timeout_seconds": "",
    "retries": "",
    "retry_delay_seconds": "",
    "retry_jitter_factor": "",
    "cache_key_fn": "",
    "cache_policy": "",
    "cache_expiration": "",
    "tags": "",
    "task_runner": "",
    "on_completion": "",
    "on_failure": "",
    "on_crashed": "",
}


def retry_policy(
    module: Module, count: ast.expr, delay: ast.expr | None, jitter: ast.expr | None
) -> tuple[dict[str, Any], bool, str]:
    """elt's `retries:` for Prefect's retries, retry_delay_seconds and retry_jitter_factor; whether the
    mapping is exact, and a note."""
    n = literal(count)
    if not isinstance(n, int):
        return {"count": 1}, False, f"retries is `{module.text(count)}`, not a number: 1 assumed"
    policy: dict[str, Any] = {"count": n}
    automatic, note = True, ""
    if delay is not None:
        delays = literal(delay)
        if isinstance(delay, ast.Call) and module.is_prefect(delay.func, "exponential_backoff"):
            factor = (
                literal(delay.args[0])
                if delay.args
                else literal(
                    next((k.value for k in delay.keywords if k.arg == "backoff_factor"), ast.Constant(None))
                )
            )
            if isinstance(factor, int | float):
                policy.update(delay=_number(factor), backoff="exponential")
            else:
                automatic, note = False, "exponential_backoff's factor is not a number"
        elif isinstance(delays, int | float) and not isinstance(delays, bool):
            policy.update(delay=_number(delays), backoff="fixed")
        elif isinstance(delays, list | tuple) and delays and all(isinstance(d, int | float) for d in delays):
            fitted, exact = fit_delays([float(d) for d in delays], n)
            policy.update(fitted)
            if not exact:
                automatic, note = False, f"Prefect waited {list(delays)} s; elt's closest: {show(fitted)}"
        else:
            automatic, note = False, f"retry_delay_seconds `{module.text(delay)}` is not a number or list"
    if jitter is not None:
        factor = literal(jitter)
        if isinstance(factor, int | float):
            policy["jitter"] = _number(factor)
            note = (
                note + "; " if note else ""
            ) + "elt adds up to jitter×delay at random; Prefect varies around it"
        else:
            automatic, note = False, "retry_jitter_factor is not a number"
    return policy, automatic, note


def fit_delays(delays: list[float], count: int) -> tuple[dict[str, Any], bool]:
    """`delay`, `backoff` (and `max_delay`) for Prefect's list of delays, and whether they match it
    exactly (Prefect reuses the last delay when there are more retries than delays)."""
    wanted = [delays[min(i, len(delays) - 1)] for i in range(max(count, 1))]
    first = wanted[0]
    candidates: list[dict[str, Any]] = [
        {"delay": _number(first), "backoff": "fixed"},
        {"delay": _number(first), "backoff": "exponential"},
        {"delay": _number(first), "backoff": "linear"},
    ]
    for capped in (False, True):  # the simplest policy that gives the same delays
        for policy in candidates:
            option = dict(policy, max_delay=_number(max(wanted))) if capped else policy
            if _delays(option, len(wanted)) == [round(d, 6) for d in wanted]:
                return option, True
    return {"delay": _number(first), "backoff": "exponential", "max_delay": _number(max(wanted))}, False


def _delays(policy: dict[str, Any], n: int) -> list[float]:
    from elt.orchestrator.model import RetryPolicy

    retry = RetryPolicy(
        n,
        float(policy["delay"]),
        policy["backoff"],
        float(policy["max_delay"]) if "max_delay" in policy else None,
    )
    return [round(retry.delay_before(i + 1), 6) for i in range(n)]


def cache_config(
    module: Module, options: dict[str, ast.expr]
) -> tuple[dict[str, Any] | None, bool, str, str] | None:
    """(elt's `cache:` or None, exact?, what it became, note) for a task's cache options; None when the
    task has none."""
    key_fn = options.get("cache_key_fn")
    policy = options.get("cache_policy")
    expiration = options.get("cache_expiration")
    if key_fn is None and policy is None and expiration is None:
        return None
    after = seconds(expiration) if expiration is not None else None
    expire = _duration(after) if after is not None else "365d"
    forever = "" if after is not None else "Prefect's cache did not expire; elt's needs an expiry: a year"
    if expiration is not None and after is None:
        return (
            {"expire": "1h"},
            False,
            "cache: {expire: 1h}",
            f"cache_expiration `{module.text(expiration)}` is not a timedelta",
        )
    if key_fn is not None:
        if module.is_prefect(key_fn, "task_input_hash"):
            return (
                {"expire": expire},
                True,
                f"cache: {{expire: {expire}}}",
                _join("elt's fingerprint covers inputs, code and variables", forever),
            )
        return (
            {"expire": expire},
            False,
            f"cache: {{expire: {expire}}}",
            (f"the cache key `{module.text(key_fn)}` is custom: elt keys on code, inputs and variables"),
        )
    if policy is not None:
        names = {n.id for n in ast.walk(policy) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(policy) if isinstance(n, ast.Attribute)}
        if names & {"NO_CACHE", "NONE"}:
            return None, True, "no cache", "the task's cache was turned off"
        if names & {"RUN_ID", "DEFAULT"}:
            return (
                None,
                True,
                "no cache",
                "a cache keyed on the run id only helps within a run; elt runs each step once",
            )
        if names & {"INPUTS", "TASK_SOURCE", "Inputs", "FLOW_PARAMETERS", "CompoundCachePolicy"}:
            return (
                {"expire": expire},
                True,
                f"cache: {{expire: {expire}}}",
                _join("elt's fingerprint covers inputs, code and variables together", forever),
            )
        return (
            {"expire": expire},
            False,
            f"cache: {{expire: {expire}}}",
            f"cache policy `{module.text(policy)}`",
        )
    return None, True, "no cache", "cache_expiration without a cache key: Prefect caches within a run only"


def webhook_url(module: Module, function: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    """The URL a hook does nothing but POST to (`httpx.post("https://…", …)`), or None."""
    statements = [
        s for s in function.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
    ]
    if len(statements) != 1 or not isinstance(statements[0], ast.Expr):
        return None
    call = statements[0].value
    if isinstance(call, ast.Await):
        call = call.value
    if not isinstance(call, ast.Call):
        return None
    qualified = module.qualify(call.func) or ""
    if qualified not in ("httpx.post", "requests.post") or not call.args:
        return None
    url = call.args[0]
    return url.value if isinstance(url, ast.Constant) and isinstance(url.value, str) else None


def hook_deployment(
    module: Module, function: ast.FunctionDef | ast.AsyncFunctionDef
) -> tuple[str, dict[str, Any] | None] | None:
    """The deployment a hook runs (`run_deployment("flow/deployment", parameters={…})`) and its literal
    parameters (None when they are not literal), or None."""
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and module.is_prefect(node.func, "run_deployment") and node.args:
            name = node.args[0]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                given = next((k.value for k in node.keywords if k.arg == "parameters"), None)
                parameters = literal(given) if given is not None else {}
                return name.value, yaml_literal(parameters) if isinstance(parameters, dict) else None
    return None


def literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def seconds(node: ast.expr) -> float | None:
    """Seconds of `timedelta(hours=1)`, `datetime.timedelta(minutes=30)` or a number."""
    value = literal(node)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(node, ast.Call) and (
        getattr(node.func, "id", None) == "timedelta" or getattr(node.func, "attr", None) == "timedelta"
    ):
        units = {
            "weeks": 604800,
            "days": 86400,
            "hours": 3600,
            "minutes": 60,
            "seconds": 1,
            "milliseconds": 0.001,
        }
        total = 0.0
        positional = ["days", "seconds", "microseconds", "milliseconds", "minutes", "hours", "weeks"]
        pairs = list(zip(positional, node.args, strict=False)) + [(k.arg, k.value) for k in node.keywords]
        for unit, arg in pairs:
            amount = literal(arg)
            if unit not in units or not isinstance(amount, int | float):
                return None
            total += amount * units[unit]
        return total
    return None


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def yaml_literal(value: Any) -> Any:
    """A Python literal as a YAML value: tuples and sets as lists."""
    if isinstance(value, tuple | set | frozenset):
        return [yaml_literal(v) for v in value]
    if isinstance(value, list):
        return [yaml_literal(v) for v in value]
    if isinstance(value, dict):
        return {str(k): yaml_literal(v) for k, v in value.items()}
    if isinstance(value, bytes | complex):
        return repr(value)
    return value


def show(value: Any) -> str:

    return json.dumps(value, default=str)
