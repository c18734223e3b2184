"""Partitioned syncs: one large stream read and loaded in ranges of a column, the ranges in parallel.

    - name: orders
      sync: tap-postgres target-postgres
      partition: {stream: public-orders, by: id, count: 8}

is three steps of its pipeline (elt/orchestrator/model.py), each an attempt of its own that needs only
its request (elt/steps/partition.py), so that workers anywhere can run them:

    orders:plan    `plan_partitions`: half-open ranges [lower, upper) of the column, from the stream's
                   bookmark (or its smallest value) to just past its largest value
    orders         `load_partition`, one instance per range (`for_each`): a sync of that range alone,
                   which the target loads in one transaction with the range's id in its ledger
    orders:commit  `commit_partitions`: the stream's bookmark moves to the upper bound of the last range
                   of the unbroken run of loaded ranges from the bottom

The bookmark is the stream's, in the sync's state id (`<env>:<tap>-to-<target>`), as an incremental
sync keeps it: `replication_key` the column, `replication_key_value` the bound the next read starts at
(rows `>=` it), so a plain `elt sync` of the stream goes on from there. Next to it,
`partitions: {column, epoch, pending}` holds the ranges planned and not yet committed: a later plan reads
them again under the same ids, so that a range loaded by a failed run is not loaded twice, and only
plans new ranges above them. The epoch (a token drawn when a stream is planned from no bookmark, or with
`full_refresh`) makes the ids of a new start differ from those an earlier start left in the ledger.

Only the plan and the commit take the state id's lock, briefly (and they wait for it); the ranges take
none and write no state, so they run side by side. The target's ledger (target-postgres:
targets/target_postgres/ledger.py) is what says a range was loaded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from elt.errors import EltError, ProjectError, RunError

if TYPE_CHECKING:
    from elt.logs import Reporter
    from elt.plugins import Plugin
    from elt.project import Project
    from elt.sync import SyncResult

# Built-in connectors that partitioned syncs can use: a tap that reads a range, a target with a ledger.
PARTITION_TAPS = ("tap-postgres",)
PARTITION_TARGETS = ("target-postgres",)
PERIODS = ("hour", "day", "week", "month")
_PERIOD_ALIASES = {"1h": "hour", "1d": "day", "1w": "week", "1mo": "month", "1M": "month"}
MAX_PARTITIONS = 1000  # a for_each instance, a process and a transaction each


@dataclass(frozen=True)
class PartitionSpec:
    """A sync step's `partition:`: which stream, by which column, cut how (one of count, size, every)."""

    stream: str
    by: str
    count: int | None = None  # ranges of equal width between the smallest and largest value
    size: int | None = None  # integer columns: ranges of `size` values, at multiples of it
    every: str | None = None  # date and timestamp columns: one range per hour, day, week or month

    @classmethod
    def from_options(cls, value: Any, where: str) -> PartitionSpec:
        """The spec from the step's `partition:` mapping; ProjectError naming `where` if it is wrong."""
        if not isinstance(value, Mapping):
            raise ProjectError(
                f"{where}: expected a mapping such as {{stream: public-orders, by: id, count: 8}}"
            )
        for key in ("stream", "by"):
            if not isinstance(value.get(key), str) or not value[key]:
                raise ProjectError(
                    f"{where}.{key}: required: the {'stream' if key == 'stream' else 'column'} name"
                )
        given = [key for key in ("count", "size", "every") if value.get(key) is not None]
        if len(given) != 1:
            raise ProjectError(
                f"{where}: expected exactly one of count, size or every, got {', '.join(given) or 'none'}"
            )
        every = value.get("every")
        if every is not None:
            every = _PERIOD_ALIASES.get(str(every), str(every))
            if every not in PERIODS:
                raise ProjectError(
                    f"{where}.every: expected one of {', '.join(PERIODS)} (or 1h, 1d, 1w, 1mo), "
                    f"got '{value['every']}'"
                )
        for key in ("count", "size"):
            number = value.get(key)
            if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 1):
                raise ProjectError(f"{where}.{key}: expected a whole number of at least 1, got {number!r}")
        return cls(str(value["stream"]), str(value["by"]), value.get("count"), value.get("size"), every)


@dataclass(frozen=True)
class Partition:
    """One range of a stream: the rows with `lower <= column < upper` (bounds as JSON: an integer, or
    the ISO text of a date or timestamp)."""

    id: str
    stream: str
    column: str
    lower: Any
    upper: Any

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "stream": self.stream, "column": self.column, "lower": self.lower,
                "upper": self.upper}  # fmt: skip

    @classmethod
    def from_json(cls, value: Any) -> Partition:
        if not isinstance(value, Mapping) or not all(
            k in value for k in ("id", "stream", "column", "lower", "upper")
        ):
            raise EltError(f"not a partition: {value!r} (expected {{id, stream, column, lower, upper}})")
        return cls(
            str(value["id"]), str(value["stream"]), str(value["column"]), value["lower"], value["upper"]
        )


@dataclass(frozen=True)
class PartitionLoadResult:
    """What loading one partition did: `loaded`, or `skipped` when its id was in the ledger already."""

    partition: Partition
    status: str
    rows: int  # rows loaded by this load; for a skipped one, the rows of the load that did it
    loaded_by: str | None
    sync: SyncResult | None = None

    def to_json(self) -> dict[str, Any]:
        return {"partition": self.partition.id, "status": self.status, "rows": self.rows,
                "loaded_by": self.loaded_by}  # fmt: skip


@dataclass(frozen=True)
class CommitResult:
    """What a commit did to the stream's bookmark, and which planned partitions are still not loaded."""

    stream: str
    column: str
    bookmark: Any  # the stream's bookmark after the commit (None: none yet)
    committed: list[str] = field(default_factory=list)  # ids whose ranges the bookmark moved past
    pending: list[str] = field(default_factory=list)  # ids still waiting above the bookmark
    missing: list[str] = field(default_factory=list)  # ids of the run's plan not in the ledger
    rows: int = 0  # rows of the committed partitions

    def to_json(self) -> dict[str, Any]:
        return {"stream": self.stream, "column": self.column, "bookmark": self.bookmark,
                "committed": len(self.committed), "pending": self.pending, "missing": self.missing,
                "rows": self.rows}  # fmt: skip


# -- planning ---------------------------------------------------------------------------------------


def plan_partitions(
    project: Project,
    tap_name: str,
    target_name: str,
    spec: PartitionSpec,
    step: str,
    *,
    full_refresh: bool = False,
    run_id: str | None = None,
) -> list[Partition]:
    """The partitions of `spec.stream` to load now, bottom first: those planned before and not yet
    committed (same ids), then new ranges up to the column's largest value. They are saved as pending
    in the stream's state. `step` names the partitioned step (it is part of each id)."""
    tap, target = partition_plugins(project, tap_name, target_name)
    with _stream_state(project, tap, target, spec.stream, run_id or "plan") as (entry, save):
        progress = _progress(entry)
        if full_refresh:
            bookmark, pending, epoch = None, [], _new_epoch()
        else:
            bookmark = _bookmark(entry, spec)
            pending = [Partition.from_json(p) for p in progress.get("pending") or []]
            if pending and progress.get("column") != spec.by:
                raise EltError(
                    f"stream '{spec.stream}' has {len(pending)} partition(s) by '{progress.get('column')}' "
                    f"planned and not loaded yet; this step partitions it by '{spec.by}'",
                    hint=f"load them first (by: {progress.get('column')}), or start again with "
                    "full_refresh: true",
                )
            epoch = (
                str(progress.get("epoch") or _new_epoch())
                if bookmark is not None or pending
                else _new_epoch()
            )
        start = pending[-1].upper if pending else bookmark
        bounds = _bounds(tap, spec, start)
        ranges = split_range(bounds.kind, spec, _parse(bounds.kind, start), bounds.minimum, bounds.maximum)
        new = [
            Partition(_partition_id(step, spec, lower, upper, epoch), spec.stream, spec.by, lower, upper)
            for lower, upper in ((_json(bounds.kind, a), _json(bounds.kind, b)) for a, b in ranges)
        ]
        partitions = [*pending, *new]
        if len(partitions) > MAX_PARTITIONS:
            raise EltError(
                f"stream '{spec.stream}' would be cut into {len(partitions)} partitions "
                f"(at most {MAX_PARTITIONS})",
                hint="use a smaller count, a larger size, or a longer period (every: week or month)",
            )
        update: dict[str, Any] = {
            "partitions": {"column": spec.by, "epoch": epoch, "pending": [p.to_json() for p in partitions]}
        }
        if full_refresh:
            update["replication_key_value"] = None
        save(update)
    return partitions


def split_range(
    kind: str, spec: PartitionSpec, start: Any, minimum: Any, maximum: Any
) -> list[tuple[Any, Any]]:
    """Half-open ranges [lower, upper) covering `start` (or `minimum`, without a start) to just past
    `maximum`, cut as `spec` says; none when there is no row (`maximum` None).

    `count` divides [minimum, maximum] into equal widths (the first range reaches down to `start`);
    `size` cuts at multiples of it; `every` at the start of each hour, day, week (Monday) or month.
    """
    if maximum is None:
        return []
    lower = start if start is not None else minimum
    end = _successor(kind, maximum)
    cuts: list[Any] = []
    if spec.every is not None:
        if kind == "integer":
            raise EltError(f"stream '{spec.stream}': every: {spec.every} needs a date or timestamp column; "
                           f"'{spec.by}' is an integer", hint="use count or size")  # fmt: skip
        if kind == "date" and spec.every == "hour":
            raise EltError(
                f"stream '{spec.stream}': every: hour needs a timestamp column; '{spec.by}' is a date"
            )
        if start is None:  # the first range starts at its period's start too: the same rows, plainer ids
            lower = _period_start(minimum, spec.every)
        cut = _next_period(_period_start(lower, spec.every), spec.every)
        while cut < end:
            cuts.append(cut)
            cut = _next_period(cut, spec.every)
    elif spec.size is not None:
        if kind != "integer":
            raise EltError(f"stream '{spec.stream}': size needs an integer column; '{spec.by}' is a {kind}",
                           hint="use count, or every: day (week, month, hour)")  # fmt: skip
        cut = (lower // spec.size + 1) * spec.size
        while cut < end:
            cuts.append(cut)
            cut += spec.size
    else:
        count = int(spec.count or 1)
        if kind == "integer":
            width = max(1, -(-(end - minimum) // count))
            cuts = [minimum + width * k for k in range(1, count)]
        else:
            unit = timedelta(days=1) if kind == "date" else timedelta(microseconds=1)
            width = max(1, -(-((end - minimum) // unit) // count))
            cuts = [minimum + unit * width * k for k in range(1, count)]
        cuts = [cut for cut in cuts if lower < cut < end]
    bounds = [lower, *cuts, end]
    return list(zip(bounds, bounds[1:], strict=False))


# -- loading one partition --------------------------------------------------------------------------


def load_partition(
    project: Project,
    tap_name: str,
    target_name: str,
    partition: Partition,
    *,
    loaded_by: str,
    reporter: Reporter,
    timeout: float | None = None,
) -> PartitionLoadResult:
    """Load one partition, unless the target's ledger has it already (`skipped`). `loaded_by` names
    this load in the ledger, which tells afterwards whether this load or another one loaded it."""
    from elt.sync import sync_partition

    tap, target = partition_plugins(project, tap_name, target_name)
    before = _ledger(tap, target, partition.stream, [partition.id]).get(partition.id)
    if before is not None:
        reporter.event("partition_skipped", f"partition {partition.id} was loaded before "
                       f"({before.rows:,} rows by {before.loaded_by}): not loaded again")  # fmt: skip
        return PartitionLoadResult(partition, "skipped", before.rows, before.loaded_by)
    result = sync_partition(
        project, tap.name, target.name, partition.stream,
        tap_partition={"stream": partition.stream, "column": partition.column, "lower": partition.lower,
                       "upper": partition.upper},
        target_partition={"id": partition.id, "stream": partition.stream, "loaded_by": loaded_by},
        reporter=reporter, timeout=timeout,
    )  # fmt: skip
    after = _ledger(tap, target, partition.stream, [partition.id]).get(partition.id)
    if after is None:
        raise RunError(
            f"partition {partition.id}: {target.name} ended without recording it in its ledger",
            hint=f"is '{target.name}' the built-in target-postgres? Its log: {result.log_file}",
        )
    if after.loaded_by != loaded_by:
        reporter.event("partition_skipped", f"partition {partition.id} was loaded by {after.loaded_by} "
                       "meanwhile: not loaded again")  # fmt: skip
        return PartitionLoadResult(partition, "skipped", after.rows, after.loaded_by, result)
    return PartitionLoadResult(partition, "loaded", after.rows, loaded_by, result)


# -- committing -------------------------------------------------------------------------------------


def commit_partitions(
    project: Project,
    tap_name: str,
    target_name: str,
    spec: PartitionSpec,
    planned: list[Partition] | None,
    *,
    run_id: str | None = None,
) -> CommitResult:
    """Move the stream's bookmark past the pending partitions the ledger holds, bottom up, stopping at
    the first one it does not; `missing` lists the partitions of `planned` (this run's plan) not loaded."""
    tap, target = partition_plugins(project, tap_name, target_name)
    with _stream_state(project, tap, target, spec.stream, run_id or "commit") as (entry, save):
        progress = _progress(entry)
        pending = [Partition.from_json(p) for p in progress.get("pending") or []]
        ids = list(dict.fromkeys([p.id for p in pending] + [p.id for p in planned or []]))
        loaded = _ledger(tap, target, spec.stream, ids)
        done: list[Partition] = []
        for partition in pending:
            if partition.id not in loaded:
                break
            done.append(partition)
        remaining = pending[len(done) :]
        bookmark = entry.get("replication_key_value")
        if done:
            bookmark = done[-1].upper
            update: dict[str, Any] = {"replication_key": spec.by, "replication_key_value": bookmark}
        else:
            update = {}
        update["partitions"] = {**progress, "pending": [p.to_json() for p in remaining]}
        save(update)
    return CommitResult(
        spec.stream, spec.by, bookmark, [p.id for p in done], [p.id for p in remaining],
        [p.id for p in planned or [] if p.id not in loaded], sum(loaded[p.id].rows for p in done),
    )  # fmt: skip


# -- what the three steps share -----------------------------------------------------------------------


def partition_plugins(project: Project, tap_name: str, target_name: str) -> tuple[Plugin, Plugin]:
    """The tap and target of a partitioned sync; EltError unless they can take part in one."""
    from elt.plugins import find_plugin

    tap = find_plugin(project, tap_name, "extractors")
    target = find_plugin(project, target_name, "loaders")
    if tap.builtin not in PARTITION_TAPS or tap.pip_url:
        raise EltError(
            f"extractor '{tap.name}' cannot read a stream in partitions: partitioned syncs need the built-in "
            f"{' or '.join(PARTITION_TAPS)}, which reads one range of a column and knows its bounds",
            hint="sync this stream without `partition:`",
        )
    if target.builtin not in PARTITION_TARGETS or target.pip_url:
        why = (
            "DuckDB lets one process write a database file at a time, so partitions could not load side by "
            "side; a plain sync's in-process fast path loads 1M rows in seconds"
            if target.builtin == "target-duckdb"
            else f"partitioned syncs need the built-in {' or '.join(PARTITION_TARGETS)}, whose ledger loads "
            "each partition exactly once"
        )
        raise EltError(
            f"loader '{target.name}' cannot load partitions: {why}", hint="sync without `partition:`"
        )
    if str(target.config.get("load_method") or "") == "overwrite":
        raise EltError(
            f"loader '{target.name}' has load_method overwrite: each partition would empty the table",
            hint="load partitioned streams with load_method append-only or upsert",
        )
    return tap, target


def _ledger(tap: Plugin, target: Plugin, stream: str, ids: list[str]) -> dict[str, Any]:
    from elt.sync import target_config
    from targets.target_postgres.ledger import loaded_partitions

    return loaded_partitions(target_config(tap, target), stream, ids)


def _bounds(tap: Plugin, spec: PartitionSpec, start: Any) -> Any:
    from taps.tap_postgres.partitions import column_bounds

    return column_bounds(tap.config, spec.stream, spec.by, at_least=start)


@contextmanager
def _stream_state(
    project: Project, tap: Plugin, target: Plugin, stream: str, run_id: str
) -> Iterator[tuple[dict[str, Any], Callable[[dict[str, Any]], None]]]:
    """The stream's bookmark entry in the sync's state id, and a function that merges an update into
    it, under the state id's lock: waited for, since a plan or a commit holds it for a moment."""
    from elt.state import open_state_store, state_id_for

    state_id = state_id_for(project.environment, tap.name, target.name)
    with open_state_store(project) as store, store.lock(state_id, run_id=run_id, wait=True):
        record = store.get(state_id)
        entry = ((record.effective if record else {}).get("bookmarks") or {}).get(stream)

        def save(update: dict[str, Any]) -> None:
            store.merge(state_id, {"bookmarks": {stream: update}})

        yield (dict(entry) if isinstance(entry, dict) else {}), save


def _progress(entry: dict[str, Any]) -> dict[str, Any]:
    """The stream's `partitions: {column, epoch, pending}` ({} when it has none)."""
    progress = entry.get("partitions")
    return dict(progress) if isinstance(progress, dict) else {}


def _bookmark(entry: dict[str, Any], spec: PartitionSpec) -> Any:
    """Where the stream's rows not loaded yet start: its bookmark, if it is one of the partition column."""
    value = entry.get("replication_key_value")
    if value is None:
        return None
    key = entry.get("replication_key")
    if key not in (None, spec.by):
        raise EltError(
            f"stream '{spec.stream}' has a bookmark of '{key}' ({value}); this step partitions it by "
            f"'{spec.by}', whose rows already loaded elt cannot tell",
            hint="partition it by the bookmark's column, or load it all again with full_refresh: true",
        )
    return value


def _new_epoch() -> str:
    return uuid.uuid4().hex[:8]


def _partition_id(step: str, spec: PartitionSpec, lower: Any, upper: Any, epoch: str) -> str:
    return f"{step}/{spec.stream}/{spec.by}/{lower}..{upper}@{epoch}"


def _successor(kind: str, value: Any) -> Any:
    """The smallest value above `value` (so that the last range, half-open, holds the largest one)."""
    if kind == "integer":
        return int(value) + 1
    if kind == "date":
        return value + timedelta(days=1)
    return value + timedelta(microseconds=1)  # PostgreSQL's timestamps count microseconds


def _period_start(value: Any, period: str) -> Any:
    if isinstance(value, datetime):
        if period == "hour":
            return value.replace(minute=0, second=0, microsecond=0)
        day = value.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        day = value
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def _next_period(start: Any, period: str) -> Any:
    if period == "hour":
        return start + timedelta(hours=1)
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(weeks=1)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def _parse(kind: str, value: Any) -> Any:
    """A bound or bookmark as the Python value it stands for (JSON keeps dates as ISO text)."""
    if value is None:
        return None
    if kind == "integer":
        return int(value)
    if kind == "date":
        return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if kind == "timestamptz" and parsed.tzinfo is None:
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _json(kind: str, value: Any) -> Any:
    if kind == "integer":
        return int(value)
    return value.isoformat()
