"""Run one command and measure it: wall seconds and peak RSS of its whole process tree.

Wall time is `time.perf_counter` from just before the process starts to just after it is reaped.
Peak RSS is the larger of two figures:
- the most the tree held at once: every 20 ms a sampler thread walks the tree from the root process
  (`/proc/<pid>/task/<tid>/children`) and adds up each process's resident set (`/proc/<pid>/statm`);
- the largest single process's own peak, from `/usr/bin/time -f %M` wrapped around the command (the
  kernel's `ru_maxrss` of the command and every descendant it waited for), so that a case shorter than
  one sample still has a figure. GNU time is a small C program: the peak a child inherits from its
  parent at fork is a megabyte, not this harness's Python.
A pipeline `a | b` is run under `bash -o pipefail -c`, so both sides are in the tree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GNU_TIME = "/usr/bin/time"
SAMPLE_SECONDS = 0.02
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
RSS_METHOD = (
    "peak of the summed RSS of the process tree, sampled from /proc every 20 ms, or the largest single "
    "process's peak (/usr/bin/time -f %M around the command) when that is higher"
)


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss_mb: float
    returncode: int
    timed_out: bool = False


def run_measured(
    args: list[str],
    *,
    log: Path,
    stdin: Path | None = None,
    stdout: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> Measurement:
    """Run `args` to completion, stdout to `stdout` (else /dev/null) and stderr to `log`.

    The process gets a session of its own, so that a timeout or Ctrl-C stops the whole tree.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    maxrss_file = log.with_suffix(".maxrss")
    maxrss_file.unlink(missing_ok=True)
    with (
        open(stdin or os.devnull, "rb") as source,
        open(stdout or os.devnull, "wb") as sink,
        open(log, "wb") as errors,
    ):
        started = time.perf_counter()
        proc = subprocess.Popen(
            [GNU_TIME, "-f", "%M", "-o", str(maxrss_file), *args],
            stdin=source,
            stdout=sink,
            stderr=errors,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _stop_group(proc.pid)

        timer = threading.Timer(timeout, expire) if timeout else None
        if timer:
            timer.start()
        try:
            returncode = proc.wait()
        except BaseException:  # Ctrl-C: stop the tree, then let the interrupt go on
            _stop_group(proc.pid)
            proc.wait()
            raise
        finally:
            seconds = time.perf_counter() - started
            sampler.stop()
            if timer:
                timer.cancel()
    _stop_group(proc.pid)  # anything the command left running in the background
    peak = max(sampler.peak_bytes, _largest_process_kb(maxrss_file) * 1024)
    return Measurement(seconds, peak / 2**20, returncode, expired.is_set())


def _largest_process_kb(path: Path) -> int:
    """The %M figure GNU time wrote last in `path` (after any 'Command exited ...' line)."""
    try:
        lines = path.read_text(encoding="utf-8").split()
        return int(lines[-1]) if lines else 0
    except (OSError, ValueError):
        return 0


def _stop_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _TreeSampler(threading.Thread):
    """Samples the summed RSS of a process tree until stopped; keeps the peak."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_bytes = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_bytes = max(self.peak_bytes, tree_rss_bytes(self.root))
            self._done.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._done.set()
        self.join()


def tree_rss_bytes(root: int) -> int:
    """Resident bytes of `root` and all its descendants right now (0 for processes already gone)."""
    total, pending, seen = 0, [root], set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
                total += int(statm.read().split()[1]) * PAGE_BYTES
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                    pending.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue  # the process ended between two reads
    return total
