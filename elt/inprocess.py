"""Run a built-in tap and a built-in target together in elt's own process, batches as Arrow tables.

    tap thread:   tap.sync_all() ──SCHEMA, BATCH arrow://…, STATE──► queue (one BATCH at a time)
    this thread:  queue ──► target._process_*_message ──► commit ──► STATE ──► on_state

The chain of processes (elt/chain.py) costs a built-in pair more than moving the rows does: each
process imports singer-sdk, pyarrow and its driver (~0.7 s of a 2-core machine's CPU, paid again by
the discovery process), and each batch is written to a Parquet file by the tap and read back by the
target. Here the tap's batches are handed to the target as the Arrow tables the tap decoded them into
(elt/handoff.py), while the tap reads the next batch in its thread: PostgreSQL's COPY, the decoding and
the warehouse's bulk insert overlap, and DuckDB and numpy release the GIL while they work.

The messages are the Singer messages the processes would exchange, serialized by the tap's writer and
read by the target's reader as on a pipe, so both connectors behave exactly as they do apart: STATE
goes out only after the target committed the rows before it, and the target's STATE is what `on_state`
receives. A BATCH is handed over only when the target takes it, so at most two batches are in memory:
the one the target loads and the one the tap has ready.
"""

from __future__ import annotations

import importlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any

from elt import handoff
from elt.chain import ChainResult
from elt.errors import EltError, RunError
from elt.logs import RateMeter, Redactor, Reporter
from elt.plugins import BUILTIN_CLASSES

_QUEUE_SIZE = 1000  # messages; a BATCH waits to be taken (see _QueueWriter)
_POLL_SECONDS = 0.1


class _Stopped(Exception):
    """The run was stopped (the target failed, or the time ran out): the tap thread ends."""


class _QueueWriter:
    """singer-sdk's message writer for the tap: each message, serialized as on stdout, onto the queue."""

    def __init__(self, messages: queue.Queue[Any], stop: threading.Event) -> None:
        from singer_sdk.io_base import SingerWriter

        self._serialize = SingerWriter().serialize_message
        self._messages = messages
        self._stop = stop

    def write_message(self, message: Any) -> None:
        line = self._serialize(message)
        messages = self._messages
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                messages.put(line, timeout=_POLL_SECONDS)
                break
            except queue.Full:
                continue
        if getattr(message, "type", None) != "BATCH":
            return
        # A batch waits until the target has taken it, so that while the target loads one batch the
        # tap prepares the next and no more: two batches in memory at most.
        with messages.all_tasks_done:
            while messages.unfinished_tasks:
                if self._stop.is_set():
                    raise _Stopped
                messages.all_tasks_done.wait(_POLL_SECONDS)


def builtin_class(builtin: str) -> Any:
    """The singer-sdk class of a built-in connector."""
    module, name = BUILTIN_CLASSES[builtin]
    return getattr(importlib.import_module(module), name)


def discover(
    tap_name: str, builtin: str, config: dict[str, Any], log: IO[str], redact: Redactor
) -> dict[str, Any]:
    """The built-in tap's catalog, as `--discover` would print it."""
    with _connector_logs(log, redact):
        try:
            tap = builtin_class(builtin)(config=config, validate_config=True, setup_mapper=False)
            try:
                text = tap.catalog_json_text
            finally:
                _close(tap)
        except EltError:
            raise
        except Exception as exc:  # the connector's own error, as its process would have reported it
            raise RunError(f"{tap_name} failed to discover its streams: {_describe(exc)}") from exc
    catalog: dict[str, Any] = json.loads(text)
    return catalog


def run_in_process(
    *,
    tap_name: str,
    tap_builtin: str,
    tap_config: dict[str, Any],
    catalog: dict[str, Any],
    state: dict[str, Any],
    target_name: str,
    target_builtin: str,
    target_config: dict[str, Any],
    on_state: Callable[[dict[str, Any]], None],
    reporter: Reporter,
    log: IO[str],
    timeout: float | None = None,
) -> ChainResult:
    """Sync the tap's selected streams into the target; RunError naming the connector that failed."""
    result = ChainResult()
    messages: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_SIZE)
    stop = threading.Event()
    tap_failure: list[BaseException] = []
    done = object()
    redact = reporter.redact
    durable = "state kept at the last point the target made durable"

    def durable_note() -> str:
        return durable if result.states else "no state was saved by this run"

    def saved(value: dict[str, Any]) -> None:
        on_state(value)
        result.states += 1
        result.last_state = value

    with _connector_logs(log, redact):
        try:
            target = builtin_class(target_builtin)(config=target_config, validate_config=True)
            target.on_state = saved
            tap = builtin_class(tap_builtin)(
                config=tap_config,
                catalog=catalog,
                state=state or None,
                validate_config=True,
                message_writer=_QueueWriter(messages, stop),
            )
        except EltError:
            raise
        except Exception as exc:
            raise RunError(f"could not start {tap_name} → {target_name}: {_describe(exc)}") from exc

        def produce() -> None:
            try:
                tap.sync_all()
            except _Stopped:
                pass
            except BaseException as exc:  # reported by the consuming thread
                tap_failure.append(exc)
            finally:
                _close(tap)
                while True:  # the end mark always gets through, unless the run was stopped
                    try:
                        messages.put(done, timeout=_POLL_SECONDS)
                        break
                    except queue.Full:
                        if stop.is_set():
                            break

        producer = threading.Thread(target=produce, name=f"{tap_name}-in-process", daemon=True)
        started = time.monotonic()
        meter = RateMeter()
        shown = 0.0
        reader = target.message_reader
        handlers = {
            "SCHEMA": target._process_schema_message,
            "RECORD": target._process_record_message,
            "STATE": target._process_state_message,
            "ACTIVATE_VERSION": target._process_activate_version_message,
            "BATCH": target._process_batch_message,
        }
        producer.start()
        try:
            while True:
                try:
                    line = messages.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    line = None
                if timeout is not None and time.monotonic() - started > timeout:
                    raise RunError(f"the sync timed out after {timeout:g}s and was stopped; {durable_note()}")
                if line is None:
                    continue
                messages.task_done()  # taken: a tap waiting on a BATCH may prepare the next one
                if line is done:
                    break
                message = reader.deserialize_json(line)
                kind = message.get("type")
                if kind in ("RECORD", "BATCH"):
                    stream = str(message.get("stream"))
                    if stream not in result.rows:
                        result.rows[stream] = 0
                        result.streams.append(stream)
                    if kind == "RECORD":
                        result.rows[stream] += 1
                    else:
                        result.rows[stream] += sum(map(handoff.rows, message.get("manifest") or []))
                    now = time.monotonic()
                    if now - shown > _POLL_SECONDS:
                        shown = now
                        rows = sum(result.rows.values())
                        reporter.progress(f"  {stream}: {rows:,} rows, {meter.rate(rows):,.0f} rows/s")
                handler = handlers.get(str(kind))
                if handler is not None:
                    _as_target(target_name, handler, message, durable_note)
            if tap_failure:
                raise RunError(f"{tap_name} failed: {_describe(tap_failure[0])}; {durable_note()}")
            _as_target(target_name, lambda _: target.process_endofpipe(), None, durable_note)
        except BaseException:
            stop.set()
            producer.join(timeout=10)
            _close(target)
            handoff.discard()
            raise
        finally:
            reporter.done_progress()
        producer.join()
    return result


def _as_target(
    name: str, handler: Callable[[Any], None], message: Any, durable_note: Callable[[], str]
) -> None:
    """Run one step of the target; its failure becomes a RunError naming it."""
    try:
        handler(message)
    except Exception as exc:  # its own errors too: in a process of its own it would exit non-zero
        raise RunError(f"{name} failed: {_describe(exc)}; {durable_note()}") from exc


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, EltError) else f"{type(exc).__name__}: {text}"


def _close(connector: Any) -> None:
    close = getattr(connector, "close", None)
    if callable(close):
        with suppress(Exception):  # closing after a failure must not hide it
            close()


class _LogFile(logging.Handler):
    """The connectors' log records into the run's log file, as their processes' stderr would be."""

    def __init__(self, log: IO[str], redact: Redactor) -> None:
        super().__init__(logging.INFO)
        self.log = log
        self.redact = redact
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.redact(record.getMessage())
        except Exception:  # a record that cannot be formatted is not worth failing a sync for
            return
        name = record.name.split(".")[0]
        with self._lock:
            self.log.write(f"{name} | {record.levelname} | {text}\n")


@contextmanager
def _connector_logs(log: IO[str], redact: Redactor) -> Iterator[None]:
    """Send what the connectors log to the run's log file, not to the terminal."""
    root = logging.getLogger()
    handler = _LogFile(log, redact)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
