"""Keep glibc's heap from growing without bound under PyTorch training on the CPU.

glibc serves large allocations with mmap and gives them back on free, but each
time it frees such a block it *raises* its mmap threshold (up to 32 MiB) so
that later blocks of that size come from the heap instead. Training on batches
of varying length allocates tensors of ever-different sizes; from the heap they
fragment it, and memory is not returned. Measured here with `spacy train` on
configs/default.cfg: resident memory grew about 15 MB a step and reached the
machine's 24 GiB after 1,100 steps. Fixing the threshold with `mallopt` turns
the dynamic adjustment off.

It is a setting of training, not of the package: the training configs ask for
it in `[initialize.before_init]`, which `spacy train` runs and `spacy.load`
does not, so a process that only loads the model (a web server) keeps its
allocator as it was. docs/BENCHMARKS.md compares it with jemalloc, mimalloc
and glibc left alone.
"""

import ctypes
import ctypes.util
import sys
from typing import Callable

from spacy.language import Language
from spacy.util import registry

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 64 * 1024


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold; return whether it was set (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name)
    if not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))


@registry.callbacks("spacy_bert_crf.pin_mmap_threshold.v1")
def make_pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> Callable[[Language], Language]:
    """`[initialize.before_init]`: pin the mmap threshold before training allocates."""

    def pin_mmap_threshold(nlp: Language) -> Language:
        fix_mmap_threshold(threshold)
        return nlp

    return pin_mmap_threshold
