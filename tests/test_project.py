"""`spacy project run all` end to end on a tiny slice, then the package in a fresh venv.

Slow (minutes): marked `slow`; the README's test command and CI run it.
"""

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.util import load_config

from conftest import ASSETS, ROOT

pytestmark = pytest.mark.slow

PROJECT_FILES = [
    "project.yml",
    "configs",
    "scripts",
    "assets",
    "components",
    "setup.cfg",
    "pyproject.toml",
    "README.md",
    "docs",
]
TINY_VARS = {
    "encoder_layers": 1,
    "encoder_hidden": 64,
    "encoder_heads": 2,
    "encoder_intermediate": 128,
    "train_text": "tiny/train.txt",
    "train_tags": "tiny/train_TAG.txt",
    "dev_text": "tiny/dev.txt",
    "dev_tags": "tiny/dev_TAG.txt",
    "test_text": "tiny/test.txt.gz",
    "test_tags": "tiny/test_TAG.txt.gz",
    "max_steps": 30,
    "eval_frequency": 15,
    # Character vectors the project trains itself (train-vectors), sized for the tiny encoder.
    "vector_texts": "assets/pd1998/dev.txt.gz",
    "vector_epochs": 1,
    "char_vectors": "vectors/chars.npz",
}
EXPERIMENT_VARS = {
    # compare-init's "pretrained": this project's own pretrain-encoder run (the default is the shipped encoder).
    "pretrained": "encoders/pretrained",
    "experiment_steps": 6,
    "experiment_eval_frequency": 3,
    "pretrain_steps": 3,
    "pretrain_minutes": 0,
    "figures_run": "training/default",
    "displacy_check": "check" if shutil.which("chromium") else "no-check",
}


COMPARISONS = ("compare-heads", "compare-layers", "compare-init", "compare-crf-lr", "compare-inputs")


def head_lines(path: Path, n: int):
    with gzip.open(path, "rt", encoding="utf-8") as file:
        return [next(file) for _ in range(n)]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project that has run `all` on 40/20/20 lines of the real data."""
    root = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
        else:
            shutil.copy(source, root / name)
    tiny = root / "assets" / "tiny"
    tiny.mkdir()
    for split, source, n in [("train", "pd1998/train", 40), ("dev", "pd1998/dev", 20)]:
        for suffix in (".txt", "_TAG.txt"):
            (tiny / f"{split}{suffix}").write_text(
                "".join(head_lines(ASSETS / f"{source}{suffix}.gz", n)), encoding="utf-8"
            )
    # The test split stays gzip-compressed, with an empty line in it, as users' files may be.
    for suffix in (".txt", "_TAG.txt"):
        lines = head_lines(ASSETS / f"pd2014/test{suffix}.gz", 20)
        with gzip.open(tiny / f"test{suffix}.gz", "wt", encoding="utf-8") as file:
            file.write("".join(lines[:10] + ["\n"] + lines[10:]))
    run_project(root, "train-vectors", TINY_VARS)
    # The configs read the bigram table from assets/vectors: this copy's is the
    # one train-vectors just made, a seventh of the shipped one's rows, so that
    # every training run saves and loads less.
    shutil.copy(root / "vectors" / "bigrams.npz", root / "assets" / "vectors" / "bigrams.npz")
    run_project(root, "all", TINY_VARS)
    return root


def run_project(root: Path, name: str, variables: dict) -> None:
    overrides = [arg for key, value in variables.items() for arg in (f"--vars.{key}", str(value))]
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "project", "run", name, str(root), *overrides],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def first_sentences(path: Path, n: int) -> str:
    """The first `n` blank-line-separated sentences of a CoNLL file (.gz or plain)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as file:
        return "\n\n".join(file.read().split("\n\n")[:n]) + "\n\n"


def first_json_objects(path: Path, n: int) -> list:
    """The first `n` JSON objects of a file of concatenated objects (one a line or pretty-printed)."""
    with gzip.open(path, "rt", encoding="utf-8") as file:
        text = file.read()
    decoder, objects, position = json.JSONDecoder(), [], 0
    while len(objects) < n:
        obj, position = decoder.raw_decode(text, position)
        objects.append(obj)
        position = len(text) - len(text[position:].lstrip())
    return objects


def write_gz(path: Path, text: str) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as file:
        file.write(text)


@pytest.fixture(scope="module")
def tiny_corpora(project) -> Path:
    """resume, weibo and cluener2020 cut to a few sentences each, in their own formats and file names."""
    root = project / "assets" / "tiny_corpora"
    resume, weibo, cluener = root / "resume", root / "weibo", root / "cluener2020"
    for directory in (resume, weibo, cluener):
        directory.mkdir(parents=True)
    write_gz(resume / "train.char.bmes.gz", first_sentences(ASSETS / "resume/train.char.bmes.gz", 30))
    for split in ("dev", "test"):
        (resume / f"{split}.char.bmes").write_text(
            first_sentences(ASSETS / f"resume/{split}.char.bmes", 10), encoding="utf-8"
        )
    write_gz(weibo / "weiboNER_2nd_conll.train.gz", first_sentences(ASSETS / "weibo/weiboNER_2nd_conll.train.gz", 30))
    for split in ("dev", "test"):
        text = first_sentences(ASSETS / f"weibo/weiboNER_2nd_conll.{split}", 10)
        (weibo / f"weiboNER_2nd_conll.{split}").write_text(text, encoding="utf-8")
    train = first_json_objects(ASSETS / "cluener2020/train.json.gz", 40)
    write_gz(cluener / "train.json.gz", "".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in train))
    dev = first_json_objects(ASSETS / "cluener2020/dev.json.gz", 10)
    write_gz(cluener / "dev.json.gz", "".join(json.dumps(obj, ensure_ascii=False, indent=4) + "\n" for obj in dev))
    run_project(
        project,
        "compare-corpora",
        {**TINY_VARS, **EXPERIMENT_VARS, "corpora_dir": "assets/tiny_corpora", "corpus_steps": 6},
    )
    return project


def test_every_corpus_converts_and_trains(tiny_corpora):
    summary = read_json(tiny_corpora / "metrics/experiments/compare-corpora.json")
    assert [result["variant"] for result in summary["variants"]] == ["resume", "weibo", "cluener2020"]
    for result in summary["variants"]:
        corpus = result["variant"]
        assert result["test_data"] == f"corpus/{corpus}/test.spacy"
        test_report = read_json(tiny_corpora / f"corpus/{corpus}/test.json")
        assert test_report["repairs_total"] == 0
        assert set(test_report["entities"]) <= set(result["test"]["ents_per_type"])
    train_report = read_json(tiny_corpora / "corpus/cluener2020/train.json")
    held_out = DocBin().from_disk(tiny_corpora / "corpus/cluener2020/dev.spacy")
    assert train_report["sentences"] == 40 and len(held_out) == 4
    assert len(DocBin().from_disk(tiny_corpora / "corpus/cluener2020/train.spacy")) == 36
    table = (tiny_corpora / "metrics/experiments/compare-corpora.md").read_text(encoding="utf-8")
    header = table.split("\n")[0]
    # The corpora have different entity types: no per-type columns.
    assert "| resume |" in table and "| test F | token acc. |" in header


def test_benchmark_command_writes_its_tables(project):
    run_project(project, "benchmark", {**TINY_VARS, "benchmark_size": "quick", "benchmark_sentences": 16})
    report = read_json(project / "metrics/benchmark.json")
    assert report["sentences"] == 16 and report["encoder"] == "encoders/default"
    markdown = (project / "docs/BENCHMARKS.md").read_text(encoding="utf-8")
    section = markdown.split("<!-- benchmark:start -->")[1].split("<!-- benchmark:end -->")[0]
    assert f"{report['systems']['pipeline']['chars_per_s']:,.0f}" in section
    assert "| (f) Hugging Face `token-classification` pipeline |" in section


@pytest.fixture(scope="module")
def experiments(project) -> Path:
    """The project after pretraining a tiny encoder, the five comparisons, `figures` and `report`."""
    for name in ("init-encoder", "pretrain-encoder", *COMPARISONS, "figures", "report"):
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
        [python, "-m", "pip", "install", "-q", torch_pin, *map(str, wheels)], capture_output=True, text=True
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


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_experiments_train_every_variant_once(experiments):
    summaries = {name: read_json(experiments / f"metrics/experiments/{name}.json") for name in COMPARISONS}
    variants = {name: [result["variant"] for result in summary["variants"]] for name, summary in summaries.items()}
    assert variants == {
        "compare-heads": ["crf", "softmax"],
        "compare-layers": ["1_layer", "2_layers", "4_layers", "6_layers"],
        "compare-init": ["random", "vectors_only", "pretrained"],
        "compare-crf-lr": ["crf_lr_x1", "crf_lr_x10", "crf_lr_x100"],
        "compare-inputs": ["default", "wordpiece_input", "no_bigrams", "no_char_vectors"],
    }
    runs = {
        name: {result["variant"]: result["run"] for result in summary["variants"]}
        for name, summary in summaries.items()
    }
    # The default has one layer and vector-initialised embeddings: the CRF baseline, 1 layer,
    # vectors only, CRF lr x100 and the inputs' default are one run, as are the two random inits.
    baseline = runs["compare-heads"]["crf"]
    shared = [
        runs["compare-layers"]["1_layer"],
        runs["compare-init"]["vectors_only"],
        runs["compare-crf-lr"]["crf_lr_x100"],
        runs["compare-inputs"]["default"],
    ]
    assert shared == [baseline] * 4
    assert runs["compare-inputs"]["no_char_vectors"] == runs["compare-init"]["random"] != baseline
    assert len({run for experiment in runs.values() for run in experiment.values()}) == 11
    assert "Tok2VecTransformer" in (
        Path(experiments / runs["compare-inputs"]["wordpiece_input"]) / "config.cfg"
    ).read_text(encoding="utf-8")
    trained = {
        name: load_config(Path(experiments / run) / "model-best" / "config.cfg")
        for name, run in runs["compare-inputs"].items()
    }
    assert trained["no_bigrams"]["paths"]["bigram_vectors"] is None
    assert trained["default"]["paths"]["bigram_vectors"] is not None
    for summary in summaries.values():
        assert (experiments / "metrics/experiments" / summary["figure"]).stat().st_size > 0
        for result in summary["variants"]:
            assert {"ents_f", "ents_tag_acc", "ents_per_type"} <= set(result["test"])
            assert read_json(Path(experiments / result["run"]) / "result.json")["test"] == result["test"]


def test_experiment_encoders_are_what_each_variant_names(experiments):
    encoders = experiments / "training/experiments/encoders"
    layers = {path.name: read_json(path / "config.json")["num_hidden_layers"] for path in encoders.iterdir()}
    assert sorted(n for name, n in layers.items() if name.startswith("vectors-")) == [1, 2, 4, 6]
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
    assert "Not run" not in report
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
