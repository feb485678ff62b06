"""Every token its own vocabulary id, folded as the vocabulary expects; bigrams and windows."""

import numpy
import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ASSETS
from spacy_bert_crf.char_encoder import doc_windows, owners, window_starts
from spacy_bert_crf.char_inputs import (
    BOUNDARY,
    BigramVocab,
    CharVocab,
    bigrams,
    fold,
    folded_chars,
    hashed_rows,
    is_blank,
)

NLP = spacy.blank("zh")


@pytest.fixture(scope="module")
def vocab() -> CharVocab:
    return CharVocab.from_file(ASSETS / "bert-base-chinese" / "vocab.txt")


def ids_of(vocab, text):
    doc = NLP.make_doc(text)
    return doc, [vocab.tokens[i] for i in vocab.ids([token.text for token in doc])]


def test_digits_and_latin_letters_get_one_id_each(vocab):
    doc, tokens = ids_of(vocab, "2013年iPhone")
    assert [token.text for token in doc] == list("2013年iPhone")
    assert tokens == list("2013年iphone")


def test_full_width_digits_and_letters_fold_to_half_width(vocab):
    _, full = ids_of(vocab, "１２月ＡＢＣ，")
    _, half = ids_of(vocab, "12月abc,")
    assert full == half


def test_marks_missing_from_the_vocabulary_take_their_plain_twin(vocab):
    _, tokens = ids_of(vocab, "“好”‘的’—…")
    assert tokens == ['"', "好", '"', "'", "的", "'", "-", "..."]
    assert "[UNK]" not in tokens


def test_whitespace_control_characters_and_replacement_char(vocab):
    # spaCy keeps a single space as the previous token's `whitespace_`; a second one is a token.
    doc, tokens = ids_of(vocab, "北  京\n\x00\ufffd")
    assert doc.text == "北  京\n\x00\ufffd"
    assert [token.text for token in doc] == ["北", " ", "京", "\n", "\x00", "\ufffd"]
    assert tokens == ["北", "[unused1]", "京", "[unused1]", "[UNK]", "[UNK]"]
    assert [is_blank(token.text) for token in doc] == [False, True, False, True, True, True]


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=1, max_size=30))
def test_every_token_gets_exactly_one_id_and_the_text_is_kept(text):
    vocab = CharVocab.from_file(ASSETS / "bert-base-chinese" / "vocab.txt")
    doc = NLP.make_doc(text)
    ids = vocab.ids([token.text for token in doc])
    assert doc.text == text
    assert ids.shape == (len(doc),)
    assert ((0 <= ids) & (ids < len(vocab))).all()
    assert all(len(fold(token.text)) >= 1 for token in doc)


def test_bigrams_are_keyed_on_folded_characters_with_boundaries():
    assert bigrams(folded_chars(list("１２月"))) == [BOUNDARY + "1", "12", "2月", "月" + BOUNDARY]
    table = BigramVocab(["12", "2月"])
    assert len(table) == 3
    assert table.rows(folded_chars(list("１２月"))).tolist() == [0, 1, 2, 0]
    assert table.rows(folded_chars(list("12月"))).tolist() == [0, 1, 2, 0]


def test_hashed_bigram_rows_are_stable_folded_and_in_range():
    rows = hashed_rows(folded_chars(list("１２月北京")), 1000)
    assert rows.shape == (6, 2) and rows.dtype == numpy.int64
    assert ((0 <= rows) & (rows < 1000)).all()
    assert numpy.array_equal(rows, hashed_rows(folded_chars(list("12月北京")), 1000))
    # A bigram's rows depend on it alone, wherever it stands: "北京" is bigram 4 here, 1 there.
    assert numpy.array_equal(rows[4], hashed_rows(folded_chars(list("北京")), 1000)[1])
    # The two rows come from different halves of the hash: over many bigrams, they seldom agree.
    many = hashed_rows(folded_chars(list("人民网1月1日讯据纽约时报报道北京上海广州深圳")), 1 << 16)
    assert (many[:, 0] != many[:, 1]).all()


@settings(max_examples=100, deadline=None)
@given(length=st.integers(1, 200), window=st.integers(2, 40), stride_share=st.floats(0.1, 1.0))
def test_windows_cover_every_character_once_away_from_edges(length, window, stride_share):
    stride = max(1, int(window * stride_share))
    starts = window_starts(length, window, stride)
    owner = owners(length, window, starts)
    positions = numpy.arange(length) - numpy.asarray(starts)[owner]
    assert starts[0] == 0 and min(starts[-1] + window, length) == length
    assert ((0 <= positions) & (positions < window)).all()
    assert (numpy.diff(owner) >= 0).all()


def test_doc_windows_read_each_character_from_its_own_position(vocab):
    docs = [NLP.make_doc(text) for text in ("人民网1月1日讯据纽约时报报道", "北京")]
    windows = doc_windows(docs, vocab, None, window=6, stride=4)
    flat_ids = windows.ids.reshape(-1)
    expected = numpy.concatenate([vocab.ids([token.text for token in doc]) for doc in docs])
    assert (flat_ids[windows.rows] == expected).all()
    assert windows.lengths == [len(doc) for doc in docs]
    assert (windows.ids[:, 0] == vocab.cls_id).all()
