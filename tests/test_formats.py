import gzip
import json

import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.tokens import DocBin

from conftest import ASSETS
from spacy_bert_crf.formats import (
    CONLL_LAYOUT,
    REPAIR_KINDS,
    DataFormatError,
    detect_format,
    doc_to_tags,
    open_text,
    read_docs,
    read_lines,
    read_text,
    read_two_file,
    split_train_dev,
    tag_path_for,
    text_doc,
    write_conll,
    write_two_file,
)
from spacy_bert_crf.schemes import SCHEMES


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("zh")


@pytest.fixture(scope="module")
def vocab(nlp):
    return nlp.vocab


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def ents(doc):
    return [(ent.text, ent.label_) for ent in doc.ents]


def through_docbin(docs, vocab):
    """The Docs as convert.py stores them and export.py loads them."""
    data = DocBin(docs=docs, store_user_data=True).to_bytes()
    return list(DocBin().from_bytes(data).get_docs(vocab))


# The two-file format


def test_reads_chars_and_entities(tmp_path, vocab):
    text = write(tmp_path / "a.txt", "平 壤 1 月 1 日 讯\n我 爱 北 京\n")
    tags = write(tmp_path / "a_TAG.txt", "B_LOC I_LOC I_T I_T I_T I_T O\nO O B-LOC I-LOC\n")
    docs, report = read_two_file(text, tags, vocab)
    assert [doc.text for doc in docs] == ["平壤1月1日讯", "我爱北京"]
    assert [len(doc) for doc in docs] == [7, 4]
    assert ents(docs[0]) == [("平壤", "LOC"), ("1月1日", "T")]
    assert ents(docs[1]) == [("北京", "LOC")]
    summary = report.to_dict()
    assert summary["format"] == "lines" and summary["scheme"] == "bio"
    assert summary["sentences"] == 2 and summary["characters"] == 11
    assert summary["entities"] == {"LOC": 2, "T": 1}
    assert summary["repairs"]["stray_inside"] == {"T": 1} and summary["repairs"]["stray_inside_total"] == 1
    assert summary["repairs_total"] == 1
    assert summary["tag_notation"] == "-/_"


def test_report_lists_every_repair_kind(tmp_path, vocab):
    text = write(tmp_path / "a.txt", "我\n")
    tags = write(tmp_path / "a_TAG.txt", "O\n")
    repairs = read_two_file(text, tags, vocab)[1].to_dict()["repairs"]
    assert list(repairs) == [key for kind in REPAIR_KINDS for key in (kind, f"{kind}_total")]
    assert not any(repairs.values())


def test_crlf_bom_and_gzip_are_accepted(tmp_path, vocab):
    text = write(tmp_path / "a.txt", "\ufeff我 在 上 海\r\n好\r\n")
    tags = tmp_path / "a_TAG.txt.gz"
    with gzip.open(tags, "wt", encoding="utf-8") as file:
        file.write("O O B_LOC I_LOC\r\nO\r\n")
    docs, _ = read_two_file(text, tags, vocab)
    assert [doc.text for doc in docs] == ["我在上海", "好"]
    assert ents(docs[0]) == [("上海", "LOC")]


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
    assert report.repairs["stray_inside"] == {"T": 37, "LOC": 45, "PER": 38, "ORG": 11}
    assert report.entities == {"T": 1142 + 37, "LOC": 1298 + 45, "PER": 768 + 38, "ORG": 99 + 11}
    assert sum(len(doc.ents) for doc in pd2014_docs) == sum(report.entities.values())


def test_tags_round_trip_in_the_users_notation(tmp_path, vocab):
    lines = ["O B_T I_T O B_PER I_PER I_PER", "B_LOC O"]
    text = write(tmp_path / "a.txt", "一 二 三 四 五 六 七\n八 九\n")
    tags = write(tmp_path / "a_TAG.txt", "\n".join(lines) + "\n")
    docs, _ = read_two_file(text, tags, vocab)
    assert [" ".join(doc_to_tags(doc, "_")) for doc in docs] == lines
    assert doc_to_tags(docs[1], "-") == ["B-LOC", "O"]
    write_two_file(docs, tmp_path / "b.txt", tmp_path / "b_TAG.txt", "_")
    assert (tmp_path / "b.txt").read_bytes() == text.read_bytes()
    assert (tmp_path / "b_TAG.txt").read_bytes() == tags.read_bytes()


def test_two_file_round_trip_keeps_all_but_the_repaired_tags(tmp_path, vocab):
    # The first 200 lines of the report's corpus, whose stray I_X are repaired.
    with gzip.open(ASSETS / "pd2014" / "test.txt.gz", "rt", encoding="utf-8") as file:
        text = write(tmp_path / "pd.txt", "".join(line for line, _ in zip(file, range(200))))
    with gzip.open(ASSETS / "pd2014" / "test_TAG.txt.gz", "rt", encoding="utf-8") as file:
        tags = write(tmp_path / "pd_TAG.txt", "".join(line for line, _ in zip(file, range(200))))
    docs, report = read_docs(text, vocab)
    write_two_file(through_docbin(docs, vocab), tmp_path / "b.txt", tmp_path / "b_TAG.txt", "_", report.scheme)
    assert (tmp_path / "b.txt").read_bytes() == text.read_bytes()
    written = (tmp_path / "b_TAG.txt").read_text(encoding="utf-8").split()
    changed = [(a, b) for a, b in zip(tags.read_text(encoding="utf-8").split(), written) if a != b]
    assert len(changed) == report.to_dict()["repairs_total"] > 0
    assert all(a.startswith("I_") and b == "B" + a[1:] for a, b in changed)


# CoNLL


@pytest.mark.parametrize("delimiter", [" ", "\t"])
def test_reads_conll_columns(tmp_path, vocab, delimiter):
    lines = ["我 O", "爱 O", "北 B-LOC", "京 I-LOC", "", "", "好 O  ", "  "]
    path = write(tmp_path / "a.conll", "\n".join(line.replace(" ", delimiter, 1) for line in lines))
    docs, report = read_docs(path, vocab)
    assert [doc.text for doc in docs] == ["我爱北京", "好"]
    assert ents(docs[0]) == [("北京", "LOC")]
    assert (report.format, report.scheme, report.tag_notation) == ("conll", "bio", "-")
    assert [doc.user_data.get(CONLL_LAYOUT) for doc in docs] == [None if delimiter == " " else {"delimiter": "\t"}] * 2


@pytest.mark.parametrize(
    "text",
    [
        # Weibo NER: a tab, and each character's position in its word; `��0` is one token of two U+FFFD.
        "科0\tB-ORG.NAM\n大1\tI-ORG.NAM\n\n\ufffd\ufffd0\tO\np10\tO\n10\tO\n\n",
        # Middle columns (a part of speech, a segmentation digit) are kept too.
        "北 NR 0 B-LOC\n京 NR 1 I-LOC\n\n好 VA 0 O\n\n",
    ],
)
def test_conll_layouts_are_kept_and_written_back(tmp_path, vocab, text):
    path = write(tmp_path / "a.conll", text)
    docs, report = read_docs(path, vocab)
    assert [len(doc) for doc in docs] == [2, 3 if "p10" in text else 1]
    assert ents(docs[0])[0][0] in ("科大", "北京")
    write_conll(through_docbin(docs, vocab), tmp_path / "b.conll", report.tag_notation, report.scheme)
    assert (tmp_path / "b.conll").read_bytes() == path.read_bytes()


def test_weibo_digits_are_stripped_and_counted(tmp_path, vocab):
    path = write(tmp_path / "a.conll", "科0\tB-ORG.NAM\n大1\tI-ORG.NAM\n\n\ufffd\ufffd0\tO\np10\tO\n10\tO\n\n")
    docs, report = read_docs(path, vocab)
    assert [[token.text for token in doc] for doc in docs] == [["科", "大"], ["\ufffd\ufffd", "p", "1"]]
    assert docs[1].user_data[CONLL_LAYOUT] == {"delimiter": "\t", "suffixes": ["0", "10", "0"]}
    assert report.token_suffixes == 5


def test_digits_are_kept_when_not_every_token_has_a_suffix(tmp_path, vocab):
    docs, report = read_docs(write(tmp_path / "a.conll", "1 O\n0 O\n10 O\n"), vocab)
    assert [token.text for token in docs[0]] == ["1", "0", "10"] and report.token_suffixes == 0


# Schemes, detected or named


ENTITIES = [("北京市", "LOC"), ("上海", "LOC")]


@pytest.mark.parametrize(
    "scheme,tags",
    [
        ("bio", "O B-LOC I-LOC I-LOC B-LOC I-LOC"),
        ("iob1", "O I-LOC I-LOC I-LOC B-LOC I-LOC"),
        ("bioes", "O B-LOC I-LOC E-LOC B-LOC E-LOC"),
        ("bmes", "O B-LOC M-LOC E-LOC B-LOC E-LOC"),
    ],
)
def test_each_scheme_is_detected_read_and_written_back(tmp_path, vocab, scheme, tags):
    lines = [f"{char} {tag}\n" for char, tag in zip("在北京市上海", tags.split())]
    path = write(tmp_path / "a.conll", "".join(lines) + "\n")
    docs, report = read_docs(path, vocab)
    assert report.scheme == scheme and not report.to_dict()["repairs_total"]
    assert ents(docs[0]) == ENTITIES
    write_conll(docs, tmp_path / "b.conll", "-", scheme)
    assert (tmp_path / "b.conll").read_bytes() == path.read_bytes()


def test_scheme_flag_overrides_the_guess(tmp_path, vocab):
    path = write(tmp_path / "a.conll", "北 I-LOC\n京 I-LOC\n和 O\n沪 I-LOC\n\n")
    docs, report = read_docs(path, vocab)
    assert report.scheme == "iob1" and ents(docs[0]) == [("北京", "LOC"), ("沪", "LOC")]
    assert not report.to_dict()["repairs_total"]
    docs, report = read_docs(path, vocab, scheme="bio")
    assert report.scheme == "bio" and ents(docs[0]) == [("北京", "LOC"), ("沪", "LOC")]
    assert report.repairs["stray_inside"] == {"LOC": 2}
    expected = r"a\.conll:1: tag 'I-LOC' is not in the BMES scheme: expected O, B-X, M-X, E-X or S-X"
    with pytest.raises(DataFormatError, match=expected):
        read_docs(path, vocab, scheme="bmes")


def test_repairs_are_counted_per_kind(tmp_path, vocab):
    # Resume NER's train set cuts an ORG at a sentence end: M-ORG ends one sentence and begins the next.
    path = write(tmp_path / "a.bmes", "俄 B-ORG\n罗 M-ORG\n。 M-ORG\n\n彼 M-ORG\n得 E-ORG\n公 O\n司 E-ORG\n\n")
    docs, report = read_docs(path, vocab)
    assert [ents(doc) for doc in docs] == [[("俄罗。", "ORG")], [("彼得", "ORG"), ("司", "ORG")]]
    repairs = report.to_dict()["repairs"]
    assert (repairs["unclosed_entity"], repairs["stray_inside"], repairs["stray_end"]) == ({"ORG": 1},) * 3
    assert report.to_dict()["repairs_total"] == 3


# Formats, detected or named


@pytest.mark.parametrize(
    "name,text,expected",
    [
        ("a.bmes", "高 B-NAME\n勇 E-NAME\n\n", "conll"),
        ("a.conll", "我\tO\n", "conll"),
        ("a.conll", "\n\n我 X O\n", "conll"),
        ("a.train", "[0\tO\n{1\tO\n", "conll"),
        ("a.json", '{"text": "叶老桂", "label": {"name": {"叶老桂": [[0, 2]]}}}\n', "cluener"),
        ("a.json", '{\n    "text": "叶老桂",\n    "label": {}\n}\n', "cluener"),
        ("a.json", '[{"text": "a"}, {"text": "叶老桂", "label": {}}]', "cluener"),
        ("a.json", '{"id": 0, "text": "四川"}\n', "cluener"),
        ("a.jsonl", '{"id": 0, "text": "四川"}\n', "jsonl"),
        ("a.json", '{"text": "四川", "entities": [[0, 2, "LOC"]]}\n', "jsonl"),
        ("a.jsonl.gz", '{"text": "四川", "spans": [{"start": 0, "end": 2, "label": "LOC"}]}\n', "jsonl"),
    ],
)
def test_detect_format(tmp_path, name, text, expected):
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as file:
            file.write(text)
    else:
        write(path, text)
    assert detect_format(path) == expected


def test_a_tag_file_beside_a_text_file_means_two_files(tmp_path):
    assert tag_path_for(tmp_path / "train.txt.gz") == tmp_path / "train_TAG.txt.gz"
    write(tmp_path / "train.txt.gz", "")
    write(tmp_path / "train_TAG.txt.gz", "")
    assert detect_format(tmp_path / "train.txt.gz") == "lines"


@pytest.mark.parametrize("text", ["我 爱 北 京\n", "", "\n\n", "O O\n"])
def test_an_unknown_format_is_an_error(tmp_path, text):
    with pytest.raises(DataFormatError, match=r"a\.txt:\d: cannot tell the format"):
        detect_format(write(tmp_path / "a.txt", text))


def test_format_flag_overrides_the_guess(tmp_path, vocab):
    # A CoNLL file that happens to have a file named like its tag file beside it.
    path = write(tmp_path / "data.txt", "北 B-LOC\n京 I-LOC\n\n")
    write(tmp_path / "data_TAG.txt", "notes\n")
    assert detect_format(path) == "lines"
    docs, report = read_docs(path, vocab, format="conll")
    assert report.format == "conll" and ents(docs[0]) == [("北京", "LOC")]
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        read_docs(path, vocab, format="xml")
    with pytest.raises(ValueError, match="unknown scheme 'biluo'"):
        read_docs(path, vocab, scheme="biluo")


# JSON: CLUENER and spaCy's JSONL

CLUENER = [
    {
        "text": "浙商银行企业信贷部叶老桂博士",
        "label": {"name": {"叶老桂": [[9, 11]]}, "company": {"浙商银行": [[0, 3]]}},
    },
    {"text": "那不勒斯vs锡耶纳", "label": {"organization": {"那不勒斯": [[0, 3]], "锡耶纳": [[6, 8]]}}},
    {"text": "没有实体", "label": {}},
]
CLUENER_ENTS = [
    [("浙商银行", "company"), ("叶老桂", "name")],
    [("那不勒斯", "organization"), ("锡耶纳", "organization")],
    [],
]


@pytest.mark.parametrize(
    "dump",
    [
        lambda objects: "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects),
        lambda objects: "\n".join(json.dumps(o, ensure_ascii=False, indent=4) for o in objects),
        lambda objects: json.dumps(objects, ensure_ascii=False, indent=2),
    ],
    ids=["one-a-line", "pretty-printed", "array"],
)
def test_reads_cluener(tmp_path, vocab, dump):
    docs, report = read_docs(write(tmp_path / "a.json", dump(CLUENER)), vocab)
    assert [doc.text for doc in docs] == [o["text"] for o in CLUENER]
    assert [ents(doc) for doc in docs] == CLUENER_ENTS
    assert (report.format, report.scheme, report.sentences, report.unannotated) == ("cluener", "", 3, 0)
    assert report.entities == {"company": 1, "name": 1, "organization": 2}


@pytest.mark.parametrize(
    "entities",
    [
        {"entities": [[0, 4, "company"], [9, 12, "name"]]},
        {"entities": [{"start": 9, "end": 12, "label": "name"}, {"start": 0, "end": 4, "label": "company"}]},
        {
            "spans": [
                {"start": 0, "end": 4, "label": "company", "token_start": 0, "token_end": 3},
                {"start": 9, "end": 12, "label": "name"},
            ]
        },
    ],
)
def test_reads_spacy_jsonl(tmp_path, vocab, entities):
    line = json.dumps({"text": CLUENER[0]["text"], **entities, "meta": {}}, ensure_ascii=False)
    docs, report = read_docs(write(tmp_path / "a.jsonl", line + "\n"), vocab)
    assert ents(docs[0]) == CLUENER_ENTS[0] and report.format == "jsonl"


def test_objects_without_labels_have_no_entity_annotation(tmp_path, vocab):
    # CLUENER's test set: {"id", "text"}, no "label". Unlike an empty "label", that is not "no entities".
    path = write(tmp_path / "test.json", '{"id": 0, "text": "四川"}\n{"id": 1, "text": "北京", "label": {}}\n')
    docs, report = read_docs(path, vocab)
    assert [doc.has_annotation("ENT_IOB") for doc in docs] == [False, True]
    assert [token.ent_iob_ for token in docs[0]] == ["", ""]
    assert [token.ent_iob_ for token in docs[1]] == ["O", "O"]
    assert report.unannotated == 1 and report.sentences == 2
    assert [token.ent_iob_ for token in through_docbin(docs, vocab)[0]] == ["", ""]


@pytest.mark.parametrize("text", ["iPhone 15  Pro", " 前后 ", "中\u3000文\t字\n行", "a \u00a0b", ""])
def test_json_text_is_tokenised_as_the_pipeline_does(nlp, text):
    doc, expected = text_doc(nlp.vocab, text), nlp.make_doc(text)
    assert [(t.text, t.whitespace_) for t in doc] == [(t.text, t.whitespace_) for t in expected]
    assert doc.text == text


@given(st.text(alphabet="中文 a1\t\u3000\n", max_size=12))
def test_any_text_is_tokenised_as_the_pipeline_does(nlp, text):
    doc = text_doc(nlp.vocab, text)
    assert [(t.text, t.whitespace_) for t in doc] == [(t.text, t.whitespace_) for t in nlp.make_doc(text)]


def test_span_repairs_are_counted_and_the_longest_span_kept(tmp_path, vocab):
    objects = [
        # CLUENER's train set: two companies inside a book title.
        {
            "text": "《招商银行：投资永隆银行》",
            "label": {
                "book": {"《招商银行：投资永隆银行》": [[0, 12]]},
                "company": {"招商银行": [[1, 4]], "永隆银行": [[8, 11]]},
            },
        },
        {
            "text": "南京市长江大桥",
            "label": {
                "address": {"南京市": [[0, 2]]},
                "position": {"市长": [[2, 3]]},
                "scene": {"长江大桥": [[3, 6]]},
            },
        },
        # Equally long overlapping spans: the first is kept.
        {"text": "市长江", "label": {"position": {"市长": [[0, 1]]}, "scene": {"长江": [[1, 2]]}}},
        {"text": "叶老桂博士", "label": {"name": {"叶老": [[0, 2]]}}},
    ]
    path = write(tmp_path / "a.json", "\n".join(json.dumps(o, ensure_ascii=False) for o in objects))
    docs, report = read_docs(path, vocab)
    assert [ents(doc) for doc in docs] == [
        [("《招商银行：投资永隆银行》", "book")],
        [("南京市", "address"), ("长江大桥", "scene")],
        [("市长", "position")],
        [("叶老桂", "name")],
    ]
    assert report.repairs["overlapping_span_dropped"] == {"company": 2, "position": 1, "scene": 1}
    assert report.repairs["mention_mismatch"] == {"name": 1}


def test_spans_on_spaces_that_are_no_tokens_are_trimmed(tmp_path, vocab):
    lines = [
        {"text": "买 iPhone 15 了", "entities": [[1, 8, "PRODUCT"], [8, 9, "SPACE"]]},
        {"text": "买 iPhone  15", "entities": [[2, 12, "PRODUCT"]]},
    ]
    path = write(tmp_path / "a.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    docs, report = read_docs(path, vocab)
    assert [ents(doc) for doc in docs] == [[("iPhone", "PRODUCT")], [("iPhone  15", "PRODUCT")]]
    assert report.repairs["whitespace_trimmed"] == {"PRODUCT": 1}
    assert report.repairs["whitespace_span_dropped"] == {"SPACE": 1}


# Malformed input: file, line and what was expected


@pytest.mark.parametrize(
    "name,text,options,message",
    [
        # CoNLL
        ("a.conll", "我 O\n爱 O X\n", {}, r"a\.conll:2: 3 columns: expected 2 separated by spaces, as on line 1"),
        ("a.conll", "我\tO\n\n爱 O\n", {}, r"a\.conll:3: 1 columns: expected 2 separated by tabs, as on line 1"),
        ("a.conll", "我\n", {"format": "conll"}, r"a\.conll:1: expected a character and its tag"),
        ("a.conll", "我\tO\n\tO\n", {}, r"a\.conll:2: empty first column: expected a character"),
        ("a.conll", "我 O\n爱 X-LOC\n", {}, r"a\.conll:2: invalid tag 'X-LOC': expected 'O' or B-X/I-X/M-X/E-X/S-X"),
        ("a.conll", "北 B-LOC\n京 M-LOC\n\n市 I-LOC\n", {}, r"a\.conll:4: tag 'I-LOC' is not in the BMES scheme"),
        # Scheme violations under strict
        (
            "a.conll",
            "我 O\n北 I-LOC\n",
            {"strict": True, "scheme": "bio"},
            r"a\.conll:2: I-LOC continues no LOC entity: expected B-LOC before it",
        ),
        (
            "a.conll",
            "北 M-LOC\n京 E-LOC\n",
            {"strict": True},
            r"a\.conll:1: M-LOC continues no LOC entity: expected B-LOC",
        ),
        ("a.conll", "北 O\n京 E_LOC\n", {"strict": True}, r"a\.conll:2: E_LOC closes no LOC entity: expected B_LOC"),
        (
            "a.conll",
            "北 B-LOC\n京 M-LOC\n\n",
            {"strict": True},
            r"a\.conll:2: the LOC entity is not closed: expected E-LOC",
        ),
        ("a.conll", "北 B-LOC\n", {"strict": True, "scheme": "iob1"}, r"a\.conll:1: B-LOC follows no LOC entity"),
        # JSON syntax, in one-a-line, pretty-printed and array files
        ("a.json", '{"text": "a"}\n{"text": "b",}\n', {}, r"a\.json:2: invalid JSON: Expecting property name"),
        (
            "a.json",
            '{\n  "text": "ab",\n  "label": {}\n}\n{\n  "text": "cd"\n  "label": {}\n}\n',
            {},
            r"a\.json:7: invalid JSON: Expecting ',' delimiter \(column 3\)",
        ),
        ("a.json", '[\n{"text": "a"}\n{"text": "b"}\n]\n', {}, r"a\.json:3: invalid JSON: expected ',' or ']'"),
        ("a.json", '[{"text": "a"},\n', {}, r"a\.json:1: invalid JSON: expected ']' to close the array"),
        ("a.json", '[{"text": "a"}]\n{"text": "b"}\n', {}, r"a\.json:2: invalid JSON: data after the array"),
        (
            "a.json",
            '{"text": "a"}\n\n"b"\n',
            {},
            r"a\.json:3: expected a JSON object with a \"text\" string, found \"b\"",
        ),
        (
            "a.json",
            '{"txt": "a"}\n',
            {"format": "cluener"},
            r"a\.json:1: expected a JSON object with a \"text\" string",
        ),
        # JSON content
        (
            "a.json",
            '{"text": "ab",\n "label": {"name": {"abc": [[0, 2]]}}}',
            {},
            r"a\.json:1: offsets \[0, 2\] of the name mention 'abc' are out of range: expected 0 <= start <= end < 2",
        ),
        (
            "a.json",
            '{"text": "ab", "label": {"name": {"b": [[1, 0]]}}}',
            {},
            r"a\.json:1: offsets \[1, 0\] .* out of range",
        ),
        (
            "a.json",
            '{"text": "ab", "label": {"name": {"a": [[0]]}}}',
            {},
            r"a\.json:1: expected \[start, end\] offsets",
        ),
        ("a.json", '{"text": "ab", "label": {"name": {"a": 0}}}', {}, r"a\.json:1: expected \[start, end\] offsets"),
        ("a.json", '{"text": "ab", "label": ["name"]}', {}, r'a\.json:1: expected "label" as \{type: \{mention'),
        (
            "a.jsonl",
            '{"text": "ab", "entities": [[0, 3, "X"]]}',
            {},
            r"a\.jsonl:1: X span \[0, 3\) is out of range: expected 0 <= start < end <= 2",
        ),
        ("a.jsonl", '{"text": "ab", "entities": [[1, 1, "X"]]}', {}, r"a\.jsonl:1: X span \[1, 1\) is out of range"),
        (
            "a.jsonl",
            '{"text": "ab", "spans": [{"start": 0, "end": 1}]}',
            {},
            r'a\.jsonl:1: expected "spans" items as \[start, end, label\]',
        ),
        ("a.jsonl", '{"text": "ab", "entities": [[0, 1.0, "X"]]}', {}, r'a\.jsonl:1: expected "entities" items'),
        (
            "a.jsonl",
            '{"text": "ab", "entities": [], "spans": []}',
            {},
            r'a\.jsonl:1: expected "entities" or "spans", not both',
        ),
        # Repairs refused under strict
        (
            "a.json",
            '{"text": "ab"}\n{"text": "abc", "label": {"x": {"ab": [[0, 1]]}, "y": {"bc": [[1, 2]]}}}',
            {"strict": True},
            r"a\.json:2: the y span at characters 1-2 overlaps the x span at 0-1: expected entities that do not overlap",
        ),
        (
            "a.json",
            '{"text": "ab", "label": {"x": {"b": [[0, 0]]}}}',
            {"strict": True},
            r"a\.json:1: the x mention 'b' at \[0, 0\] is not the text there, 'a'",
        ),
        (
            "a.jsonl",
            '{"text": "a b", "entities": [[0, 2, "X"]]}',
            {"strict": True},
            r"a\.jsonl:1: the X span at characters 0-1 begins or ends on a space",
        ),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path, vocab, name, text, options, message):
    with pytest.raises(DataFormatError, match=message):
        read_docs(write(tmp_path / name, text), vocab, **options)


def test_strict_two_file_errors_name_the_tag(tmp_path, vocab):
    text = write(tmp_path / "a.txt", "我\n我 在 北 京\n")
    tags = write(tmp_path / "a_TAG.txt", "O\nO O I_LOC I_LOC\n")
    with pytest.raises(DataFormatError, match=r"a_TAG\.txt:2: tag 3: I_LOC continues no LOC entity: expected B_LOC"):
        read_two_file(text, tags, vocab, scheme="bio", strict=True)


# Writers


def test_writers_write_any_scheme_and_notation(tmp_path, vocab):
    doc = text_doc(vocab, "在北京市上海")
    doc.ents = [doc.char_span(1, 4, "LOC"), doc.char_span(4, 6, "LOC")]
    write_two_file([doc], tmp_path / "a.txt", tmp_path / "a_TAG.txt", "_", "bmes")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "在 北 京 市 上 海\n"
    assert (tmp_path / "a_TAG.txt").read_text(encoding="utf-8") == "O B_LOC M_LOC E_LOC B_LOC E_LOC\n"
    write_conll([doc, text_doc(vocab, ""), text_doc(vocab, "好")], tmp_path / "a.conll", "-", "iob1")
    assert (tmp_path / "a.conll").read_text(encoding="utf-8") == (
        "在 O\n北 I-LOC\n京 I-LOC\n市 I-LOC\n上 B-LOC\n海 I-LOC\n\n好 O\n\n"
    )


def test_writers_refuse_tokens_their_format_cannot_hold(tmp_path, vocab):
    doc = text_doc(vocab, "a  b")  # the second space is a token
    with pytest.raises(ValueError, match=r"cannot write the token ' '"):
        write_two_file([doc], tmp_path / "a.txt", tmp_path / "a_TAG.txt")
    with pytest.raises(ValueError, match=r"cannot write the token ' '"):
        write_conll([doc], tmp_path / "a.conll")
    tab_docs = read_docs(write(tmp_path / "tab.conll", " \tO\n"), vocab)[0]
    write_conll(tab_docs, tmp_path / "b.conll")
    assert (tmp_path / "b.conll").read_text(encoding="utf-8") == " \tO\n\n"


def test_conll_writer_refuses_a_layout_that_no_longer_fits(tmp_path, vocab):
    docs = read_docs(write(tmp_path / "a.conll", "科0\tB-ORG\n大1\tI-ORG\n"), vocab)[0]
    with docs[0].retokenize() as retokenizer:
        retokenizer.merge(docs[0][0:2])
    with pytest.raises(ValueError, match="the CoNLL layout of the Doc '科大'… no longer matches its tokens"):
        write_conll(docs, tmp_path / "b.conll")


@st.composite
def annotated_texts(draw):
    """A text of Chinese characters and non-overlapping entities, adjacent ones included."""
    spans, position = [], 0
    for _ in range(draw(st.integers(0, 5))):
        start = position + draw(st.integers(0, 2))
        end = start + draw(st.integers(1, 4))
        spans.append((start, end, draw(st.sampled_from(["LOC", "PER.NAM"]))))
        position = end
    text = draw(st.text(alphabet="北京上海人民网日报", min_size=max(position, 1), max_size=position + 3))
    return text, spans


@settings(max_examples=40, deadline=None)
@given(st.lists(annotated_texts(), min_size=1, max_size=3), st.sampled_from(sorted(SCHEMES)), st.sampled_from("-_"))
def test_any_entities_survive_every_writer_and_reader(tmp_path_factory, vocab, annotated, scheme, separator):
    docs = []
    for text, spans in annotated:
        doc = text_doc(vocab, text)
        doc.ents = [doc.char_span(*span) for span in spans]
        docs.append(doc)
    expected = [ents(doc) for doc in docs]
    folder = tmp_path_factory.mktemp("written")
    write_conll(docs, folder / "a.conll", separator, scheme)
    write_two_file(docs, folder / "b.txt", folder / "b_TAG.txt", separator, scheme)
    jsonl = [{"text": text, "entities": spans} for text, spans in annotated]
    write(folder / "c.jsonl", "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in jsonl))
    for path, options in [("a.conll", {}), ("a.conll", {"scheme": scheme}), ("b.txt", {}), ("c.jsonl", {})]:
        read, report = read_docs(folder / path, vocab, strict=True, **options)
        assert [ents(doc) for doc in read] == expected


VALID_TAGS = ["O", "B-X", "I-X", "M-X", "E-X", "S-X", "B-Y", "I-Y", "E-Y"]
INVALID_TAGS = ["X-Y", "B-", "0", "L-X"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(VALID_TAGS + INVALID_TAGS), min_size=1, max_size=6), min_size=1, max_size=4),
    st.booleans(),
)
def test_any_tags_either_read_or_fail_with_a_line(tmp_path_factory, vocab, sentences, strict):
    path = tmp_path_factory.mktemp("random") / "a.conll"
    text = "".join("".join(f"字 {tag}\n" for tag in tags) + "\n" for tags in sentences)
    write(path, text)
    try:
        docs, report = read_docs(path, vocab, strict=strict)
    except DataFormatError as error:
        assert error.path == path and 1 <= error.line <= text.count("\n")
        return
    assert len(docs) == len(sentences)
    if strict:
        # Accepted under strict means valid: it is written back as it came.
        write_conll(docs, path.with_name("b.conll"), report.tag_notation or "-", report.scheme)
        assert path.with_name("b.conll").read_text(encoding="utf-8") == text


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


@pytest.mark.parametrize("suffix", [".txt", ".txt.gz"])
def test_a_decoding_error_names_file_line_and_byte(tmp_path, suffix):
    data = "第一行\n第二行\n".encode("utf-8") + "第三行".encode("gb18030") + b"\n"
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(gzip.compress(data) if suffix == ".txt.gz" else data)
    byte = "第".encode("gb18030")[0]
    expected = f"{path}:3: not valid UTF-8 (byte 0x{byte:02x}); if this is GBK, pass --encoding gb18030"
    with pytest.raises(DataFormatError) as error:
        list(read_lines(path))
    assert str(error.value) == expected and error.value.line == 3
    with pytest.raises(DataFormatError, match="bad.*:3: not valid UTF-8"), open_text(path) as file:
        file.read()


def test_gb18030_files_read_when_named(tmp_path):
    path = tmp_path / "gbk.txt"
    path.write_bytes("北京欢迎你\n中 国\n".encode("gb18030"))
    assert list(read_lines(path, "gb18030")) == ["北京欢迎你", "中 国"]
    assert read_text(path, "gb18030") == ([["北", "京", "欢", "迎", "你"], ["中", "国"]], False)
    with pytest.raises(DataFormatError, match=r"gbk.txt:1: not valid UTF-8"):
        read_text(path)
    # A GB18030 file that is not: the message names the encoding asked for, without the hint.
    path.write_bytes(b"ok\n\xff\xff\n")
    with pytest.raises(DataFormatError, match=r"gbk.txt:2: not valid gb18030 \(byte 0xff\)$"):
        list(read_lines(path, "gb18030"))
