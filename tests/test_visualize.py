"""The displaCy page of predicted entities, and its check in headless Chromium."""

import json
import os
import re
import shutil

import pytest
import spacy
from spacy.tokens import Span
from spacy.training import Example

from conftest import run_script, tagger_config
from spacy_bert_crf.formats import make_doc
from spacy_bert_crf.lab.visualize import (
    CHROMIUM_NAMES,
    DEFAULT_COLOR,
    LABEL_COLORS,
    BrowserNotFound,
    check_renders_in_chromium,
    count_entity_marks,
    find_chromium,
    predict_sample,
    render_entities,
)

needs_chromium = pytest.mark.skipif(
    not any(shutil.which(name) for name in CHROMIUM_NAMES),
    reason=f"no Chromium binary on PATH (looked for {', '.join(CHROMIUM_NAMES)}); install Debian's `chromium`",
)


def doc_with_ents(vocab, text, ents):
    """A char-token Doc with entities given as (start, end, label) token offsets."""
    doc = make_doc(vocab, list(text))
    doc.ents = [Span(doc, start, end, label) for start, end, label in ents]
    return doc


@pytest.fixture
def hand_made_docs():
    vocab = spacy.blank("zh").vocab
    return [
        doc_with_ents(vocab, "张三在北京工作", [(0, 2, "PER"), (3, 5, "LOC")]),
        doc_with_ents(vocab, "今天没有实体", []),
        doc_with_ents(vocab, "1月1日人民网<报道>", [(0, 4, "T"), (4, 7, "ORG"), (7, 11, "X")]),
    ]


@pytest.fixture(scope="module")
def tiny_nlp(tiny_encoder, pd2014_docs):
    """An untrained pipe, initialised on a few real sentences: enough to predict."""
    nlp = spacy.blank("zh")
    nlp.add_pipe("bert_crf_ner", config=tagger_config(tiny_encoder))
    examples = [
        Example.from_dict(
            nlp.make_doc(doc.text), {"entities": [(e.start_char, e.end_char, e.label_) for e in doc.ents]}
        )
        for doc in pd2014_docs[:4]
    ]
    nlp.initialize(lambda: examples)
    return nlp


def test_render_entities_writes_a_utf8_page_of_every_entity(hand_made_docs, tmp_path):
    path = tmp_path / "sub" / "ents.html"
    assert render_entities(hand_made_docs, path, title="示例 <1>") == 5
    page = path.read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in page
    assert "<title>示例 &lt;1&gt;</title>" in page
    assert "今天没有实体" in page
    for doc in hand_made_docs:
        for ent in doc.ents:
            assert ent.label_ in page
    for text in ["张三", "北京", "1月1日", "人民网", "&lt;报道&gt;"]:
        assert text in page
    assert count_entity_marks(page) == 5
    for label, color in {**LABEL_COLORS, "X": DEFAULT_COLOR}.items():
        assert f"background: {color}" in page, label


def test_render_entities_colours_are_stable(hand_made_docs, tmp_path):
    render_entities(hand_made_docs[:1], tmp_path / "a.html", title="a")
    render_entities(hand_made_docs[::-1], tmp_path / "b.html", title="b")
    for path in (tmp_path / "a.html", tmp_path / "b.html"):
        assert f"background: {LABEL_COLORS['PER']}" in path.read_text(encoding="utf-8")


def test_predict_sample_takes_the_first_n_non_empty_texts(tiny_nlp):
    texts = ["", "人民网北京1月1日电", "", "我爱北京", "张三去上海", "不该出现"]
    docs = predict_sample(tiny_nlp, iter(texts), n=3)
    assert [doc.text for doc in docs] == ["人民网北京1月1日电", "我爱北京", "张三去上海"]
    labels = set(tiny_nlp.get_pipe("bert_crf_ner").labels)
    assert all(ent.label_ in labels for doc in docs for ent in doc.ents)


def test_find_chromium_names_what_it_looked_for(tmp_path):
    with pytest.raises(BrowserNotFound, match="no-such-browser"):
        find_chromium(str(tmp_path / "no-such-browser"))


@needs_chromium
def test_chromium_shows_every_entity(hand_made_docs, tmp_path):
    entities = render_entities(hand_made_docs, tmp_path / "ents.html", title="check")
    result = check_renders_in_chromium(tmp_path / "ents.html", tmp_path / "shots" / "ents.png", timeout=60)
    assert result["marks"] == entities == 5
    assert "chrom" in result["browser"].lower()
    assert result["screenshot"] == str(tmp_path / "shots" / "ents.png")
    assert result["screenshot_bytes"] == (tmp_path / "shots" / "ents.png").stat().st_size > 0


@pytest.fixture(scope="module")
def saved_pipeline(tiny_nlp, tmp_path_factory):
    path = tmp_path_factory.mktemp("pipeline") / "nlp"
    tiny_nlp.to_disk(path)
    return path


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("人 民 网 1 月 1 日 讯\n\n我 爱 北 京\n张 三 去 上 海\n", encoding="utf-8")
    return path


def shown_text(page):
    """The sentences' characters on a displaCy page, without markup and labels."""
    body = page[page.index("<body") :]
    return re.sub(r"<span[^>]*>[^<]*</span>|<[^>]+>|\s+", "", body)


def test_cli_without_check_writes_only_the_page(saved_pipeline, text_file, tmp_path):
    result = run_script(
        "render_predictions.py", saved_pipeline, text_file, tmp_path / "out.html", "--n", "2", "--no-check"
    )
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "out.html").read_text(encoding="utf-8")
    assert shown_text(page) == "人民网1月1日讯我爱北京"
    assert not (tmp_path / "out.check.json").exists() and not (tmp_path / "out.png").exists()


@needs_chromium
def test_cli_check_writes_its_result(saved_pipeline, text_file, tmp_path):
    result = run_script(
        "render_predictions.py", saved_pipeline, text_file, tmp_path / "out.html", "--screenshot", tmp_path / "shot.png"
    )
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "out.check.json").read_text(encoding="utf-8"))
    assert json.loads(result.stdout[result.stdout.index("{") :]) == written
    assert written["marks"] == written["entities"]
    assert written["screenshot"] == str(tmp_path / "shot.png") and (tmp_path / "shot.png").exists()


def test_cli_check_without_a_browser_says_what_to_do(saved_pipeline, text_file, tmp_path):
    # An empty PATH hides every browser; the interpreter is called by its full path.
    result = run_script(
        "render_predictions.py",
        saved_pipeline,
        text_file,
        tmp_path / "out.html",
        env={**os.environ, "PATH": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "install chromium" in result.stderr.lower() and "--no-check" in result.stderr
    assert not (tmp_path / "out.html").exists()
