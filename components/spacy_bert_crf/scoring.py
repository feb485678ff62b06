"""Scoring: entity P/R/F overall and per type, token (tag) accuracy, and the
calibration of the entities' probabilities.

Entity scores are spaCy's own (`Scorer.score_spans`), so they are comparable
with spaCy's `ner`. Token accuracy is the share of tokens whose BIO tag is
right, the figure the report gave (99.65% on its dev set). Its key is
`ents_tag_acc`: `token_acc` already names spaCy's tokenisation accuracy.
"""

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import numpy
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.util import registry
from wasabi import MarkdownRenderer

from .gold import tag_accuracy


def score_ner(examples: Iterable[Example], *, spans_key: Optional[str] = None, **kwargs) -> Dict[str, Any]:
    """`ents_p/r/f`, `ents_per_type` and `ents_tag_acc` for predicted Docs, and
    `ents_calibration` where the entities' probabilities are in `doc.spans[spans_key]`."""
    examples = list(examples)
    scores = Scorer.score_spans(examples, "ents", has_annotation=lambda doc: doc.has_annotation("ENT_IOB"), **kwargs)
    scores["ents_tag_acc"] = tag_accuracy(examples)
    if spans_key is not None:
        scores["ents_calibration"] = entity_calibration(examples, spans_key)
    return scores


def entity_calibration(examples: Iterable[Example], spans_key: str, n_bins: int = 10) -> Optional[Dict[str, Any]]:
    """Reliability of the entities' probabilities: per probability bin, how many
    predicted entities fall in it, their mean probability, and the share that
    is right (same span and type as a gold entity). `ece` is the expected
    calibration error: the entity-weighted mean gap between the two.
    None where no predicted entity has a probability.
    """
    probabilities, correct = [], []
    for example in examples:
        group = example.predicted.spans.get(spans_key)
        if group is None or "scores" not in group.attrs or not example.reference.has_annotation("ENT_IOB"):
            continue
        gold = {(ent.start_char, ent.end_char, ent.label_) for ent in example.reference.ents}
        for span, probability in zip(group, group.attrs["scores"]):
            probabilities.append(float(probability))
            correct.append((span.start_char, span.end_char, span.label_) in gold)
    if not probabilities:
        return None
    probabilities, correct = numpy.asarray(probabilities), numpy.asarray(correct)
    bins = numpy.minimum((probabilities * n_bins).astype(int), n_bins - 1)
    table = []
    for index in range(n_bins):
        in_bin = bins == index
        if in_bin.any():
            table.append(
                {
                    "low": index / n_bins,
                    "high": (index + 1) / n_bins,
                    "entities": int(in_bin.sum()),
                    "mean_probability": float(probabilities[in_bin].mean()),
                    "precision": float(correct[in_bin].mean()),
                }
            )
    ece = sum(row["entities"] * abs(row["precision"] - row["mean_probability"]) for row in table) / len(probabilities)
    return {"entities": len(probabilities), "ece": ece, "bins": table}


def evaluate_on(nlp: Language, data_path: Union[str, Path]) -> Dict[str, Any]:
    """`nlp.evaluate` on a gold DocBin: the predictions start from the raw text."""
    gold_docs = DocBin().from_disk(data_path).get_docs(nlp.vocab)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in gold_docs]
    scores = nlp.evaluate(examples)
    scores["docs"] = len(examples)
    return scores


@registry.scorers("spacy_bert_crf.ner_scorer.v1")
def make_ner_scorer() -> Callable[..., Dict[str, Any]]:
    return score_ner


def scores_table(scores: Dict[str, Any]) -> str:
    """A Markdown table of entity P/R/F (overall, then per type) and token accuracy."""
    rows = [_prf_row("all entities", scores["ents_p"], scores["ents_r"], scores["ents_f"])]
    for label, prf in sorted((scores.get("ents_per_type") or {}).items()):
        rows.append(_prf_row(label, prf["p"], prf["r"], prf["f"]))
    table = MarkdownRenderer().table(rows, ["", "P", "R", "F"], aligns=("l", "r", "r", "r"))
    return f"{table}\n\nToken (BIO tag) accuracy: {100 * scores['ents_tag_acc']:.2f}%"


def calibration_table(calibration: Dict[str, Any]) -> str:
    """A Markdown reliability table: per probability bin, entities, mean probability and precision."""
    rows = [
        [
            f"{row['low']:.1f}–{row['high']:.1f}",
            f"{row['entities']:,}",
            f"{100 * row['mean_probability']:.2f}",
            f"{100 * row['precision']:.2f}",
        ]
        for row in calibration["bins"]
    ]
    header = ["probability", "entities", "mean probability", "precision"]
    table = MarkdownRenderer().table(rows, header, aligns=("l", "r", "r", "r"))
    return (
        f"{table}\n\n{calibration['entities']} predicted entities; "
        f"expected calibration error {100 * calibration['ece']:.2f} points."
    )


def _prf_row(name: str, p: float, r: float, f: float) -> List[str]:
    return [name, f"{100 * p:.2f}", f"{100 * r:.2f}", f"{100 * f:.2f}"]
