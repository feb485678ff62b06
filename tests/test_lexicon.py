"""Lexicon flags: what each character is told, the file formats, and the encoder with and without them."""

import gzip
import json

import numpy
import pytest
import spacy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.training import Example
from thinc.api import Adam

from conftest import ASSETS, run_script, tagger_config
from spacy_bert_crf.char_encoder import char_bert_module, doc_windows
from spacy_bert_crf.char_inputs import CharVocab, folded_chars
from spacy_bert_crf.lab.lexicons import build_lexicon, read_jieba_dictionary
from spacy_bert_crf.lexicon import POSITIONS, Lexicon, read_lexicon

WORDS = [("北京", "LOC"), ("北京大学", "ORG"), ("京", "LOC"), ("大学", "WORD"), ("12月", "T")]


def flags_of(lexicon, text):
    """{character index: {(position, class), ...}} of the flags that are set."""
    flags = lexicon.features(folded_chars(list(text))).reshape(len(text), len(POSITIONS), len(lexicon.classes))
    return {i: {(POSITIONS[p], lexicon.classes[k]) for p, k in zip(*numpy.nonzero(flags[i]))} for i in range(len(text))}


def test_each_character_is_flagged_by_the_words_it_begins_continues_ends_or_is():
    lexicon = Lexicon(WORDS)
    assert lexicon.classes == ["LOC", "ORG", "T", "WORD"] and lexicon.width == 16
    flags = flags_of(lexicon, "在北京大学")
    assert flags[0] == set()
    assert flags[1] == {("B", "LOC"), ("B", "ORG")}
    assert flags[2] == {("E", "LOC"), ("S", "LOC"), ("M", "ORG")}
    assert flags[3] == {("M", "ORG"), ("B", "WORD")}
    assert flags[4] == {("E", "ORG"), ("E", "WORD")}


def test_the_encoders_windows_match_words_on_the_folded_characters():
    lexicon = Lexicon(WORDS)
    vocab = CharVocab.from_file(ASSETS / "bert-base-chinese" / "vocab.txt")
    nlp = spacy.blank("zh")
    full, half = (
        doc_windows([nlp.make_doc(text)], vocab, None, 8, 6, lexicon).lexicon_flags for text in ("在１２月", "在12月")
    )
    assert (full == half).all() and full.shape == (1, 6, 16)
    # Position 0 is [CLS]: 在 is at 1, and `12月` begins at 2.
    assert not full[0, [0, 1, 5]].any()
    assert (full[0, 2] == lexicon.features(list("12月"))[0]).all() and full[0, 2].sum() == 1


def test_a_match_reaches_as_far_as_the_longest_word():
    lexicon = Lexicon(WORDS + [("中华人民共和国万岁", "WORD")])
    flags = flags_of(lexicon, "中华人民共和国万岁")
    assert flags[0] == {("B", "WORD")} and flags[8] == {("E", "WORD")}


def brute_force_flags(lexicon, text):
    """The flags of every substring that is a word, found without the search's early stop."""
    flags = {i: set() for i in range(len(text))}
    for start in range(len(text)):
        for end in range(start + 1, len(text) + 1):
            name = lexicon.entries.get(text[start:end])
            if name is None:
                continue
            if end - start == 1:
                flags[start].add(("S", name))
            else:
                flags[start].add(("B", name))
                flags[end - 1].add(("E", name))
                for middle in range(start + 1, end - 1):
                    flags[middle].add(("M", name))
    return flags


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="北京大学中华人民共和国万岁12月", max_size=40))
def test_the_search_stops_early_yet_finds_every_word(text):
    # 中华人民共和国万岁 is a word and none of its shorter prefixes is, so each of them must extend the search.
    lexicon = Lexicon(WORDS + [("中华人民共和国万岁", "WORD"), ("人民", "WORD"), ("共和国", "WORD")])
    assert flags_of(lexicon, text) == brute_force_flags(lexicon, text)


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="北京大学12月 \n\x00A", max_size=30))
def test_flags_have_one_row_per_character_and_are_zero_or_one(text):
    features = Lexicon(WORDS).features(folded_chars(list(text)))
    assert features.shape == (len(text), 16) and set(numpy.unique(features)) <= {0.0, 1.0}


def test_a_lexicon_says_which_line_is_malformed_or_repeated(tmp_path):
    broken = tmp_path / "broken.tsv"
    broken.write_text("北京\tLOC\n上海 LOC\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.tsv:2: expected `word<TAB>class`"):
        read_lexicon(broken)
    repeated = tmp_path / "repeated.tsv"
    repeated.write_text("北京\tLOC\n北京\tORG\n", encoding="utf-8")
    with pytest.raises(ValueError, match="1 words occur more than once"):
        read_lexicon(repeated)
    with pytest.raises(ValueError, match="an empty word"):
        Lexicon([("", "LOC")])


def test_building_from_a_jieba_dictionary_folds_classes_and_counts_what_it_leaves_out(tmp_path):
    source = tmp_path / "dict.txt"
    source.write_text(
        "北京 100 ns\n习近平 4 nrfg\n新华社 50 nt\n今天 80 t\n大学 90 n\nＡ股 3 n\nA股 9 j\n中华人民共和国万岁 2 l\n",
        encoding="utf-8",
    )
    entries, counts = read_jieba_dictionary(source, max_length=8)
    assert entries == {"北京": "LOC", "习近平": "PER", "新华社": "ORG", "今天": "T", "大学": "WORD", "a股": "WORD"}
    assert counts == {"kept": 6, "folds to a word listed before": 1, "longer than 8 characters": 1}
    output = tmp_path / "lexicon" / "words.tsv.gz"
    summary = build_lexicon(output, source)
    assert read_lexicon(output).entries == entries
    assert json.loads((output.parent / "lexicon.json").read_text(encoding="utf-8")) == summary
    first = output.read_bytes()
    build_lexicon(output, source)
    assert output.read_bytes() == first
    bad = tmp_path / "bad.txt"
    bad.write_text("北京 100 ns\n上海 many ns\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected `word frequency tag`"):
        read_jieba_dictionary(bad, 8)


def test_the_build_script_writes_the_lexicon(tmp_path):
    source = tmp_path / "dict.txt"
    source.write_text("北京 100 ns\n大学 90 n\n", encoding="utf-8")
    result = run_script("build_lexicon.py", tmp_path / "out.tsv.gz", "--source", source)
    assert result.returncode == 0, result.stderr
    assert "2 words" in result.stdout
    assert gzip.decompress((tmp_path / "out.tsv.gz").read_bytes()).decode("utf-8") == "北京\tLOC\n大学\tWORD\n"
    missing = run_script("build_lexicon.py", tmp_path / "x.tsv.gz", "--source", tmp_path / "none.txt")
    assert missing.returncode == 1 and "No such dictionary" in missing.stdout


def test_the_shipped_lexicon_matches_its_provenance():
    summary = json.loads((ASSETS / "lexicon" / "lexicon.json").read_text(encoding="utf-8"))
    lexicon = read_lexicon(ASSETS / "lexicon" / "jieba.tsv.gz")
    assert len(lexicon) == summary["lines"]["kept"] > 300_000
    assert lexicon.classes == ["LOC", "ORG", "PER", "T", "WORD"]
    assert lexicon.entries["伏尔加格勒"] == "LOC"


@pytest.fixture
def lexicon_file(tmp_path):
    path = tmp_path / "words.tsv"
    path.write_text(
        "".join(f"{word}\t{name}\n" for word, name in WORDS + [("人民", "WORD"), ("纽约", "LOC")]), encoding="utf-8"
    )
    return path


@pytest.mark.parametrize("with_lexicon", [True, False], ids=["lexicon", "no-lexicon"])
def test_the_encoder_with_and_without_lexicon_flags(with_lexicon, lexicon_file, tiny_encoder, pd2014_docs, tmp_path):
    nlp = spacy.blank("zh")
    config = tagger_config(tiny_encoder)
    config["model"]["tok2vec"]["lexicon"] = str(lexicon_file) if with_lexicon else None
    nlp.add_pipe("bert_crf_ner", config=config)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in pd2014_docs[:8]]
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(1e-2))
    module = char_bert_module(nlp.get_pipe("bert_crf_ner").model.get_ref("tok2vec"))
    assert hasattr(module, "lexicon_projection") == with_lexicon
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    text = "北京大学在北京，１２月"
    expected = nlp.get_pipe("bert_crf_ner").model.predict([nlp.make_doc(text)])[0].copy()
    if with_lexicon:
        # Zero at first, the projection learns from the flags.
        assert module.lexicon_projection.weight.abs().sum() > 0
    # The lexicon travels inside the saved pipeline: the file is not read again.
    nlp.to_disk(tmp_path / "nlp")
    lexicon_file.unlink()
    loaded = spacy.load(tmp_path / "nlp")
    loaded_module = char_bert_module(loaded.get_pipe("bert_crf_ner").model.get_ref("tok2vec"))
    assert (loaded_module.lexicon is None) != with_lexicon
    got = loaded.get_pipe("bert_crf_ner").model.predict([loaded.make_doc(text)])[0]
    assert numpy.allclose(got, expected, atol=1e-5)
    if with_lexicon:
        assert torch.equal(loaded_module.lexicon_projection.weight, module.lexicon_projection.weight)
