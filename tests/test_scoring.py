"""Calibration of the entity probabilities, on hand-made predictions."""

import numpy
import pytest
import spacy
from spacy.tokens import SpanGroup
from spacy.training import Example

from spacy_bert_crf.scoring import calibration_table, entity_calibration, score_ner


def example(nlp, text, gold, predicted, probabilities):
    """An Example whose prediction has `predicted` as entities with `probabilities`."""
    reference = nlp.make_doc(text)
    reference.ents = [reference.char_span(start, end, label) for start, end, label in gold]
    doc = nlp.make_doc(text)
    doc.ents = [doc.char_span(start, end, label) for start, end, label in predicted]
    doc.spans["ents"] = SpanGroup(
        doc, name="ents", spans=list(doc.ents), attrs={"scores": numpy.asarray(probabilities, dtype="float32")}
    )
    return Example(doc, reference)


def test_calibration_bins_count_right_entities():
    nlp = spacy.blank("zh")
    examples = [
        # right, right type wrong, right: probabilities 0.95, 0.91, 0.35
        example(nlp, "我在北京见张三", [(2, 4, "LOC"), (5, 7, "PER")], [(2, 4, "LOC"), (5, 7, "LOC")], [0.95, 0.91]),
        example(nlp, "上海很大", [(0, 2, "LOC")], [(0, 2, "LOC")], [0.35]),
        # a wrong span, 1.0 exactly: the top bin
        example(nlp, "上海很大", [(0, 2, "LOC")], [(0, 1, "LOC")], [1.0]),
    ]
    calibration = entity_calibration(examples, "ents")
    assert calibration["entities"] == 4
    bins = {(row["low"], row["high"]): row for row in calibration["bins"]}
    assert set(bins) == {(0.3, 0.4), (0.9, 1.0)}
    top = bins[(0.9, 1.0)]
    assert top["entities"] == 3 and top["precision"] == pytest.approx(1 / 3)
    assert top["mean_probability"] == pytest.approx((0.95 + 0.91 + 1.0) / 3, abs=1e-6)
    assert bins[(0.3, 0.4)]["precision"] == 1.0
    expected_ece = (3 * abs(1 / 3 - (0.95 + 0.91 + 1.0) / 3) + abs(1.0 - 0.35)) / 4
    assert calibration["ece"] == pytest.approx(expected_ece, abs=1e-6)
    table = calibration_table(calibration)
    assert "| 0.9–1.0 | 3 | 95.33 | 33.33 |" in table


def test_calibration_needs_probabilities():
    nlp = spacy.blank("zh")
    plain = nlp.make_doc("北京")
    plain.ents = [plain.char_span(0, 2, "LOC")]
    examples = [Example(plain, plain.copy())]
    assert entity_calibration(examples, "ents") is None
    assert score_ner(examples, spans_key="ents")["ents_calibration"] is None
    assert "ents_calibration" not in score_ner(examples)
