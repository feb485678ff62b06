import sys

import pytest

from spacy_bert_crf.allocator import MMAP_THRESHOLD_BYTES, fix_mmap_threshold


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_mmap_threshold_is_pinned_and_bad_values_refused():
    assert fix_mmap_threshold(MMAP_THRESHOLD_BYTES)
    # glibc caps the threshold at 32 MiB on 64-bit machines and says no above it.
    assert not fix_mmap_threshold(64 * 1024 * 1024)
    assert fix_mmap_threshold()
