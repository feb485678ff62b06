"""The real corpora in assets/ convert without an error, to the counts plain Python finds in their files."""

import gzip
import json
import re
from collections import Counter

import pytest
import spacy

from conftest import ASSETS
from spacy_bert_crf.formats import read_docs, write_conll

SPACE = re.compile(r"\s*")


@pytest.fixture(scope="module")
def vocab():
    return spacy.blank("zh").vocab


def read(path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as file:
        return file.read()


def conll_counts(text):
    """Sentences by blank lines; entities by tags: B-/S- begins one, and so does an I-/M-/E- that continues none."""
    sentences, entities = 0, Counter()
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        sentences += 1
        open_label = None
        for line in block.strip("\n").split("\n"):
            tag = line.split()[-1]
            prefix, label = tag[0], tag[2:]
            if prefix in "BS" or (prefix in "IME" and label != open_label):
                entities[label] += 1
            open_label = label if prefix in "BIM" else None
    return sentences, entities


@pytest.mark.parametrize(
    "name,scheme,sentences",
    [
        # The numbers of sentences the datasets give (resume: Zhang & Yang 2018; weibo: its readme).
        ("resume/train.char.bmes.gz", "bmes", 3821),
        ("resume/dev.char.bmes", "bmes", 463),
        ("resume/test.char.bmes", "bmes", 477),
        ("weibo/weiboNER_2nd_conll.train.gz", "bio", 1350),
        ("weibo/weiboNER_2nd_conll.dev", "bio", 270),
        ("weibo/weiboNER_2nd_conll.test", "bio", 270),
    ],
)
def test_conll_corpora_convert_to_their_counts_and_back(vocab, tmp_path, name, scheme, sentences):
    text = read(ASSETS / name)
    n_sentences, entities = conll_counts(text)
    assert n_sentences == sentences
    docs, report = read_docs(ASSETS / name, vocab)
    assert (report.format, report.scheme, report.tag_notation) == ("conll", scheme, "-")
    assert report.sentences == len(docs) == n_sentences
    assert report.entities == entities
    assert sum(len(doc.ents) for doc in docs) == sum(entities.values())
    assert report.token_suffixes == (report.characters if name.startswith("weibo") else 0)
    # Written back in the same scheme, the file is the same but for each repaired tag.
    write_conll(docs, tmp_path / "back.conll", "-", scheme)
    written = (tmp_path / "back.conll").read_text(encoding="utf-8").split("\n")
    changed = [(a, b) for a, b in zip(text.split("\n"), written) if a != b]
    assert len(written) == len(text.split("\n"))
    assert len(changed) == report.to_dict()["repairs_total"]


def json_values(text):
    """The JSON values of a file that holds them one after another."""
    decoder, values = json.JSONDecoder(), []
    position = SPACE.match(text).end()
    while position < len(text):
        value, position = decoder.raw_decode(text, position)
        values.append(value)
        position = SPACE.match(text, position).end()
    return values


@pytest.mark.parametrize(
    "name,objects,dropped",
    [
        # One train object nests two companies in a book title; entities cannot overlap.
        ("cluener2020/train.json.gz", 10748, {"company": 2}),
        ("cluener2020/dev.json.gz", 1343, {}),
        # No labels: the official test labels are not public.
        ("cluener2020/test.json", 1345, {}),
    ],
)
def test_cluener_converts_to_its_counts(vocab, name, objects, dropped):
    text = read(ASSETS / name)
    # A top-level object begins a line, one a line or pretty-printed; nested ones are inline or indented.
    assert sum(line.startswith("{") for line in text.split("\n")) == objects
    values = json_values(text)
    mentions = Counter()
    for value in values:
        for label, group in value.get("label", {}).items():
            mentions[label] += sum(len(pairs) for pairs in group.values())
    docs, report = read_docs(ASSETS / name, vocab)
    assert (report.format, report.sentences, len(docs)) == ("cluener", objects, objects)
    assert report.unannotated == sum("label" not in value for value in values)
    assert report.repairs["overlapping_span_dropped"] == dropped
    assert report.entities + report.repairs["overlapping_span_dropped"] == mentions
    assert report.to_dict()["repairs_total"] == sum(dropped.values())
    assert [doc.text for doc in docs] == [value["text"] for value in values]
