"""The one place that reads BIO tags off Docs: as tag ids, per predicted token.

Training, the token-accuracy score and the benchmarks all need an Example's
gold tags aligned to its predicted tokens. spaCy's `Example.get_aligned_ner`
gives them as BILUO strings, through the alignment, a Python object per
token; reading ~1,600 characters a batch that way cost a tenth of a training
step. When both sides have the same tokens (always, for character-tokenised
corpora) the tags are read straight off the reference's `ENT_IOB`/`ENT_TYPE`
columns instead, and only other tokenisations go through the alignment.
"""

from typing import Dict, Sequence, Tuple

import numpy
from spacy.attrs import ENT_IOB, ENT_TYPE, IDX
from spacy.tokens import Doc
from spacy.training import Example

from .schemes import BEGIN, INSIDE, OUTSIDE

# spaCy's ENT_IOB codes.
_MISSING, _INSIDE, _OUTSIDE, _BEGIN = 0, 1, 2, 3
_BILUO_CODES = {"B": _BEGIN, "U": _BEGIN, "I": _INSIDE, "L": _INSIDE, "O": _OUTSIDE}


def doc_iob(doc: Doc) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Each token's ENT_IOB code (0 missing, 1 I, 2 O, 3 B) and ENT_TYPE hash."""
    columns = doc.to_array([ENT_IOB, ENT_TYPE]).reshape(len(doc), 2)
    return columns[:, 0].astype("int64"), columns[:, 1]


def aligned_iob(example: Example) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The reference's ENT_IOB codes and ENT_TYPE hashes, one per predicted token."""
    predicted, reference = example.predicted, example.reference
    if len(predicted) == len(reference) and predicted.text == reference.text:
        if numpy.array_equal(predicted.to_array(IDX), reference.to_array(IDX)):
            return doc_iob(reference)
    codes = numpy.zeros((len(predicted),), dtype="int64")
    types = numpy.zeros((len(predicted),), dtype="uint64")
    strings = reference.vocab.strings
    for i, tag in enumerate(example.get_aligned_ner()):
        if tag not in (None, "-"):
            codes[i] = _BILUO_CODES[tag[0]]
            if tag != OUTSIDE:
                types[i] = strings.add(tag[2:])
    return codes, types


class UnknownTagError(ValueError):
    """A gold tag outside the tag set, named with its label."""

    def __init__(self, label: str):
        super().__init__(label)
        self.label = label


def tag_ids(codes: numpy.ndarray, types: numpy.ndarray, tags: Sequence[str], strings) -> Tuple[numpy.ndarray, int]:
    """BIO tag ids (indices into `tags`, which are `O`, `B-X`, `I-X`) of
    ENT_IOB codes and ENT_TYPE hashes (in `strings`, the reference's
    StringStore), and how many tokens had no tag.

    Tokens with no tag become `O`: a CRF needs a complete sequence. A label
    outside `tags` raises `UnknownTagError`.
    """
    index: Dict[str, int] = {tag: i for i, tag in enumerate(tags)}
    ids = numpy.full(codes.shape, index[OUTSIDE], dtype="int64")
    tagged = (codes == _BEGIN) | (codes == _INSIDE)
    for type_hash in numpy.unique(types[tagged]).tolist():
        label = strings[type_hash]
        for code, prefix in ((_BEGIN, BEGIN), (_INSIDE, INSIDE)):
            tag = f"{prefix}-{label}"
            if tag not in index:
                raise UnknownTagError(label)
            ids[tagged & (types == type_hash) & (codes == code)] = index[tag]
    return ids, int((codes == _MISSING).sum())


def tag_accuracy(examples: Sequence[Example]) -> float:
    """The share of gold-annotated tokens whose predicted BIO tag (prefix and label) is right."""
    correct = total = 0
    for example in examples:
        if not example.reference.has_annotation("ENT_IOB"):
            continue
        gold_codes, gold_types = aligned_iob(example)
        codes, types = doc_iob(example.predicted)
        # A prediction with no entity annotation says O everywhere (doc_to_biluo_tags' reading).
        codes = numpy.where(codes == _MISSING, _OUTSIDE, codes)
        annotated = gold_codes != _MISSING
        # An O token's type is 0 on both sides, so comparing types is enough for it.
        same = (codes == gold_codes) & (types == gold_types)
        correct += int((same & annotated).sum())
        total += int(annotated.sum())
    return correct / total if total else 0.0
