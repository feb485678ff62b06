"""How fast `annotate` tags here: each engine and worker count on the same lines.

Every configuration runs the annotate command (scripts/annotate.py) in a fresh
process twice: on one
shard of `startup_lines` lines, whose wall time is the start-up (loading the
model, starting Ray and its actors), and on all the lines. The tagging rate
is the full run's characters over the difference of the two wall times, so
that start-up, which a long job pays once, is not counted against it. While a
run goes, its process tree is sampled from /proc every `sample_seconds`, for
the peak resident memory of each worker: spaCy's `n_process` children, Ray's
`MapWorker` actors, or the one process itself.
"""

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..formats import PathLike
from .measuring import process_tree

RAY_WORKER = "MapBatches(ShardTagger)"


def run_sampled(command: Sequence[str], sample_seconds: float = 0.2) -> Dict[str, object]:
    """Run `command`; its wall seconds, exit code, and each process's peak resident MiB."""
    peaks: Dict[int, Dict[str, object]] = {}
    start = time.perf_counter()
    process = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample():
        while not done.is_set():
            for pid, seen in process_tree(process.pid).items():
                peak = peaks.setdefault(pid, {"command": seen["command"], "rss_kib": 0})
                if seen["rss_kib"] > peak["rss_kib"]:
                    peak.update(seen)
            done.wait(sample_seconds)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return {"seconds": seconds, "root": process.pid, "processes": peaks}


def worker_peaks_mib(run: Dict[str, object], engine: str, workers: int) -> List[float]:
    """The peak resident MiB of each worker of a sampled run."""
    processes = run["processes"]
    if engine == "ray":
        chosen = [peak for peak in processes.values() if RAY_WORKER in peak["command"]]
    elif workers > 1:
        chosen = [peak for pid, peak in processes.items() if pid != run["root"] and "python" in peak["command"]]
    else:
        chosen = [processes[run["root"]]]
    return sorted(round(peak["rss_kib"] / 1024, 1) for peak in chosen)


def measure_configuration(
    annotate_command: Sequence[str],
    model: PathLike,
    lines: PathLike,
    startup_lines: PathLike,
    scratch: PathLike,
    engine: str,
    workers: int,
    shard_lines: int,
    batch_size: int = 64,
) -> Dict[str, object]:
    """Start-up seconds, tagging chars/s and worker peaks of one engine and worker count."""
    runs = {}
    for name, source in (("startup", startup_lines), ("full", lines)):
        output = Path(scratch) / f"{engine}-{workers}-{name}"
        command = [*annotate_command, str(model), str(source), str(output), "--engine", engine]
        command += ["--workers", str(workers), "--shard-lines", str(shard_lines), "--batch-size", str(batch_size)]
        command += ["--overwrite"]
        runs[name] = run_sampled(command)
        runs[name]["manifest"] = json.loads((output / "manifest.json").read_text(encoding="utf-8"))
    full, startup = runs["full"], runs["startup"]
    tagging = full["seconds"] - startup["seconds"]
    return {
        "engine": engine,
        "workers": workers,
        "documents": full["manifest"]["documents"],
        "characters": full["manifest"]["characters"],
        "complete": full["manifest"]["complete"],
        "wall_seconds": round(full["seconds"], 2),
        "startup_seconds": round(startup["seconds"], 2),
        "tagging_chars_per_s": round(full["manifest"]["characters"] / tagging, 1),
        "end_to_end_chars_per_s": round(full["manifest"]["characters"] / full["seconds"], 1),
        "worker_peak_rss_mib": worker_peaks_mib(full, engine, workers),
    }


def measure_annotation(
    annotate_command: Sequence[str],
    model: PathLike,
    lines: PathLike,
    scratch: PathLike,
    configurations: Sequence[tuple] = (("local", 1), ("local", 2), ("ray", 1), ("ray", 2)),
    shard_lines: int = 2_500,
    startup_line_count: int = 20,
    log=print,
) -> Dict[str, object]:
    """`measure_configuration` for each (engine, workers), one after another, and the ratios the issue asks for."""
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    startup_lines = scratch / "startup.txt"
    with open(lines, encoding="utf-8") as source:
        startup_lines.write_text("".join(line for _, line in zip(range(startup_line_count), source)), encoding="utf-8")
    results: List[Dict[str, object]] = []
    for engine, workers in configurations:
        results.append(
            measure_configuration(annotate_command, model, lines, startup_lines, scratch, engine, workers, shard_lines)
        )
        log(json.dumps(results[-1]))
    rate = {(r["engine"], r["workers"]): r["tagging_chars_per_s"] for r in results}
    summary: Dict[str, Optional[float]] = {}
    for engine in ("local", "ray"):
        if (engine, 1) in rate and (engine, 2) in rate:
            summary[f"{engine}_scaling_efficiency"] = round(rate[(engine, 2)] / (2 * rate[(engine, 1)]), 4)
    if ("local", 1) in rate and ("ray", 1) in rate:
        summary["ray_overhead_at_1_worker"] = round(1 - rate[("ray", 1)] / rate[("local", 1)], 4)
    return {"configurations": results, "summary": summary, "cpus": os.cpu_count()}
