"""The typer CLIs, run as a user runs them."""
import json

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example

from conftest import run_script, tagger_config


def test_convert_writes_docbin_and_report(tmp_path):
    (tmp_path / "a.txt").write_text("平 壤 1 月 1 日\n\n我 爱 北 京\n", encoding="utf-8")
    (tmp_path / "a_TAG.txt").write_text("B_LOC I_LOC I_T I_T I_T I_T\n\nO O B_LOC I_LOC\n", encoding="utf-8")
    result = run_script(
        "convert.py", tmp_path / "a.txt", tmp_path / "a_TAG.txt", tmp_path / "out.spacy", "--report", tmp_path / "r.json"
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert printed["sentences"] == 3 and printed["empty_sentences"] == 1
    assert printed["repairs"]["stray_inside"] == {"T": 1}
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
    result = run_script("convert.py", tmp_path / "a.txt", tmp_path / "a_TAG.txt", tmp_path / "out.spacy")
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tmp_path / "out.spacy").exists()


@pytest.fixture(scope="module")
def saved_pipeline(tiny_encoder, pd2014_docs, tmp_path_factory):
    nlp = spacy.blank("zh")
    nlp.add_pipe("bert_crf_ner", config=tagger_config(tiny_encoder))
    examples = [
        Example.from_dict(nlp.make_doc(doc.text), {"entities": [(e.start_char, e.end_char, e.label_) for e in doc.ents]})
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
