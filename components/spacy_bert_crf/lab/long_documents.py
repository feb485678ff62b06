"""One long document through a pipeline: its time and the peak memory it adds.

The text repeats real sentences joined without separators (`long_text`), so
the pipe's long-document handling (windows over the encoder, one CRF pass
over the whole Doc) is what is measured.
"""

import time
from itertools import cycle
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import spacy
import torch
from spacy.tokens import DocBin

from ..formats import PathLike
from .measuring import peak_rss_mib


def long_text(texts: Sequence[str], n_chars: int) -> str:
    """`texts` repeated and joined, cut to `n_chars` characters: one long document."""
    pieces, length = [], 0
    for text in cycle(text for text in texts if text):
        if length >= n_chars:
            break
        pieces.append(text)
        length += len(text)
    return "".join(pieces)[:n_chars]


def measure_long_doc(model: PathLike, text: str) -> Dict[str, Any]:
    """Load `model` and tag `text` as one Doc: time and the peak RSS it added
    (and, under "doc", the tagged Doc).

    The peak is read after the pipeline is loaded and has tagged the text's
    first 100 characters (so that lazy set-up is not counted), and again after
    the long document: the difference is what the long document itself cost.
    """
    nlp = spacy.load(model)
    nlp(text[:100])
    before = peak_rss_mib()
    start = time.perf_counter()
    doc = nlp(text)
    seconds = time.perf_counter() - start
    after = peak_rss_mib()
    return {
        "model": str(model),
        "n_chars": len(text),
        "n_tokens": len(doc),
        "seconds": round(seconds, 3),
        "chars_per_s": round(len(text) / seconds, 1),
        "n_ents": len(doc.ents),
        "torch_threads": torch.get_num_threads(),
        "peak_rss_before_mib": round(before, 1),
        "peak_rss_after_mib": round(after, 1),
        "peak_rss_delta_mib": round(after - before, 1),
        "doc": doc,
    }


def tag_long_document(
    model: PathLike,
    texts: Sequence[str],
    n_chars: int,
    output_dir: Optional[PathLike] = None,
    threads: Optional[int] = None,
) -> Dict[str, Any]:
    """`measure_long_doc` of `long_text(texts, n_chars)`, with torch on `threads`
    threads if given; the tagged Doc goes to `output_dir/<n_chars>.spacy` if
    given, and the figures are returned without it (so that they can come
    back from `measuring.in_fresh_process`)."""
    if threads is not None:
        torch.set_num_threads(threads)
    result = measure_long_doc(model, long_text(texts, n_chars))
    doc = result.pop("doc")
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        DocBin(docs=[doc], store_user_data=False).to_disk(Path(output_dir) / f"{n_chars}.spacy")
    return result
