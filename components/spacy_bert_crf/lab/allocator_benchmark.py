"""Which allocator CPU training should run with: step time, kernel time and peak memory of `spacy train`.

Each allocator trains the same config for the same steps in a process of its
own: glibc as it comes (its mmap threshold adjusting itself), glibc with the
threshold pinned by the configs' `[initialize.before_init]` callback at two
sizes, and jemalloc and mimalloc preloaded (Debian's `libjemalloc2` and
`libmimalloc2.0`). The step time is read from the training log between two
evaluations, so start-up is not counted; user and kernel seconds and the peak
resident memory come from the kernel's accounting of the process.
"""

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from spacy.util import load_config

from ..formats import PathLike
from ..training_log import read_training_log

LIBRARIES = Path("/usr/lib/x86_64-linux-gnu")


@dataclass
class Allocator:
    name: str
    # The mmap threshold the config's before_init callback pins; None: no callback.
    pinned_threshold: Optional[int] = None
    preload: Optional[str] = None

    def available(self) -> bool:
        return self.preload is None or (LIBRARIES / self.preload).exists()


ALLOCATORS = (
    Allocator("glibc, threshold adjusting itself"),
    Allocator("glibc, threshold pinned at 64 KiB (the configs')", pinned_threshold=64 * 1024),
    Allocator("glibc, threshold pinned at 1 MiB", pinned_threshold=1024 * 1024),
    Allocator("jemalloc", preload="libjemalloc.so.2"),
    Allocator("mimalloc", preload="libmimalloc.so.2"),
)


def time_training(
    allocator: Allocator, config_path: PathLike, overrides: Dict[str, str], first_step: int, last_step: int
) -> Dict[str, float]:
    """Train with `allocator` up to `last_step`; seconds per step from `first_step` on, CPU times, peak RSS."""
    config = load_config(config_path, interpolate=False)
    config["initialize"]["before_init"] = (
        None
        if allocator.pinned_threshold is None
        else {"@callbacks": "spacy_bert_crf.pin_mmap_threshold.v1", "threshold": allocator.pinned_threshold}
    )
    environment = dict(os.environ)
    if allocator.preload is not None:
        environment["LD_PRELOAD"] = str(LIBRARIES / allocator.preload)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        config.to_disk(scratch / "config.cfg", interpolate=False)
        log_path = scratch / "log.jsonl"
        command = [
            sys.executable,
            "-m",
            "spacy",
            "train",
            str(scratch / "config.cfg"),
            "--output",
            str(scratch / "out"),
        ]
        command += [f"--paths.training_log={log_path}", f"--training.max_steps={last_step}"]
        command += [f"--{name}={value}" for name, value in overrides.items()]
        process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{allocator.name}: spacy train failed\n{process.stderr.read().decode()[-3000:]}")
        process.stderr.close()
        log = {record["step"]: record for record in read_training_log(log_path)}
    return {
        "seconds_per_step": (log[last_step]["seconds"] - log[first_step]["seconds"]) / (last_step - first_step),
        "user_seconds": usage.ru_utime,
        "kernel_seconds": usage.ru_stime,
        "peak_rss_gib": usage.ru_maxrss / 2**20,
    }


def compare_allocators(
    config_path: PathLike, overrides: Dict[str, str], first_step: int, last_step: int, allocators=ALLOCATORS
) -> List[Dict]:
    """`time_training` for every allocator this machine has, one after another."""
    return [
        {"allocator": allocator.name, **time_training(allocator, config_path, overrides, first_step, last_step)}
        for allocator in allocators
        if allocator.available()
    ]
