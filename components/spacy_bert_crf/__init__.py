"""BERT + CRF named-entity recognition for spaCy: the `bert_crf_ner` pipe."""

from .allocator import make_pin_mmap_threshold
from .architectures import build_crf_tagger, build_softmax_tagger
from .char_encoder import build_char_bert_encoder
from .pipe import BertCrfNer, make_bert_crf_ner
from .scoring import make_ner_scorer, score_ner

__version__ = "0.1.0"
__all__ = [
    "BertCrfNer",
    "build_char_bert_encoder",
    "build_crf_tagger",
    "build_softmax_tagger",
    "make_bert_crf_ner",
    "make_ner_scorer",
    "make_pin_mmap_threshold",
    "score_ner",
]
