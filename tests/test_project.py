"""`spacy project run all` end to end on a tiny slice, the package in a fresh venv,
and the report's comparisons, figures and report on what `all` trained.

Slow (minutes): marked `slow`; the README's test command and CI run it.
"""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from projects import EXPERIMENT_VARS, TINY_VARS, head_lines, read_json, run_project, tiny_project
from spacy.util import load_config

from conftest import ASSETS, ROOT

pytestmark = pytest.mark.slow

# The comparisons run end to end here: an overlay (the softmax head, wordpiece input), every
# encoder kind (random, vectors, pretrained) and overrides. compare-layers and compare-crf-lr
# are the same script on variants that only set `layers` or an override, which
# tests/test_experiments.py reads from the config; the report must say they were not run.
COMPARISONS = ("compare-heads", "compare-init", "compare-inputs")
NOT_RUN = ("compare-layers", "compare-crf-lr")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A tiny copy of the project that has run `all`."""
    root = tiny_project(tmp_path_factory.mktemp("project"))
    run_project(root, "all", TINY_VARS)
    return root


@pytest.fixture(scope="module")
def experiments(project) -> Path:
    """The project after pretraining a tiny encoder, three comparisons, `figures` and `report`."""
    commands = ["experiment-" + name.split("-", 1)[1] for name in COMPARISONS]
    for name in ("pretrain-encoder", *commands, "figures", "report"):
        run_project(project, name, {**TINY_VARS, **EXPERIMENT_VARS})
    return project


def test_all_writes_every_output(project):
    assert (project / "encoders/default/config.json").exists()
    assert load_config(project / "training/default/model-best/config.cfg")["paths"]["encoder"] == "encoders/default"
    report = json.loads((project / "corpus/test.json").read_text(encoding="utf-8"))
    assert report["sentences"] == 21 and report["empty_sentences"] == 1
    metrics = json.loads((project / "metrics/default.json").read_text(encoding="utf-8"))
    assert {"ents_p", "ents_r", "ents_f", "ents_per_type", "ents_tag_acc"} <= set(metrics)
    predicted = (project / "predictions/default_test_TAG.txt").read_text(encoding="utf-8").split("\n")[:-1]
    with gzip.open(project / "assets/tiny/test.txt.gz", "rt", encoding="utf-8") as file:
        inputs = file.read().split("\n")[:-1]
    assert len(predicted) == len(inputs) == 21
    assert [len(line.split()) for line in predicted] == [len(line.split()) for line in inputs]
    assert all(tag == "O" or tag[1] == "_" for line in predicted for tag in line.split())
    assert list((project / "packages").glob("spacy_bert_crf-*.whl"))
    assert list((project / "packages").glob("zh_bert_crf_ner-*/dist/zh_bert_crf_ner-*.whl"))


def test_packaged_pipeline_loads_in_a_fresh_venv_offline(project, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    wheels = [
        *(project / "packages").glob("spacy_bert_crf-*.whl"),
        *(project / "packages").glob("zh_bert_crf_ner-*/dist/*.whl"),
    ]
    torch_pin = next(
        line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch==")
    )
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-compile", torch_pin, *map(str, wheels)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # The model needs the runtime only: the lab's dependencies are an extra, and none is installed.
    requires = subprocess.run(
        [python, "-c", "import importlib.metadata as m, json; print(json.dumps(m.requires('spacy-bert-crf')))"],
        capture_output=True,
        text=True,
        check=True,
    )
    lab_only = [
        item
        for item in json.loads(requires.stdout)
        if item.split()[0].split(">")[0] in ("matplotlib", "typer", "tqdm", "gensim")
    ]
    assert lab_only and all('extra == "lab"' in item for item in lab_only), lab_only
    assert subprocess.run([python, "-c", "import matplotlib"], capture_output=True).returncode != 0
    texts = [line.replace(" ", "").strip() for line in head_lines(ASSETS / "pd2014/test.txt.gz", 20)]
    code = (
        "import json, sys, spacy, spacy_bert_crf\n"
        "nlp = spacy.load('zh_bert_crf_ner')\n"
        "texts = json.loads(sys.stdin.read())\n"
        "print(json.dumps({'module': spacy_bert_crf.__file__,"
        " 'ents': [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]}))\n"
    )
    offline = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [python, "-c", code], input=json.dumps(texts), capture_output=True, text=True, cwd=tmp_path, env=offline
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout)
    assert loaded["module"].startswith(str(venv))
    in_project = spacy.load(project / "training/default/model-best")
    expected = [[[e.start_char, e.end_char, e.label_] for e in doc.ents] for doc in in_project.pipe(texts)]
    assert loaded["ents"] == expected
    assert any(loaded["ents"])


def test_experiments_train_every_variant_once(experiments):
    summaries = {name: read_json(experiments / f"metrics/experiments/{name}.json") for name in COMPARISONS}
    variants = {name: [result["variant"] for result in summary["variants"]] for name, summary in summaries.items()}
    assert variants == {
        "compare-heads": ["crf", "softmax"],
        "compare-init": ["random", "vectors_only", "pretrained"],
        "compare-inputs": [
            "default",
            "wordpiece_input",
            "no_bigrams",
            "no_bigram_corrections",
            "no_lexicon",
            "no_char_vectors",
            "no_lstm",
        ],
    }
    runs = {
        name: {result["variant"]: result["run"] for result in summary["variants"]}
        for name, summary in summaries.items()
    }
    # The default has one layer and vector-initialised embeddings: the CRF baseline, vectors
    # only and the inputs' default are one run, as are the two random inits.
    baseline = runs["compare-heads"]["crf"]
    assert [runs["compare-init"]["vectors_only"], runs["compare-inputs"]["default"]] == [baseline] * 2
    assert runs["compare-inputs"]["no_char_vectors"] == runs["compare-init"]["random"] != baseline
    assert len({run for experiment in runs.values() for run in experiment.values()}) == 9
    softmax = load_config(Path(experiments / runs["compare-heads"]["softmax"]) / "config.cfg")
    assert softmax["components"]["bert_crf_ner"]["model"]["@architectures"] == "spacy_bert_crf.SoftmaxTagger.v1"
    assert "Tok2VecTransformer" in (
        Path(experiments / runs["compare-inputs"]["wordpiece_input"]) / "config.cfg"
    ).read_text(encoding="utf-8")
    trained = {
        name: load_config(Path(experiments / run) / "model-best" / "config.cfg")
        for name, run in runs["compare-inputs"].items()
    }
    assert trained["no_bigrams"]["paths"]["bigram_vectors"] is None
    assert trained["default"]["paths"]["bigram_vectors"] is not None
    assert trained["no_lexicon"]["paths"]["lexicon"] is None
    assert trained["default"]["paths"]["lexicon"] is not None
    encoder_settings = {
        name: config["components"]["bert_crf_ner"]["model"]["tok2vec"] for name, config in trained.items()
    }
    assert encoder_settings["no_lstm"]["lstm_width"] == 0 < encoder_settings["default"]["lstm_width"]
    assert (
        encoder_settings["no_bigram_corrections"]["bigram_buckets"] == 0 < encoder_settings["default"]["bigram_buckets"]
    )
    for summary in summaries.values():
        assert (experiments / "metrics/experiments" / summary["figure"]).stat().st_size > 0
        for result in summary["variants"]:
            assert {"ents_f", "ents_tag_acc", "ents_per_type"} <= set(result["test"])
            assert read_json(Path(experiments / result["run"]) / "result.json")["test"] == result["test"]


def test_experiment_encoders_are_what_each_variant_names(experiments):
    encoders = experiments / "training/experiments/encoders"
    layers = {path.name: read_json(path / "config.json")["num_hidden_layers"] for path in encoders.iterdir()}
    assert sorted(n for name, n in layers.items() if name.startswith("vectors-")) == [1]
    assert [n for name, n in layers.items() if name.startswith("random-")] == [1]
    pretrained = read_json(experiments / "encoders/pretrained/pretraining.json")
    assert pretrained["steps"] == 3
    assert any(name.startswith("pretrained-encoders_pretrained") for name in layers)


def test_figures_match_the_pipe_and_the_conversion_reports(experiments):
    figures = read_json(experiments / "docs/figures/figures.json")
    nlp = spacy.load(experiments / "training/default/model-best")
    tags = nlp.get_pipe("bert_crf_ner").tags
    assert figures["crf_transitions"]["row_labels"] == ["START", *tags]
    assert figures["crf_transitions"]["col_labels"] == [*tags, "END"]
    for split in ("train", "dev", "test"):
        report = read_json(experiments / f"corpus/{split}.json")
        plotted = {label: count for label, count in figures["label_distribution"][split].items() if count}
        assert plotted == report["entities"]
    for name in ("label_distribution", "sentence_lengths", "crf_transitions", "training_curves", "confusion_matrix"):
        assert (experiments / f"docs/figures/{name}.png").stat().st_size > 0


def test_report_holds_the_measured_numbers(experiments):
    report = (experiments / "docs/REPORT.md").read_text(encoding="utf-8")
    for name in NOT_RUN:
        assert f"Not run: `spacy project run {name}` writes" in report
    for name in COMPARISONS:
        summary = read_json(experiments / f"metrics/experiments/{name}.json")
        for result in summary["variants"]:
            assert f"| {result['variant']} | {100 * result['test']['ents_p']:.2f} |" in report
    scores = read_json(experiments / "metrics/report_run.json")
    assert f"{scores['ents_calibration']['entities']} predicted entities; expected calibration error" in report
    assert (
        f"| all entities | {100 * scores['ents_p']:.2f} | {100 * scores['ents_r']:.2f} | {100 * scores['ents_f']:.2f} |"
        in report
    )
    assert (experiments / "docs/figures/predictions.html").read_text(encoding="utf-8").count('class="entity"') > 0
