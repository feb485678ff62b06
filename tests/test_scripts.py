"""The typer CLIs, run as a user runs them (or in-process, for their many error paths)."""

import json

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example

from conftest import ASSETS, invoke_script, run_script, tagger_config
from spacy_bert_crf.formats import read_docs


def test_convert_writes_docbin_and_report(tmp_path):
    (tmp_path / "a.txt").write_text("平 壤 1 月 1 日\n\n我 爱 北 京\n", encoding="utf-8")
    (tmp_path / "a_TAG.txt").write_text("B_LOC I_LOC I_T I_T I_T I_T\n\nO O B_LOC I_LOC\n", encoding="utf-8")
    result = run_script(
        "convert.py",
        tmp_path / "a.txt",
        tmp_path / "a_TAG.txt",
        tmp_path / "out.spacy",
        "--report",
        tmp_path / "r.json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["sentences"] == 3 and report["empty_sentences"] == 1
    assert report["repairs"]["stray_inside"] == {"T": 1}
    # The console gets a short table of the same counts, not the JSON.
    printed = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert "sentences 3 (1 empty, 0 unannotated)" in printed
    assert "entities LOC 2" in printed and "repairs stray_inside 1 (T 1)" in printed
    assert len(printed) < 15
    docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(spacy.blank("zh").vocab))
    assert [doc.text for doc in docs] == ["平壤1月1日", "", "我爱北京"]
    assert [ent.text for ent in docs[2].ents] == ["北京"]


@pytest.mark.parametrize(
    "text,tags,message",
    [
        ("我 爱\n", "O\n", "a_TAG.txt:1: 1 tags for 2 characters"),
        ("我 爱\n", "O X\n", "a_TAG.txt:1: tag 2: invalid tag 'X'"),
        ("我\n你\n", "O\n", "a_TAG.txt:1: file ends after 1 lines"),
    ],
)
def test_convert_fails_with_file_and_line(tmp_path, text, tags, message):
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    (tmp_path / "a_TAG.txt").write_text(tags, encoding="utf-8")
    result = invoke_script("convert.py", tmp_path / "a.txt", tmp_path / "a_TAG.txt", tmp_path / "out.spacy")
    assert result.exit_code == 1
    assert message in " ".join(result.stdout.split())
    assert not (tmp_path / "out.spacy").exists()


WEIBO = "科0\tB-ORG.NAM\n大1\tI-ORG.NAM\n好0\tO\n\n[0\tO\n北0\tB-GPE.NAM\n京1\tI-GPE.NAM\n\n"
CLUENER = '{\n    "text": "叶老桂博士",\n    "label": {\n        "name": {\n            "叶老桂": [[0, 2]]\n        }\n    }\n}\n'
JSONL = '{"text": "四川", "entities": [[0, 2, "LOC"]]}\n{"text": "没有标注"}\n'


@pytest.mark.parametrize(
    "name,text,options,expected",
    [
        ("a.conll", WEIBO, [], {"format": "conll", "scheme": "bio", "entities": {"GPE.NAM": 1, "ORG.NAM": 1}}),
        (
            "a.txt",
            "北 I-LOC\n京 I-LOC\n\n",
            ["--format", "conll", "--scheme", "bio"],
            {"scheme": "bio", "repairs_total": 1},
        ),
        ("a.json", CLUENER, [], {"format": "cluener", "entities": {"name": 1}}),
        ("a.jsonl", JSONL, [], {"format": "jsonl", "sentences": 2, "unannotated": 1}),
    ],
)
def test_convert_reads_one_file_of_any_format(tmp_path, name, text, options, expected):
    (tmp_path / name).write_text(text, encoding="utf-8")
    result = invoke_script(
        "convert.py", tmp_path / name, tmp_path / "out.spacy", "--report", tmp_path / "report.json", *options
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert {key: report[key] for key in expected} == expected
    assert len(DocBin().from_disk(tmp_path / "out.spacy")) == report["sentences"]


@pytest.mark.parametrize(
    "name,text,options,message",
    [
        ("a.conll", "我 O\n爱 O X\n", [], "{tmp_path}/a.conll:2: 3 columns: expected 2"),
        (
            "a.conll",
            "我 O\n北 I-LOC\n",
            ["--strict", "--scheme", "bio"],
            "{tmp_path}/a.conll:2: I-LOC continues no LOC entity",
        ),
        ("a.json", '{"text": "a"}\n{"text": "b",}\n', [], "{tmp_path}/a.json:2: invalid JSON"),
        (
            "a.jsonl",
            '{"text": "ab", "entities": [[0, 3, "X"]]}\n',
            [],
            "{tmp_path}/a.jsonl:1: X span [0, 3) is out of range",
        ),
        ("a.txt", "我 爱\n", [], "{tmp_path}/a.txt:1: cannot tell the format"),
        ("a.txt", "我 爱\n", ["--format", "lines"], "[Errno 2] No such file or directory: '{tmp_path}/a_TAG.txt'"),
    ],
)
def test_convert_fails_on_one_file_with_file_and_line(tmp_path, name, text, options, message):
    (tmp_path / name).write_text(text, encoding="utf-8")
    result = invoke_script("convert.py", tmp_path / name, tmp_path / "out.spacy", *options)
    assert result.exit_code == 1
    # wasabi wraps long lines: compare with the whitespace collapsed.
    output = " ".join(result.stdout.split())
    assert "Cannot convert" in output and message.format(tmp_path=tmp_path) in output
    assert not (tmp_path / "out.spacy").exists()


def test_convert_names_the_line_of_a_gbk_file_and_reads_it_when_told(tmp_path):
    text, tags = "中 国\n北 京 欢 迎 你\n", "B_LOC I_LOC\nB_LOC I_LOC O O O\n"
    (tmp_path / "gbk.txt").write_bytes(("今 天\n" + text).encode("gb18030"))
    (tmp_path / "gbk_TAG.txt").write_bytes(("O O\n" + tags).encode("gb18030"))
    result = invoke_script("convert.py", tmp_path / "gbk.txt", tmp_path / "out.spacy")
    assert result.exit_code == 1
    byte = "今".encode("gb18030")[0]
    expected = f"{tmp_path}/gbk.txt:1: not valid UTF-8 (byte 0x{byte:02x}); if this is GBK, pass --encoding gb18030"
    assert expected in " ".join(result.stdout.split())
    result = invoke_script("convert.py", tmp_path / "gbk.txt", tmp_path / "out.spacy", "--encoding", "gb18030")
    assert result.exit_code == 0, result.stdout
    docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(spacy.blank("zh").vocab))
    assert [[(e.text, e.label_) for e in doc.ents] for doc in docs] == [[], [("中国", "LOC")], [("北京", "LOC")]]
    result = invoke_script("convert.py", tmp_path / "gbk.txt", tmp_path / "out.spacy", "--encoding", "no-such-codec")
    assert result.exit_code == 1 and "unknown encoding: no-such-codec" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["a.conll"],
        ["a.txt", "a_TAG.txt", "b.txt", "out.spacy"],
        ["a.txt", "a_TAG.txt", "out.spacy", "--format", "conll"],
    ],
)
def test_convert_needs_one_or_two_inputs_then_an_output(tmp_path, args):
    assert invoke_script("convert.py", *args).exit_code == 2


def test_export_gives_the_converted_file_back(tmp_path):
    # The first 40 sentences of Weibo NER's dev set: tabs, segmentation digits, BIO.
    sentences = (ASSETS / "weibo" / "weiboNER_2nd_conll.dev").read_text(encoding="utf-8").split("\n\n")
    source = tmp_path / "weibo.dev"
    source.write_text("".join(sentence + "\n\n" for sentence in sentences[:40]), encoding="utf-8")
    assert invoke_script("convert.py", source, tmp_path / "weibo.spacy").exit_code == 0
    result = run_script("export.py", tmp_path / "weibo.spacy", tmp_path / "back.dev", "--format", "conll")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "back.dev").read_bytes() == source.read_bytes()
    result = invoke_script(
        "export.py",
        tmp_path / "weibo.spacy",
        tmp_path / "back.txt",
        "--format",
        "lines",
        "--separator",
        "_",
        "--scheme",
        "bmes",
    )
    assert result.exit_code == 0, result.stderr
    vocab = spacy.blank("zh").vocab
    exported, report = read_docs(tmp_path / "back.txt", vocab)
    assert (report.format, report.scheme, report.tag_notation) == ("lines", "bmes", "_")
    converted = DocBin().from_disk(tmp_path / "weibo.spacy").get_docs(vocab)
    assert [[(e.start, e.end, e.label_) for e in doc.ents] for doc in exported] == [
        [(e.start, e.end, e.label_) for e in doc.ents] for doc in converted
    ]


def test_export_fails_on_what_its_format_cannot_hold(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "a  b", "entities": []}\n', encoding="utf-8")
    assert invoke_script("convert.py", tmp_path / "a.jsonl", tmp_path / "a.spacy").exit_code == 0
    result = invoke_script("export.py", tmp_path / "a.spacy", tmp_path / "a.txt", "--format", "lines")
    assert result.exit_code == 1
    assert "✘ Cannot export: cannot write the token ' '" in result.stderr
    two_outputs = [tmp_path / "a.conll", tmp_path / "b.conll"]
    assert invoke_script("export.py", tmp_path / "a.spacy", *two_outputs, "--format", "conll").exit_code == 2


@pytest.fixture(scope="module")
def saved_pipeline(tiny_encoder, pd2014_docs, tmp_path_factory):
    nlp = spacy.blank("zh")
    nlp.add_pipe("bert_crf_ner", config=tagger_config(tiny_encoder))
    examples = [
        Example.from_dict(
            nlp.make_doc(doc.text), {"entities": [(e.start_char, e.end_char, e.label_) for e in doc.ents]}
        )
        for doc in pd2014_docs[:4]
    ]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(5):
        nlp.update(examples, sgd=optimizer)
    path = tmp_path_factory.mktemp("pipeline") / "nlp"
    nlp.to_disk(path)
    return path


@pytest.mark.parametrize("separator", ["_", "-"])
def test_predict_answers_line_for_line(saved_pipeline, tmp_path, separator):
    lines = ["人 民 网 1 月 1 日 讯", "", "我 爱 北 京", "", ""]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_script(
        "predict.py", saved_pipeline, tmp_path / "in.txt", tmp_path / "out_TAG.txt", "--separator", separator
    )
    assert result.returncode == 0, result.stderr
    output = (tmp_path / "out_TAG.txt").read_text(encoding="utf-8").split("\n")
    assert output[-1] == "" and len(output[:-1]) == len(lines)
    for line, tag_line in zip(lines, output):
        tags = tag_line.split()
        assert len(tags) == len(line.split())
        other = "-" if separator == "_" else "_"
        assert all(tag == "O" or (tag[1] == separator and other not in tag[:2]) for tag in tags)


def test_predict_takes_plain_text(saved_pipeline, tmp_path):
    (tmp_path / "in.txt").write_text("人民网1月1日讯\n\niPhone 15\n", encoding="utf-8")
    result = run_script("predict.py", saved_pipeline, tmp_path / "in.txt", tmp_path / "out.txt")
    assert result.returncode == 0, result.stderr
    output = (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert [len(line.split()) for line in output] == [8, 0, 8]


def test_convert_and_predict_refuse_a_directory_as_output(tmp_path):
    (tmp_path / "a.conll").write_text("我 O\n", encoding="utf-8")
    result = invoke_script("convert.py", tmp_path / "a.conll", tmp_path)
    assert result.exit_code == 1 and "is a directory" in " ".join(result.stdout.split())
    result = invoke_script("predict.py", "no_model", tmp_path / "a.conll", tmp_path)
    assert result.exit_code == 1 and "is a directory" in " ".join(result.stdout.split())
    result = invoke_script("predict.py", "no_model", tmp_path / "missing.txt", tmp_path / "out.txt")
    assert result.exit_code == 1 and "No such file or directory" in " ".join(result.stdout.split())
