import gzip

import pytest
import spacy

from spacy_bert_crf.formats import (
    DataFormatError,
    doc_to_tags,
    read_text,
    read_two_file,
    split_train_dev,
)
from conftest import ASSETS


@pytest.fixture
def vocab():
    return spacy.blank("zh").vocab


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_reads_chars_and_entities(tmp_path, vocab):
    text = write(tmp_path / "a.txt", "平 壤 1 月 1 日 讯\n我 爱 北 京\n")
    tags = write(tmp_path / "a_TAG.txt", "B_LOC I_LOC I_T I_T I_T I_T O\nO O B-LOC I-LOC\n")
    docs, report = read_two_file(text, tags, vocab)
    assert [doc.text for doc in docs] == ["平壤1月1日讯", "我爱北京"]
    assert [len(doc) for doc in docs] == [7, 4]
    assert [(e.text, e.label_) for e in docs[0].ents] == [("平壤", "LOC"), ("1月1日", "T")]
    assert [(e.text, e.label_) for e in docs[1].ents] == [("北京", "LOC")]
    summary = report.to_dict()
    assert summary["sentences"] == 2 and summary["characters"] == 11
    assert summary["entities"] == {"LOC": 2, "T": 1}
    assert summary["repairs"] == {"stray_inside": {"T": 1}, "stray_inside_total": 1}
    assert summary["tag_notation"] == "-/_"


def test_crlf_bom_and_gzip_are_accepted(tmp_path, vocab):
    text = write(tmp_path / "a.txt", "\ufeff我 在 上 海\r\n好\r\n")
    tags = tmp_path / "a_TAG.txt.gz"
    with gzip.open(tags, "wt", encoding="utf-8") as file:
        file.write("O O B_LOC I_LOC\r\nO\r\n")
    docs, _ = read_two_file(text, tags, vocab)
    assert [doc.text for doc in docs] == ["我在上海", "好"]
    assert [(e.text, e.label_) for e in docs[0].ents] == [("上海", "LOC")]


def test_empty_lines_become_empty_docs(tmp_path, vocab):
    text = write(tmp_path / "a.txt", "我\n\n你\n")
    tags = write(tmp_path / "a_TAG.txt", "O\n\nO\n")
    docs, report = read_two_file(text, tags, vocab)
    assert [doc.text for doc in docs] == ["我", "", "你"]
    assert report.empty_sentences == 1


def test_line_separator_characters_do_not_split_lines(tmp_path, vocab):
    text = write(tmp_path / "a.txt", "a \u2028 b\n")
    tags = write(tmp_path / "a_TAG.txt", "O O O\n")
    docs, _ = read_two_file(text, tags, vocab)
    assert len(docs) == 1 and len(docs[0]) == 3


def test_count_mismatch_names_file_and_line(tmp_path, vocab):
    text = write(tmp_path / "a.txt", "我 爱\n北 京 好\n")
    tags = write(tmp_path / "a_TAG.txt", "O O\nB_LOC I_LOC\n")
    with pytest.raises(DataFormatError, match=r"a_TAG\.txt:2: 2 tags for 3 characters") as error:
        read_two_file(text, tags, vocab)
    assert error.value.line == 2


def test_invalid_tag_names_file_line_and_position(tmp_path, vocab):
    text = write(tmp_path / "a.txt", "我 爱\n北 京\n")
    tags = write(tmp_path / "a_TAG.txt", "O O\nB_LOC 0\n")
    with pytest.raises(DataFormatError, match=r"a_TAG\.txt:2: tag 2: invalid tag '0'"):
        read_two_file(text, tags, vocab)


@pytest.mark.parametrize("longer", ["text", "tags"])
def test_different_line_counts_are_an_error(tmp_path, vocab, longer):
    text = write(tmp_path / "a.txt", "我\n你\n" + ("他\n" if longer == "text" else ""))
    tags = write(tmp_path / "a_TAG.txt", "O\nO\n" + ("O\n" if longer == "tags" else ""))
    shorter = "a_TAG.txt" if longer == "text" else "a.txt"
    with pytest.raises(DataFormatError, match=rf"{shorter}:2: file ends after 2 lines"):
        read_two_file(text, tags, vocab)


def test_pd2014_counts_match_its_provenance(pd2014_docs):
    # assets/pd2014/PROVENANCE.md: 1,000 lines, 98,127 characters; entities by B_
    # count T 1,142, LOC 1,298, PER 768, ORG 99, plus 131 stray I_X (T 37, LOC 45,
    # PER 38, ORG 11) that each start an entity.
    _, report = read_two_file(
        ASSETS / "pd2014" / "test.txt.gz", ASSETS / "pd2014" / "test_TAG.txt.gz", spacy.blank("zh").vocab
    )
    assert report.sentences == 1000 and report.characters == 98127
    assert report.stray_inside_repairs == {"T": 37, "LOC": 45, "PER": 38, "ORG": 11}
    assert report.entities == {"T": 1142 + 37, "LOC": 1298 + 45, "PER": 768 + 38, "ORG": 99 + 11}
    assert sum(len(doc.ents) for doc in pd2014_docs) == sum(report.entities.values())


def test_tags_round_trip_in_the_users_notation(tmp_path, vocab):
    lines = ["O B_T I_T O B_PER I_PER I_PER", "B_LOC O"]
    text = write(tmp_path / "a.txt", "一 二 三 四 五 六 七\n八 九\n")
    tags = write(tmp_path / "a_TAG.txt", "\n".join(lines) + "\n")
    docs, _ = read_two_file(text, tags, vocab)
    assert [" ".join(doc_to_tags(doc, "_")) for doc in docs] == lines
    assert doc_to_tags(docs[1], "-") == ["B-LOC", "O"]


def test_read_text_detects_space_separated_and_plain(tmp_path):
    separated = write(tmp_path / "a.txt", "我 爱 北 京\n\n好\n")
    assert read_text(separated) == ([["我", "爱", "北", "京"], [], ["好"]], True)
    plain = write(tmp_path / "b.txt", "我爱北京\n\niPhone 15\n")
    tokens, space_separated = read_text(plain)
    assert not space_separated
    assert tokens == [list("我爱北京"), [], list("iPhone15")]


def test_split_is_deterministic_and_complete():
    train, dev = split_train_dev(25, 10)
    assert dev == [9, 19]
    assert sorted(train + dev) == list(range(25))
