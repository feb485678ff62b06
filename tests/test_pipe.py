"""The bert_crf_ner pipe, in the spirit of spaCy's tests/pipeline/test_tagger.py."""

import re
import subprocess
import sys

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.training.iob_utils import biluo_tags_to_spans, iob_to_biluo

from conftest import tagger_config
from spacy_bert_crf.architectures import head_module
from spacy_bert_crf.formats import make_doc
from spacy_bert_crf.pipe import length_sorted_splits
from spacy_bert_crf.schemes import is_valid_bio

HEADS = {
    "crf": ("spacy_bert_crf.CRFTagger.v1", {"crf_learn_rate_scale": 10.0}),
    "softmax": ("spacy_bert_crf.SoftmaxTagger.v1", {}),
    # The offline default's encoder ends in a BiLSTM (its bigram corrections: test_char_encoder.py).
    "crf-bilstm": ("spacy_bert_crf.CRFTagger.v1", {"crf_learn_rate_scale": 10.0}),
}
ENCODER_SETTINGS = {"crf-bilstm": {"lstm_width": 32}}
ODD_TEXTS = [
    "",
    " ",
    "\ufffd\ufffd",
    "\x00\x07控制\x1b字符",
    "“引号”—……‘单引号’",
    "ABC公司 iPhone 15 在 北京",
    "全角１２月３１日ＡＢＣ",
    "emoji 😀🇨🇳 表情",
    "多个   空格\t\n换行",
    "\u2028\u3000",
]


def ents(doc):
    return [(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents]


def build_nlp(encoder, head="crf"):
    architecture, settings = HEADS[head]
    nlp = spacy.blank("zh")
    config = tagger_config(encoder, architecture, encoder_settings=ENCODER_SETTINGS.get(head), **settings)
    nlp.add_pipe("bert_crf_ner", config=config)
    return nlp


def train_examples(nlp, gold_docs):
    return [Example.from_dict(nlp.make_doc(doc.text), {"entities": ents(doc)}) for doc in gold_docs]


@pytest.fixture(scope="module", params=list(HEADS))
def overfitted(request, tiny_encoder, pd2014_docs):
    """A pipe trained to near-zero loss on 8 real sentences."""
    nlp = build_nlp(tiny_encoder, request.param)
    # Sentences with runs of digits ("1月1日"): every character is its own
    # input, so even a per-token softmax can tag B_T on the first and I_T on the rest.
    examples = train_examples(nlp, [doc for doc in pd2014_docs if re.search("[0-9]{2}", doc.text)][:8])
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(300):
        losses = nlp.update(examples, sgd=optimizer)
        if losses["bert_crf_ner"] < 0.002:
            break
    return request.param, nlp, examples, losses["bert_crf_ner"]


def test_overfitting_and_reload(overfitted, tmp_path):
    head, nlp, examples, loss = overfitted
    assert loss < 0.05, head
    texts = [eg.reference.text for eg in examples]
    predicted = [ents(doc) for doc in nlp.pipe(texts)]
    assert predicted == [ents(eg.reference) for eg in examples]
    nlp.to_disk(tmp_path / "nlp")
    reloaded = spacy.load(tmp_path / "nlp")
    assert [ents(doc) for doc in reloaded.pipe(texts)] == predicted
    from_bytes = spacy.blank("zh").from_config(nlp.config).from_bytes(nlp.to_bytes())
    assert [ents(from_bytes(text)) for text in texts] == predicted


def test_labels_come_from_the_data(overfitted):
    _, nlp, examples, _ = overfitted
    ner = nlp.get_pipe("bert_crf_ner")
    gold_labels = {ent.label_ for eg in examples for ent in eg.reference.ents}
    assert ner.labels == tuple(sorted(gold_labels))
    assert nlp.get_pipe("bert_crf_ner").model.get_ref("output").get_dim("nO") == 1 + 2 * len(gold_labels)


def test_pipe_equals_call(overfitted, pd2014_docs):
    _, nlp, _, _ = overfitted
    texts = [doc.text for doc in pd2014_docs[:40]] + ODD_TEXTS
    piped, called = list(nlp.pipe(texts, batch_size=7)), [nlp(text) for text in texts]
    assert [ents(doc) for doc in piped] == [ents(doc) for doc in called]
    for doc, alone in zip(piped, called):
        numpy.testing.assert_allclose(doc.spans["ents"].attrs["scores"], alone.spans["ents"].attrs["scores"], atol=1e-3)


def test_entities_carry_their_probabilities(overfitted, pd2014_docs, tmp_path):
    head, nlp, examples, _ = overfitted
    learned = list(nlp.pipe(eg.reference.text for eg in examples))
    unseen = list(nlp.pipe(doc.text for doc in pd2014_docs[20:60]))
    for doc in learned + unseen:
        group = doc.spans["ents"]
        assert [(span.start, span.end, span.label_) for span in group] == [(e.start, e.end, e.label_) for e in doc.ents]
        assert len(group.attrs["scores"]) == len(group)
        assert all(0.0 < score <= 1.0 for score in group.attrs["scores"])
    # The training sentences are learned by heart: their entities are likelier than not, and surer than unseen ones.
    learned_scores = [score for doc in learned for score in doc.spans["ents"].attrs["scores"]]
    unseen_scores = [score for doc in unseen for score in doc.spans["ents"].attrs["scores"]]
    assert min(learned_scores) > 0.5, head
    assert numpy.mean(learned_scores) > numpy.mean(unseen_scores), head
    reloaded = list(DocBin(docs=learned).from_bytes(DocBin(docs=learned).to_bytes()).get_docs(nlp.vocab))
    for doc, copy in zip(learned, reloaded):
        assert list(copy.spans["ents"].attrs["scores"]) == list(doc.spans["ents"].attrs["scores"])


def test_settings_come_from_the_config_at_load_time(overfitted, tmp_path):
    _, nlp, examples, _ = overfitted
    nlp.to_disk(tmp_path / "nlp")
    text = examples[0].reference.text
    plain = spacy.load(
        tmp_path / "nlp", config={"components": {"bert_crf_ner": {"spans_key": None, "encoder_sub_batches": 1}}}
    )
    assert plain.get_pipe("bert_crf_ner").encoder_sub_batches == 1
    doc = plain(text)
    assert "ents" not in doc.spans and ents(doc) == ents(nlp(text))
    assert spacy.load(tmp_path / "nlp").get_pipe("bert_crf_ner").spans_key == "ents"


def test_no_spans_key_skips_the_probabilities(tiny_encoder, pd2014_docs):
    nlp = build_nlp(tiny_encoder)
    nlp.get_pipe("bert_crf_ner").spans_key = None
    nlp.initialize(lambda: train_examples(nlp, pd2014_docs[:4]))
    doc = nlp(pd2014_docs[0].text)
    assert "ents" not in doc.spans


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_odd_text_gives_valid_entities(overfitted, text):
    _, nlp, _, _ = overfitted
    doc = nlp(text)
    assert doc.text == text
    previous_end = 0
    for ent in doc.ents:
        assert previous_end <= ent.start_char < ent.end_char <= len(text)
        previous_end = ent.end_char


def test_long_document_matches_its_pieces(overfitted):
    """A 3,000-character doc gets what its pieces get, apart from edge effects.

    The test config cuts docs into windows of 32 tokens every 24. Pieces of 96
    characters start on a window boundary of the long doc too, so each piece's
    characters 8 to 72 are covered by the very same windows either way: their
    emissions must be equal, and so must the entities found there.
    """
    _, nlp, examples, _ = overfitted
    pieces = [eg.reference.text[:96] for eg in examples if len(eg.reference) >= 96] * 8
    long_doc = nlp("".join(pieces))
    assert len(long_doc) == 96 * len(pieces) > 3000
    piece_docs = list(nlp.pipe(pieces))
    model = nlp.get_pipe("bert_crf_ner").model
    long_emissions = model.predict([long_doc])[0]
    for i, piece_emissions in enumerate(model.predict(piece_docs)):
        numpy.testing.assert_allclose(
            long_emissions[96 * i + 8 : 96 * i + 72], piece_emissions[8:72], rtol=1e-4, atol=1e-4
        )

    def inner_ents(entities, offset):
        return {(start, end, label) for start, end, label in entities if offset + 16 <= start and end <= offset + 64}

    compared = 0
    for i, piece in enumerate(piece_docs):
        offset = 96 * i
        expected = {(start + offset, end + offset, label) for start, end, label in inner_ents(ents(piece), 0)}
        assert inner_ents(ents(long_doc), offset) == expected
        compared += len(expected)
    assert compared > 20


def test_predict_never_emits_invalid_bio(tiny_encoder, pd2014_docs):
    nlp = build_nlp(tiny_encoder)
    examples = train_examples(nlp, pd2014_docs[:4])
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("bert_crf_ner")
    output = ner.model.get_ref("output")
    bias = output.get_param("b")
    inside = [i for i, tag in enumerate(ner.tags) if tag.startswith("I-")]
    bias[inside] += 100.0  # every token's best tag alone is some I-X
    output.set_param("b", bias)
    docs = [nlp.make_doc(doc.text) for doc in pd2014_docs[:10]]
    prediction = ner.predict(docs)
    ner.set_annotations(docs, prediction)
    for doc, found in zip(docs, prediction):
        tags = [ner.tags[i] for i in found.tag_ids]
        assert any(tag.startswith("I-") for tag in tags)
        assert is_valid_bio(tags)
        # The entities set are those of the tags.
        expected = biluo_tags_to_spans(doc, iob_to_biluo(tags))
        assert [(e.start, e.end, e.label_) for e in doc.ents] == [(e.start, e.end, e.label_) for e in expected]


def test_no_entities_in_the_data_is_an_error(tiny_encoder):
    nlp = build_nlp(tiny_encoder)
    examples = [Example.from_dict(nlp.make_doc("我爱你"), {"entities": []})]
    with pytest.raises(ValueError, match="found no entities"):
        nlp.initialize(lambda: examples)


def test_initialize_takes_given_labels(tiny_encoder, pd2014_docs):
    nlp = build_nlp(tiny_encoder)
    examples = train_examples(nlp, pd2014_docs[:2])
    nlp.get_pipe("bert_crf_ner").initialize(lambda: examples, nlp=nlp, labels=["X", "LOC", "PER", "T", "ORG"])
    assert nlp.get_pipe("bert_crf_ner").labels == ("X", "LOC", "PER", "T", "ORG")


def test_scores_include_per_type_and_tag_accuracy(overfitted):
    _, nlp, examples, _ = overfitted
    scores = nlp.evaluate(examples)
    assert scores["ents_f"] == pytest.approx(1.0)
    assert scores["ents_tag_acc"] == pytest.approx(1.0)
    assert set(scores["ents_per_type"]) == {ent.label_ for eg in examples for ent in eg.reference.ents}
    calibration = scores["ents_calibration"]
    assert calibration["entities"] == sum(len(eg.reference.ents) for eg in examples)
    assert sum(row["precision"] * row["entities"] for row in calibration["bins"]) == pytest.approx(
        calibration["entities"]
    )


@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0])
def test_crf_learning_rate_is_a_real_per_parameter_scale(tiny_encoder, pd2014_docs, scale):
    """Adam's first step moves every parameter by about its learning rate,
    whatever the gradient's size: the CRF's must move `scale` times as far."""
    from thinc.api import Adam

    architecture, _ = HEADS["crf"]
    nlp = spacy.blank("zh")
    nlp.add_pipe(
        "bert_crf_ner",
        config=tagger_config(tiny_encoder, architecture, crf_learn_rate_scale=scale),
    )
    examples = train_examples(nlp, pd2014_docs[:4])
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("bert_crf_ner")
    learn_rate = 1e-4
    optimizer = Adam(learn_rate, L2=0.0, grad_clip=0.0, use_averages=False)
    transitions = head_module(ner.model).crf.transitions
    output = ner.model.get_ref("output")
    before_crf = transitions.detach().clone().numpy()
    before_output = output.get_param("W").copy()
    nlp.update(examples, sgd=optimizer)
    crf_step = numpy.abs(transitions.detach().numpy() - before_crf).max()
    output_step = numpy.abs(output.get_param("W") - before_output).max()
    assert output_step == pytest.approx(learn_rate, rel=0.05)
    assert crf_step == pytest.approx(scale * learn_rate, rel=0.05)


def test_factory_is_registered_by_entry_point():
    # A fresh interpreter that never imports spacy_bert_crf itself.
    code = "import spacy; nlp = spacy.blank('zh'); print(type(nlp.add_pipe('bert_crf_ner')).__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "BertCrfNer"


def test_make_doc_builds_char_tokens_without_spaces():
    doc = make_doc(spacy.blank("zh").vocab, list("人民网1月"))
    assert doc.text == "人民网1月" and len(doc) == 5


def test_add_label_after_initialize_is_an_error(tiny_encoder, pd2014_docs):
    nlp = build_nlp(tiny_encoder)
    nlp.initialize(lambda: train_examples(nlp, pd2014_docs[:2]))
    with pytest.raises(ValueError, match="already initialised"):
        nlp.get_pipe("bert_crf_ner").add_label("NEW")


def test_length_sorted_splits_cover_every_index_once():
    texts = ["x" * n for n in (5, 1, 3, 0, 4)]
    assert length_sorted_splits(texts, [0, 1, 2, 4], 2) == [[1, 2], [4, 0]]
    assert length_sorted_splits(texts, [0, 1], 4) == [[1], [0]]
    assert length_sorted_splits(texts, [2], 0) == [[2]]
