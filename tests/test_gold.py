"""Gold BIO ids read off the Docs' columns equal spaCy's aligned BILUO tags, whatever the tokenisation."""

import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.training.iob_utils import biluo_to_iob, doc_to_biluo_tags

from spacy_bert_crf.gold import UnknownTagError, aligned_iob, doc_iob, tag_accuracy, tag_ids
from spacy_bert_crf.schemes import OUTSIDE, bio_tags

TAGS = bio_tags(["LOC", "ORG", "PER", "T"])


def spacy_tag_ids(example):
    """The reference reading: spaCy's aligned BILUO tags as BIO ids, missing as O."""
    index = {tag: i for i, tag in enumerate(TAGS)}
    return [index[OUTSIDE if tag in (None, "-") else tag] for tag in biluo_to_iob(example.get_aligned_ner())]


def test_same_tokens_read_the_columns_as_spacy_aligns_them(pd2014_docs):
    nlp = spacy.blank("zh", vocab=pd2014_docs[0].vocab)
    for doc in pd2014_docs[:200]:
        example = Example(nlp.make_doc(doc.text), doc)
        ids, missing = tag_ids(*aligned_iob(example), TAGS, doc.vocab.strings)
        assert ids.tolist() == spacy_tag_ids(example) and missing == 0


def test_other_tokens_go_through_the_alignment():
    vocab = spacy.blank("zh").vocab
    reference = Doc(vocab, words=["我", "在", "北京", "大学"], spaces=[False] * 4)
    reference.ents = [Span(reference, 2, 4, "ORG")]
    predicted = Doc(vocab, words=list("我在北京大学"), spaces=[False] * 6)
    example = Example(predicted, reference)
    ids, missing = tag_ids(*aligned_iob(example), TAGS, vocab.strings)
    assert [TAGS[i] for i in ids] == ["O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG"]
    assert ids.tolist() == spacy_tag_ids(example) and missing == 0


def test_missing_tags_are_counted_and_read_as_outside():
    vocab = spacy.blank("zh").vocab
    reference = Doc(vocab, words=list("去北京"), spaces=[False] * 3, ents=["O", "B-LOC", "I-LOC"])
    reference.set_ents([], missing=[reference[0:1]], default="unmodified")
    ids, missing = tag_ids(*doc_iob(reference), TAGS, vocab.strings)
    assert [TAGS[i] for i in ids] == ["O", "B-LOC", "I-LOC"] and missing == 1


def test_a_label_outside_the_tags_is_named():
    vocab = spacy.blank("zh").vocab
    doc = Doc(vocab, words=list("去北京"), spaces=[False] * 3, ents=["O", "B-GPE", "I-GPE"])
    with pytest.raises(UnknownTagError) as error:
        tag_ids(*doc_iob(doc), TAGS, vocab.strings)
    assert error.value.label == "GPE"


def test_tag_accuracy_counts_prefix_and_label():
    vocab = spacy.blank("zh").vocab
    words, spaces = list("我在北京"), [False] * 4
    gold = Doc(vocab, words=words, spaces=spaces, ents=["O", "O", "B-LOC", "I-LOC"])
    wrong_label = Doc(vocab, words=words, spaces=spaces, ents=["O", "O", "B-ORG", "I-ORG"])
    unannotated = Doc(vocab, words=words, spaces=spaces)
    assert tag_accuracy([Example(gold.copy(), gold)]) == 1.0
    assert tag_accuracy([Example(wrong_label, gold)]) == 0.5
    # A prediction without entity annotation reads as O throughout (doc_to_biluo_tags' reading).
    assert doc_to_biluo_tags(unannotated) == ["O"] * 4
    assert tag_accuracy([Example(unannotated, gold)]) == 0.5
    assert numpy.isclose(tag_accuracy([Example(wrong_label, gold), Example(gold.copy(), gold)]), 0.75)
