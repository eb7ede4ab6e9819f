"""Timed sections: wall time, this process's CPU, its peak RSS, the rest of the machine's CPU
and (PostgreSQL) the backends' CPU; the phase timer handed to the KMS's ``phases`` hook."""

from __future__ import annotations

import contextlib
import cProfile
import os
import pstats
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.harness.database import HasEngine, backend_cpu_seconds, backends_used

T = TypeVar("T")
#: Suffix of a phase timed on a thread other than the main one (it overlaps the main thread's).
WORKER = " (worker thread)"


def peak_rss_bytes() -> int:
    """This process's peak resident set size (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def busy_cpu_seconds() -> float | None:
    """Machine-wide non-idle CPU seconds since boot (/proc/stat), or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Clock:
    """Wall time, this process's CPU and the rest of the machine's CPU over a timed section.

    ``other_cores`` is the CPU the rest of the machine burnt per second of the section: the
    PostgreSQL server's work on a PostgreSQL run, and whatever else runs on the machine (noise).
    """

    def __init__(self) -> None:
        self.rss_before = peak_rss_bytes()
        self._busy = busy_cpu_seconds()
        self._cpu = cpu_seconds()
        self._started = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self._started
        cpu = cpu_seconds() - self._cpu
        busy = busy_cpu_seconds()
        other = None
        if busy is not None and self._busy is not None and seconds > 0:
            other = max(0.0, (busy - self._busy - cpu) / seconds)
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "other_cores": other,
            "rss_before": self.rss_before,
            "peak_rss": peak_rss_bytes(),
        }


def timed_run(
    db: HasEngine, profiler: cProfile.Profile | None, call: Callable[[], T]
) -> tuple[T, dict[str, Any]]:
    """``call()`` under a :class:`Clock` (and ``profiler``, when not None): its result and the
    timing, with the PostgreSQL backends' CPU counted as the database's share
    (``db_server_cpu_seconds``) and taken out of ``other_cores``. Backends opened during the run
    count from zero."""
    backends_before = backend_cpu_seconds(db.engine)
    clock = Clock()
    if profiler is not None:
        profiler.enable()
    result = call()
    if profiler is not None:
        profiler.disable()
    timing = clock.stop()
    db_cpu = backends_used(backends_before, backend_cpu_seconds(db.engine))
    if db_cpu is not None:
        timing["db_server_cpu_seconds"] = db_cpu
        if timing["other_cores"] is not None:
            timing["other_cores"] = max(0.0, timing["other_cores"] - db_cpu / timing["seconds"])
    return result, timing


def profiler_for(path: str | None) -> cProfile.Profile | None:
    """A profiler when ``--profile`` asked for one (``path``: where its figures go)."""
    return cProfile.Profile() if path else None


def dump_profile(profiler: cProfile.Profile, path: str, top: tuple[int, int]) -> None:
    """Write the profile to ``path`` and print the top functions on stderr: ``top`` by own
    time and by cumulative time."""
    profiler.dump_stats(path)
    stats = pstats.Stats(path, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(top[0])
    stats.sort_stats("cumulative").print_stats(top[1])


class PhaseTimer:
    """Exclusive wall time per phase (:class:`kms.phases.Phases`): a phase's time, minus the
    phases inside it.

    Each thread keeps its own stack of open phases. Phases that ran on other threads than the
    main one (issuance checks CSRs and signed slices on worker threads) are labelled as such
    (:data:`WORKER`): they overlap the main thread's, and what the main thread's phases leave
    unaccounted leaves them out.
    """

    def __init__(self) -> None:
        self.exclusive: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    def _stack(self) -> list[list[float]]:
        stack: list[list[float]] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def start(self) -> None:
        """Open a phase on this thread (:meth:`stop` closes it and names it)."""
        self._stack().append([time.perf_counter(), 0.0])

    def stop(self, name: str) -> None:
        """Close this thread's innermost phase, counting its time under ``name``."""
        stack = self._stack()
        started, inner = stack.pop()
        elapsed = time.perf_counter() - started
        if threading.current_thread() is not threading.main_thread():
            name += WORKER
        with self._lock:
            self.exclusive[name] = self.exclusive.get(name, 0.0) + elapsed - inner
            self.calls[name] = self.calls.get(name, 0) + 1
        if stack:
            stack[-1][1] += elapsed

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.start()
        try:
            yield
        finally:
            self.stop(name)

    @contextlib.contextmanager
    def session_events(self) -> Iterator[None]:
        """Also time every SQLAlchemy session's flushes and commits (``flush``, ``commit``:
        the commit's own flush inside it), through SQLAlchemy's session events."""
        from sqlalchemy import event
        from sqlalchemy.orm import Session

        def start(*_: object) -> None:
            self.start()

        def stop_flush(*_: object) -> None:
            self.stop("flush")

        def stop_commit(*_: object) -> None:
            self.stop("commit")

        listeners: list[tuple[str, Callable[..., None]]] = [
            ("before_flush", start),
            ("after_flush_postexec", stop_flush),
            ("before_commit", start),
            ("after_commit", stop_commit),
        ]
        for name, listener in listeners:
            event.listen(Session, name, listener)
        try:
            yield
        finally:
            for name, listener in listeners:
                event.remove(Session, name, listener)

    def breakdown(self) -> dict[str, dict[str, float | int]]:
        """Per phase: its exclusive seconds and how many times it ran."""
        return {
            name: {"seconds": seconds, "calls": self.calls[name]}
            for name, seconds in self.exclusive.items()
        }
