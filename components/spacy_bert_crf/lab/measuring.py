"""How the lab measures speed and memory: one way to get a fresh process, the
process's peak memory, timed passes long enough to be stable, and the timer
the pipe's head reports its stages to.

A pass that times 0.3 s of work measures the machine as much as the code: two
quick benchmarks a minute apart on an idle machine gave pipe ÷ torch-loop
ratios of 0.48 and 0.81. So `timed_passes` repeats the work until a pass has
lasted at least `min_seconds`, and reports the median over the passes.
"""

import math
import os
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any, Callable, Dict, Iterator, Optional


def in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` in a newly spawned Python process, so that what it
    measures (its peak memory above all) is its own; its return value.

    `function` must be importable by name (a module-level function) and its
    arguments and result picklable.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def peak_rss_mib(pid: Optional[int] = None) -> float:
    """The peak resident memory so far of process `pid` (default: this one), in MiB.

    Linux's VmHWM, where there is one: `getrusage`'s maxrss survives `exec`, so
    a freshly spawned process would report its parent's peak if that was higher.
    Another process's peak needs /proc.
    """
    try:
        with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        if pid is not None:
            raise
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_tree(root: int) -> Dict[int, Dict[str, object]]:
    """The process `root` and all its descendants: command line and resident KiB of each."""
    parents, info = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as status:
                rss = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            continue
        parents[int(entry)] = int(fields[1])
        info[int(entry)] = {"command": command, "rss_kib": rss}
    tree, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        if pid in info:
            tree[pid] = info[pid]
        frontier.extend(child for child, parent in parents.items() if parent == pid)
    return tree


def _no_synchronization() -> None:
    pass


@dataclass
class StageSeconds:
    """A stage timer: seconds spent in each named stage, summed over calls.

    The pipe's head takes one as its `stage_timer` and times its "decode" and
    "probabilities" stages with it. `synchronize` waits for queued GPU work,
    so that the seconds are the stage's and not the launch's.
    """

    synchronize: Callable[[], None] = _no_synchronization
    totals: Dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.synchronize()
            self.totals[stage] = self.totals.get(stage, 0.0) + time.perf_counter() - start


@dataclass
class Timing:
    """Seconds per run of some work: the median over `passes` passes of
    `runs_per_pass` runs each, and each stage's seconds per run the same way."""

    seconds: float
    passes: int
    runs_per_pass: int
    # (slowest pass - fastest pass) / median: how far one pass may be off.
    spread: float
    stage_seconds: Dict[str, float]


def timed_passes(
    run: Callable[[], Any],
    passes: int,
    min_seconds: float,
    synchronize: Callable[[], None] = _no_synchronization,
    stages: Optional[StageSeconds] = None,
) -> Timing:
    """Time `run` over `passes` passes of at least `min_seconds` each.

    A first, untimed call warms up (lazy set-up, caches) and sizes the passes:
    each repeats `run` as often as that call says fills `min_seconds`.
    """
    synchronize()
    start = time.perf_counter()
    run()
    synchronize()
    runs_per_pass = max(1, math.ceil(min_seconds / max(time.perf_counter() - start, 1e-9)))
    per_run, stage_per_run = [], []
    for _ in range(passes):
        before = dict(stages.totals) if stages is not None else {}
        synchronize()
        start = time.perf_counter()
        for _ in range(runs_per_pass):
            run()
        synchronize()
        per_run.append((time.perf_counter() - start) / runs_per_pass)
        if stages is not None:
            stage_per_run.append(
                {key: (total - before.get(key, 0.0)) / runs_per_pass for key, total in stages.totals.items()}
            )
    median = statistics.median(per_run)
    stage_keys = {key for pass_stages in stage_per_run for key in pass_stages}
    return Timing(
        seconds=median,
        passes=passes,
        runs_per_pass=runs_per_pass,
        spread=(max(per_run) - min(per_run)) / median,
        stage_seconds={
            key: statistics.median(pass_stages.get(key, 0.0) for pass_stages in stage_per_run) for key in stage_keys
        },
    )
