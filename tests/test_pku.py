"""pd1998's derivation from the PKU annotation: both conventions, its errors, and the shipped files."""

import gzip

import pytest

from conftest import ASSETS, invoke_script
from spacy_bert_crf.formats import DataFormatError
from spacy_bert_crf.lab.pku import derive_corpus, pku_to_bio

PARAGRAPH_ID = "19980101-01-001-002/m"


def derive(tmp_path, body, convention):
    source = tmp_path / "pku.txt"
    source.write_text(f"{PARAGRAPH_ID}  {body}\n", encoding="utf-8")
    [(chars, tags)] = pku_to_bio(source, convention)
    return "".join(chars), tags


def entities(text, tags):
    """(text, label) of each entity in BIO tags with `_`."""
    found = []
    for char, tag in zip(text, tags):
        if tag.startswith("B_"):
            found.append([char, tag[2:]])
        elif tag.startswith("I_"):
            found[-1][0] += char
    return [tuple(entity) for entity in found]


@pytest.mark.parametrize(
    "body,words,compounds",
    [
        # A name's surname and given name are two words in PKU's annotation, one PER in both.
        ("中共中央/nt  总书记/n  江/nr  泽民/nr", [("中共中央", "ORG"), ("江泽民", "PER")], None),
        ("[中国/ns  政府/n]nt  宣布/v", [("中国", "LOC")], [("中国政府", "ORG")]),
        ("[国家/n  外汇/n  管理局/n]nt", [], [("国家外汇管理局", "ORG")]),
        ("[香港/ns  特别/a  行政区/n]ns", [("香港", "LOC")], [("香港特别行政区", "LOC")]),
        ("美国/ns  华尔街/ns", [("美国华尔街", "LOC")], [("美国", "LOC"), ("华尔街", "LOC")]),
        ("１２月/t  ３１日/t  ，/w", [("１２月３１日", "T")], None),
        # A bracket of a class that names no entity only groups its words.
        ("[东亚/ns  金融/n  危机/n]nz", [("东亚", "LOC")], None),
    ],
)
def test_conventions_tag_compounds_and_neighbours(tmp_path, body, words, compounds):
    for convention, expected in (("words", words), ("compounds", words if compounds is None else compounds)):
        text, tags = derive(tmp_path, body, convention)
        assert entities(text, tags) == expected, convention
        assert text == "".join(token.split("/")[0].lstrip("[") for token in body.split())


def test_a_word_with_a_slash_keeps_it(tmp_path):
    assert derive(tmp_path, "１/２/m  ，/w", "words") == ("１/２，", ["O"] * 4)


@pytest.mark.parametrize(
    "line,message",
    [
        ("迈向/v  充满/v", "expected a paragraph id"),
        (f"{PARAGRAPH_ID}  迈向", "expected `word/tag`"),
        (f"{PARAGRAPH_ID}  [中国/ns  政府/n", "not closed"),
        (f"{PARAGRAPH_ID}  中国/ns  政府/n]nt", "not opened"),
        (f"{PARAGRAPH_ID}  [中国/ns  [政府/n]nt", "inside another"),
    ],
)
def test_bad_lines_are_named_by_file_and_line(tmp_path, line, message):
    source = tmp_path / "pku.txt"
    source.write_text(f"{PARAGRAPH_ID}  迈向/v\n\n{line}\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=message) as error:
        list(pku_to_bio(source))
    assert (error.value.path, error.value.line) == (source, 3)


def test_empty_lines_hold_no_paragraph_and_the_split_is_every_nth(tmp_path):
    source = tmp_path / "pku.txt"
    source.write_text("".join(f"{PARAGRAPH_ID}  北京/ns  {i}/m\n\n" for i in range(5)), encoding="utf-8")
    summary = derive_corpus(source, tmp_path / "out", dev_every=2)
    assert summary["dev"] == {"paragraphs": 2, "characters": 6, "entities": {"LOC": 2}}
    with gzip.open(tmp_path / "out" / "dev_TAG.txt.gz", "rt", encoding="utf-8") as file:
        assert file.read() == "B_LOC I_LOC O\n" * 2


def test_the_script_rejects_an_unknown_convention(tmp_path):
    result = invoke_script("derive_pd1998.py", tmp_path / "pku.txt", tmp_path / "out", "--convention", "brackets")
    assert result.exit_code == 1 and "words" in result.output


def test_the_shipped_pd1998_is_derived_from_the_shipped_source(tmp_path):
    """The command in assets/pd1998/PROVENANCE.md rebuilds the four shipped files byte for byte."""
    result = invoke_script("derive_pd1998.py", ASSETS / "pd1998" / "source" / "RMRB.txt.gz", tmp_path)
    assert result.exit_code == 0, result.output
    for name in ("train.txt.gz", "train_TAG.txt.gz", "dev.txt.gz", "dev_TAG.txt.gz"):
        with gzip.open(tmp_path / name, "rb") as derived, gzip.open(ASSETS / "pd1998" / name, "rb") as shipped:
            assert derived.read() == shipped.read(), name
