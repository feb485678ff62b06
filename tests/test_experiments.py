"""The experiments config, run identity, metrics tables and the generated report.

Training every variant for real is the slow project test's job
(tests/test_project.py); here the pieces around it are checked quickly.
"""

import json
import shutil

import pytest
from spacy.util import load_config

from conftest import ROOT
from spacy_bert_crf.lab.encoders import EncoderShape
from spacy_bert_crf.lab.experiments import (
    Variant,
    _run_key,
    load_experiment,
    load_settings,
    metrics_table,
)
from spacy_bert_crf.lab.report import render_report

EXPERIMENTS_CONFIG = ROOT / "configs" / "experiments.cfg"


@pytest.fixture(scope="module")
def experiments_config():
    return load_config(EXPERIMENTS_CONFIG, interpolate=True)


def test_the_comparisons_are_the_reports_and_the_inputs(experiments_config):
    def variants(name):
        return load_experiment(experiments_config, name).variants

    heads = variants("compare-heads")
    assert [(v.name, v.config, v.overlay) for v in heads] == [
        ("crf", "configs/default.cfg", None),
        ("softmax", "configs/default.cfg", "configs/overlays/softmax_head.cfg"),
    ]
    assert [v.layers for v in variants("compare-layers")] == [1, 2, 4, 6]
    assert [v.encoder for v in variants("compare-init")] == ["random", "vectors", "pretrained"]
    inputs = {v.name: v for v in variants("compare-inputs")}
    assert list(inputs) == [
        "default",
        "wordpiece_input",
        "no_bigrams",
        "no_bigram_corrections",
        "no_lexicon",
        "no_char_vectors",
        "no_lstm",
    ]
    assert inputs["wordpiece_input"].overlay == "configs/overlays/wordpiece_input.cfg"
    buckets = "components.bert_crf_ner.model.tok2vec.bigram_buckets"
    # Corrections without the table they correct are refused, so no_bigrams drops both.
    assert inputs["no_bigrams"].overrides == {"paths.bigram_vectors": None, buckets: 0}
    assert inputs["no_bigram_corrections"].overrides == {buckets: 0}
    assert inputs["no_lexicon"].overrides == {"paths.lexicon": None}
    assert inputs["no_lstm"].overrides == {"components.bert_crf_ner.model.tok2vec.lstm_width": 0}
    assert [v.encoder for v in inputs.values()] == ["vectors"] * 5 + ["random", "vectors"]
    scales = [v.overrides["components.bert_crf_ner.model.crf_learn_rate_scale"] for v in variants("compare-crf-lr")]
    assert scales == [1.0, 10.0, 100.0]


def test_settings_and_command_line_overrides(experiments_config):
    settings = load_settings(experiments_config)
    assert settings.shape == EncoderShape(layers=1, hidden=256, heads=4, intermediate=1024)
    assert settings.char_vectors == "assets/vectors/chars.npz"
    overridden = load_config(
        EXPERIMENTS_CONFIG,
        overrides={"variables.base_config": "configs/bert_crf.cfg", "experiment.max_steps": 2000},
        interpolate=True,
    )
    assert load_settings(overridden).max_steps == 2000
    assert {v.config for v in load_experiment(overridden, "compare-layers").variants} == {"configs/bert_crf.cfg"}


def test_unknown_experiment_and_encoder_kind_are_named(experiments_config):
    with pytest.raises(ValueError, match="No experiment 'compare-everything'.*compare-heads"):
        load_experiment(experiments_config, "compare-everything")
    with pytest.raises(ValueError, match="experiment"):
        load_experiment(experiments_config, "experiment")
    with pytest.raises(ValueError, match="variant odd: encoder must be one of"):
        Variant(name="odd", config="configs/default.cfg", encoder="distilled")


def test_a_run_is_identified_by_the_config_it_trains(tmp_path):
    config = load_config(ROOT / "configs" / "default.cfg", interpolate=False)
    base = {"paths.train": "corpus/train.spacy", "training.max_steps": 300}
    train = tmp_path / "train.spacy"
    train.write_bytes(b"docs")
    key = _run_key(config, "default", base, [train])
    assert key.startswith("default-")
    # Setting a value to its default trains the same pipeline: the same run.
    assert (
        _run_key(config, "default", {**base, "components.bert_crf_ner.model.crf_learn_rate_scale": 100.0}, [train])
        == key
    )
    assert (
        _run_key(config, "default", {**base, "components.bert_crf_ner.model.crf_learn_rate_scale": 10.0}, [train])
        != key
    )
    assert _run_key(config, "default", {**base, "training.max_steps": 301}, [train]) != key
    assert _run_key(config, "default", {**base, "paths.bigram_vectors": None}, [train]) != key
    train.write_bytes(b"other docs")
    assert _run_key(config, "default", base, [train]) != key


def scores(f: float) -> dict:
    return {
        "ents_p": f + 0.01,
        "ents_r": f - 0.01,
        "ents_f": f,
        "ents_tag_acc": 0.9,
        "ents_per_type": {"LOC": {"p": f, "r": f, "f": f}, "PER": {"p": f, "r": f, "f": f}},
        "docs": 20,
    }


def experiment_summary(name: str, variants: dict, runs_dir) -> dict:
    return {
        "experiment": name,
        "title": f"Title of {name}",
        "settings": {"max_steps": 6, "eval_frequency": 3, "dev_limit": 500, "test": "corpus/test.spacy"},
        "wall_seconds": 90.0,
        "figure": f"{name}.png",
        "variants": [
            {
                "variant": variant,
                "run": str(runs_dir / run),
                "best_dev_f": 0.5,
                "best_dev_step": 3,
                "train_seconds": 30.0,
                "test": scores(f),
            }
            for variant, (run, f) in variants.items()
        ],
    }


def test_report_tells_comparisons_on_other_training_data(report_inputs):
    root = report_inputs
    figures = root / "docs" / "figures" / "figures.json"
    figures.write_text(json.dumps({**json.loads(figures.read_text()), "corpus_sha256": {"train": "a" * 64}}))
    for name, digests in [("compare-heads", ["a" * 64, "a" * 64]), ("compare-crf-lr", ["b" * 64, None])]:
        path = root / "metrics" / "experiments" / f"{name}.json"
        summary = json.loads(path.read_text())
        for result, digest in zip(summary["variants"], digests):
            result["train_sha256"] = digest
        path.write_text(json.dumps(summary))

    def section(text, name):
        return text.split(f"### `{name}`")[1].split("### ")[0]

    args = [root / "metrics" / "run.json", root / "docs" / "figures", root / "metrics" / "experiments"]
    text = render_report(root / "REPORT.md", "training/base", *args)
    assert "section 1" not in section(text, "compare-heads")
    assert "is unknown**: compare its variants with one another" in section(text, "compare-crf-lr")
    summary = json.loads((root / "metrics" / "experiments" / "compare-crf-lr.json").read_text())
    summary["variants"][1]["train_sha256"] = "b" * 64
    (root / "metrics" / "experiments" / "compare-crf-lr.json").write_text(json.dumps(summary))
    text = render_report(root / "REPORT.md", "training/base", *args)
    assert "Trained on another training corpus than section 1's (sha256 bbbbbbbbbbbb, not aaaaaaaaaaaa)" in text


def test_metrics_table_rows(tmp_path):
    summary = experiment_summary("compare-heads", {"crf": ("a", 0.6), "softmax": ("b", 0.4)}, tmp_path)
    table = metrics_table(summary).splitlines()
    assert (
        table[0]
        == "| variant | test P | test R | test F | LOC F | PER F | token acc. | best dev F (step) | train time |"
    )
    assert table[2] == "| crf | 61.00 | 59.00 | 60.00 | 60.00 | 60.00 | 90.00 | 50.00 (3) | 0.5 min |"
    assert table[3].startswith("| softmax | 41.00 | 39.00 | 40.00 |")


@pytest.fixture
def report_inputs(tmp_path):
    """The files the report reads, as the project commands write them."""
    figures = tmp_path / "docs" / "figures"
    figures.mkdir(parents=True)
    figure_data = {
        "label_distribution": {"train": {"LOC": 10, "PER": 5}, "test": {"LOC": 2, "PER": 0}},
        "sentence_lengths": {"train": {"count": 15, "mean": 40.0, "std": 10.0, "mean_plus_3std": 70.0, "max": 90}},
        "crf_transitions": {"row_labels": [], "col_labels": [], "matrix": []},
        "confusion_matrix": {"split": "test"},
    }
    (figures / "figures.json").write_text(json.dumps(figure_data), encoding="utf-8")
    experiments = tmp_path / "metrics" / "experiments"
    experiments.mkdir(parents=True)
    runs = tmp_path / "training"
    for name, variants in [
        ("compare-heads", {"crf": ("base", 0.6), "softmax": ("softmax", 0.4)}),
        ("compare-crf-lr", {"crf_lr_x1": ("x1", 0.5), "crf_lr_x10": ("base", 0.6)}),
    ]:
        (experiments / f"{name}.json").write_text(
            json.dumps(experiment_summary(name, variants, runs)), encoding="utf-8"
        )
        shutil.copyfile(ROOT / "docs" / "BENCHMARKS.md", experiments / f"{name}.png")
    run_scores = tmp_path / "metrics" / "run.json"
    run_scores.write_text(json.dumps({**scores(0.6), "data": "corpus/test.spacy"}), encoding="utf-8")
    pretraining = tmp_path / "encoders" / "pretrained"
    pretraining.mkdir(parents=True)
    summary = {
        "encoder": "encoders/default",
        "texts": ["a.txt.gz"],
        "corpus_tokens": 81920,
        "epochs": 2.0,
        "steps": 40,
        "tokens": 163840,
        "seconds": 169.1,
        "device": "cpu",
        "runs": [{"steps": 30}, {"steps": 10}],
    }
    (pretraining / "pretraining.json").write_text(json.dumps(summary), encoding="utf-8")
    log = [{"step": 10, "loss": 9.5}, {"step": 40, "loss": 7.4}]
    (pretraining / "pretraining_log.jsonl").write_text("\n".join(map(json.dumps, log)) + "\n", encoding="utf-8")
    return tmp_path


def test_report_is_rendered_from_the_json(report_inputs):
    root = report_inputs
    text = render_report(
        root / "docs" / "REPORT.md",
        "training/base",
        root / "metrics" / "run.json",
        root / "docs" / "figures",
        root / "metrics" / "experiments",
        root / "encoders" / "pretrained",
        root / "docs" / "figures" / "predictions.check.json",
    )
    assert (root / "docs" / "REPORT.md").read_text(encoding="utf-8") == text
    assert "| LOC | 10 | 2 |" in text and "| PER | 5 | 0 |" in text
    assert "| train | 15 | 40.0 | 10.0 | 70.0 | 90 |" in text
    assert "| all entities | 61.00 | 59.00 | 60.00 |" in text
    assert "| crf | 61.00 | 59.00 | 60.00 |" in text and "| crf_lr_x1 | 51.00 |" in text
    # crf_lr_x10 is compare-heads' crf run: said so, and its training time counted once.
    assert "crf_lr_x10: the identical run of an experiment above" in text
    assert "Training time of its 2 runs: 1.0 min; crf_lr_x10:" in text
    assert "2 of 5 experiments run: 3 distinct training runs, 1.5 min of training together." in text
    assert "### `compare-layers`\n\nNot run" in text and "### `compare-init`\n\nNot run" in text
    assert (
        "(81,920 characters): 40 steps in 2 run(s), 163,840 tokens (2.00 epochs) in 2.8 min on cpu; MLM loss 9.50 at step 10 → 7.40 at step 40"
        in text
    )
    assert "![CRF transitions](figures/crf_transitions.png)" in text
    # The experiments' figures are copied next to the others, so that docs/ stands alone.
    assert "![Title of compare-heads](figures/experiments/compare-heads.png)" in text
    assert (root / "docs" / "figures" / "experiments" / "compare-heads.png").exists()
    assert "Not rendered" in text
