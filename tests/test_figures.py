"""The report's figures: each PNG is drawn, and the data it returns is the data it was given."""

import gzip
import hashlib
import json
import subprocess
import sys
from itertools import islice

import numpy
import pytest
import spacy
from matplotlib.image import imread
from spacy.language import Language
from spacy.tokens import DocBin
from spacy.training import Example

from conftest import ASSETS, ROOT, tagger_config
from spacy_bert_crf.architectures import head_module
from spacy_bert_crf.formats import read_two_file
from spacy_bert_crf.lab.figures import (
    END,
    START,
    confusion_matrix,
    crf_transitions,
    label_distribution,
    sentence_lengths,
    tag_confusion,
    training_curves,
    transition_heatmap,
    write_report_figures,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Lines of the pd2014 test files in each split of the small corpus.
SPLITS = {"train": (0, 40), "dev": (40, 60), "test": (60, 80)}


def assert_png(path):
    """A readable PNG that is not one flat colour."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert imread(path).std() > 0


def ents(doc):
    return [(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents]


def build_nlp(encoder, architecture="spacy_bert_crf.CRFTagger.v1"):
    nlp = spacy.blank("zh")
    nlp.add_pipe("bert_crf_ner", config=tagger_config(encoder, architecture))
    return nlp


def train_briefly(nlp, gold_docs, steps=3):
    """Initialise on every gold Doc (so every label is known), update on the first four."""
    examples = [Example.from_dict(nlp.make_doc(doc.text), {"entities": ents(doc)}) for doc in gold_docs]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps):
        nlp.update(examples[:4], sgd=optimizer)
    return nlp


def log_record(step, loss, score, **extra_losses):
    return {
        "step": step,
        "epoch": 0,
        "seconds": step / 10,
        "words": 100 * step,
        "losses": {"bert_crf_ner": loss, **extra_losses},
        "scores": {"ents_f": score, "ents_p": score, "ents_r": score, "ents_tag_acc": 0.9, "ents_per_type": {}},
        "score": score,
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Small train/dev/test splits of pd2014, converted as `convert` does: {split: (docs, report)}."""
    directory = tmp_path_factory.mktemp("pd2014_slices")
    vocab = spacy.blank("zh").vocab
    splits = {}
    for split, (start, stop) in SPLITS.items():
        for suffix in ("", "_TAG"):
            with gzip.open(ASSETS / "pd2014" / f"test{suffix}.txt.gz", "rt", encoding="utf-8") as lines:
                (directory / f"{split}{suffix}.txt").write_text("".join(islice(lines, start, stop)), encoding="utf-8")
        docs, report = read_two_file(directory / f"{split}.txt", directory / f"{split}_TAG.txt", vocab)
        splits[split] = (docs, report.to_dict())
    return splits


@pytest.fixture(scope="module")
def trained_nlp(tiny_encoder, corpus):
    return train_briefly(build_nlp(tiny_encoder), corpus["train"][0])


@pytest.fixture(scope="module")
def softmax_nlp(tiny_encoder, corpus):
    return train_briefly(build_nlp(tiny_encoder, "spacy_bert_crf.SoftmaxTagger.v1"), corpus["train"][0], steps=0)


def test_transition_heatmap_is_the_pipes_crf(trained_nlp, tmp_path):
    ner = trained_nlp.get_pipe("bert_crf_ner")
    tags, transitions, start, end = crf_transitions(trained_nlp)
    crf = head_module(ner.model).crf
    assert tags == ner.tags
    assert transitions.shape == (len(tags), len(tags))
    numpy.testing.assert_array_equal(transitions, crf.transitions.detach().numpy())

    drawn = transition_heatmap(tags, transitions, start, end, tmp_path / "crf.png")
    assert drawn["row_labels"] == [START, *ner.tags]
    assert drawn["col_labels"] == [*ner.tags, END]
    matrix = numpy.array(drawn["matrix"], dtype=float)  # None (the START→END cell) becomes NaN
    numpy.testing.assert_array_equal(matrix[1:, :-1], crf.transitions.detach().numpy())
    numpy.testing.assert_array_equal(matrix[0, :-1], crf.start_transitions.detach().numpy())
    numpy.testing.assert_array_equal(matrix[1:, -1], crf.end_transitions.detach().numpy())
    assert drawn["matrix"][0][-1] is None
    assert_png(tmp_path / "crf.png")


def test_softmax_pipe_has_no_transitions(softmax_nlp):
    with pytest.raises(ValueError, match="SoftmaxHead, not a CRF"):
        crf_transitions(softmax_nlp)


def test_label_distribution_counts_are_the_reports(corpus, tmp_path):
    reports = {split: report for split, (_, report) in corpus.items()}
    plotted = label_distribution({"train": reports["train"]}, tmp_path / "one.png")
    assert plotted == {"train": reports["train"]["entities"]}
    assert_png(tmp_path / "one.png")

    plotted = label_distribution(reports, tmp_path / "all.png")
    labels = sorted({label for report in reports.values() for label in report["entities"]})
    for split, report in reports.items():
        assert list(plotted[split]) == labels
        assert {label: n for label, n in plotted[split].items() if n} == report["entities"]
        assert sum(plotted[split].values()) == report["entities_total"]
    assert_png(tmp_path / "all.png")


def test_confusion_matrix_rows_are_normalised(tmp_path):
    tags = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    counts = numpy.random.default_rng(0).integers(0, 50, size=(5, 5))
    counts[3] = 0  # a tag with no gold tokens
    normalised = confusion_matrix(tags, counts, tmp_path / "confusion.png")
    numpy.testing.assert_allclose(normalised.sum(axis=1), [1, 1, 1, 0, 1])
    numpy.testing.assert_allclose(normalised[2], counts[2] / counts[2].sum())
    assert_png(tmp_path / "confusion.png")

    perfect = confusion_matrix(tags, numpy.diag([90, 5, 7, 0, 3]), tmp_path / "perfect.png")
    numpy.testing.assert_array_equal(perfect, numpy.diag([1.0, 1.0, 1.0, 0.0, 1.0]))


class GoldOracle:
    """A "perfect" component: sets each Doc's entities to those of the gold Doc with its text."""

    def __init__(self, tags, gold_docs):
        self.tags = tags
        self.gold = {doc.text: ents(doc) for doc in gold_docs}

    def __call__(self, doc):
        doc.ents = [doc.char_span(start, end, label) for start, end, label in self.gold[doc.text]]
        return doc


def test_tag_confusion_of_a_perfect_predictor_is_diagonal(trained_nlp, corpus):
    gold_docs = corpus["test"][0]
    tags = trained_nlp.get_pipe("bert_crf_ner").tags
    Language.factory("figures_test_oracle", func=lambda nlp, name: GoldOracle(tags, gold_docs))
    nlp = spacy.blank("zh")
    nlp.add_pipe("figures_test_oracle", name="oracle")
    found_tags, counts = tag_confusion(nlp, gold_docs, pipe_name="oracle")
    assert found_tags == tags
    assert numpy.count_nonzero(counts - numpy.diag(numpy.diag(counts))) == 0
    assert counts.sum() == sum(len(doc) for doc in gold_docs)
    assert all(numpy.diag(counts)[:3])  # O, B-X and I-X of the first label all occur


def test_tag_confusion_of_a_trained_pipe(trained_nlp, corpus):
    gold_docs = corpus["test"][0]
    tags, counts = tag_confusion(trained_nlp, gold_docs, batch_size=8)
    assert tags == trained_nlp.get_pipe("bert_crf_ner").tags
    assert counts.shape == (len(tags), len(tags))
    gold_o = sum(token.ent_iob_ == "O" for doc in gold_docs for token in doc)
    assert counts[tags.index("O")].sum() == gold_o
    assert counts.sum() == sum(len(doc) for doc in gold_docs)


def test_tag_confusion_needs_one_token_per_gold_token(trained_nlp):
    gold = spacy.blank("en")("Beijing is big")
    with pytest.raises(ValueError, match="tokens differ from the gold tokens"):
        tag_confusion(trained_nlp, [gold])


def test_sentence_length_stats_are_numpys(tmp_path):
    lengths = {"train": [3, 10, 25, 40, 41, 120], "test": [7, 8, 300]}
    stats = sentence_lengths(lengths, tmp_path / "lengths.png")
    assert list(stats) == ["train", "test"]
    for split, values in lengths.items():
        mean, std = numpy.mean(values), numpy.std(values)
        assert stats[split]["mean"] == pytest.approx(mean)
        assert stats[split]["std"] == pytest.approx(std)
        assert stats[split]["mean_plus_3std"] == pytest.approx(mean + 3 * std)
        assert stats[split]["max"] == max(values)
        assert stats[split]["count"] == len(values)
    assert_png(tmp_path / "lengths.png")
    with pytest.raises(ValueError, match=r"\['dev'\]"):
        sentence_lengths({"train": [1, 2], "dev": []}, tmp_path / "empty.png")


def test_training_curves_return_the_plotted_points(tmp_path):
    logs = {
        "crf": [log_record(0, 5.0, 0.0), log_record(200, 2.0, 0.5), log_record(400, 1.0, 0.75)],
        # Two trained components: the loss is their sum. A None score leaves a gap.
        "softmax": [log_record(0, 3.0, None, tok2vec=1.0), log_record(200, 1.5, 0.25, tok2vec=0.5)],
    }
    drawn = training_curves(logs, tmp_path / "curves.png", title="CRF vs softmax")
    assert drawn == {
        "score": "ents_f",
        "runs": {
            "crf": {"step": [0, 200, 400], "loss": [5.0, 2.0, 1.0], "score": [0.0, 50.0, 75.0]},
            "softmax": {"step": [0, 200], "loss": [4.0, 2.0], "score": [None, 25.0]},
        },
    }
    assert_png(tmp_path / "curves.png")
    tag_acc = training_curves(logs, tmp_path / "acc.png", score="ents_tag_acc")
    assert tag_acc["runs"]["crf"]["score"] == pytest.approx([90.0] * 3)
    with pytest.raises(ValueError, match="no score 'speed'"):
        training_curves(logs, tmp_path / "speed.png", score="speed")


@pytest.fixture(scope="module")
def corpus_dir(corpus, tmp_path_factory):
    """A corpus directory as `convert` writes it: DocBins and JSON reports."""
    directory = tmp_path_factory.mktemp("corpus")
    for split, (docs, report) in corpus.items():
        DocBin(docs=docs).to_disk(directory / f"{split}.spacy")
        (directory / f"{split}.json").write_text(json.dumps(report), encoding="utf-8")
    return directory


def test_cli_writes_every_figure(trained_nlp, corpus, corpus_dir, tmp_path):
    trained_nlp.to_disk(tmp_path / "model")
    log = tmp_path / "log.jsonl"
    records = [log_record(step, 4.0 / (step + 1), step / 1000) for step in (0, 240, 480)]
    log.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    output = tmp_path / "figures"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "figures.py"), tmp_path / "model", corpus_dir, log, output],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    names = ["label_distribution", "sentence_lengths", "crf_transitions", "training_curves", "confusion_matrix"]
    for name in names:
        assert_png(output / f"{name}.png")
    figures = json.loads((output / "figures.json").read_text(encoding="utf-8"))
    assert list(figures) == ["corpus_sha256", *names]
    assert figures["corpus_sha256"] == {
        split: hashlib.sha256((corpus_dir / f"{split}.spacy").read_bytes()).hexdigest() for split in SPLITS
    }
    assert figures["label_distribution"]["test"] == {
        label: corpus["test"][1]["entities"].get(label, 0) for label in figures["label_distribution"]["test"]
    }
    assert figures["sentence_lengths"]["dev"]["count"] == SPLITS["dev"][1] - SPLITS["dev"][0]
    assert figures["crf_transitions"]["row_labels"] == [START, *trained_nlp.get_pipe("bert_crf_ner").tags]
    assert figures["training_curves"]["runs"][str(log)]["step"] == [0, 240, 480]
    assert numpy.array(figures["confusion_matrix"]["counts"]).sum() == sum(len(doc) for doc in corpus["test"][0])


def test_softmax_pipeline_gets_every_figure_but_the_crfs(softmax_nlp, corpus_dir, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(log_record(0, 1.0, 0.5)) + "\n", encoding="utf-8")
    figures = write_report_figures(softmax_nlp, corpus_dir, log, tmp_path / "figures", test_split="dev")
    assert "crf_transitions" not in figures
    assert not (tmp_path / "figures" / "crf_transitions.png").exists()
    assert figures["confusion_matrix"]["split"] == "dev"
    assert sorted(path.name for path in (tmp_path / "figures").iterdir()) == [
        "confusion_matrix.png",
        "figures.json",
        "label_distribution.png",
        "sentence_lengths.png",
        "training_curves.png",
    ]
