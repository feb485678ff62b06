"""BERT + CRF named-entity recognition for spaCy: the `bert_crf_ner` pipe.

spaCy finds the pipe, its architectures, scorer, logger and callback through
the entry points in setup.cfg, so importing this package imports nothing
else: `spacy_bert_crf.formats` (what `convert` needs) then loads without
torch's model code or transformers. The names below import on first use.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "BertCrfNer": "pipe",
    "make_bert_crf_ner": "pipe",
    "build_crf_tagger": "architectures",
    "build_softmax_tagger": "architectures",
    "build_char_bert_encoder": "char_encoder",
    "make_ner_scorer": "scoring",
    "score_ner": "scoring",
    "make_pin_mmap_threshold": "allocator",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
