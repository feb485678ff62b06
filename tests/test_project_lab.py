"""The lab's workflows that need no trained model, end to end on a tiny slice:
`compare-corpora` on three corpora in their own formats, and `benchmark`.

Slow (minutes): marked `slow`; the README's test command and CI run it.
"""

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from projects import EXPERIMENT_VARS, TINY_VARS, read_json, run_project, tiny_project
from spacy.tokens import DocBin

from conftest import ASSETS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A tiny copy of the project with its offline encoder built."""
    root = tiny_project(tmp_path_factory.mktemp("lab_project"))
    run_project(root, "init-encoder", TINY_VARS)
    return root


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
        train = (tiny_corpora / f"corpus/{corpus}/train.spacy").read_bytes()
        assert result["train_sha256"] == hashlib.sha256(train).hexdigest()
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


def test_benchmark_command_measures_every_system_and_writes_its_tables(project):
    run_project(
        project,
        "benchmark",
        {**TINY_VARS, "benchmark_size": "quick", "benchmark_sentences": 16, "benchmark_pass_seconds": 0},
    )
    report = read_json(project / "metrics/benchmark.json")
    assert report["sentences"] == 16 and report["encoder"] == "encoders/default"
    summary, systems = report["summary"], report["systems"]
    for key in (
        "pipeline_chars_per_s",
        "pipeline_without_probabilities_chars_per_s",
        "torch_loop_chars_per_s",
        "our_decode_s",
        "pytorch_crf_decode_s",
        "spacy_ner_chars_per_s",
        "hf_pipeline_chars_per_s",
    ):
        assert summary[key] > 0, key
    assert 0 < summary["crf_decode_share"] < 1 and 0 < summary["entity_probability_share"] < 1
    assert systems["decoders"]["paths_equal"] is True and systems["decoders"]["shape"] == [64, 128, 9]
    for name in ("pipeline", "torch_loop"):
        assert systems[name]["train_chars_per_s"] > 0
    for name in ("pipeline", "torch_loop", "hf_pipeline"):
        assert systems[name]["passes"] == 3 and systems[name]["runs_per_pass"] >= 1
    # Each system ran in a process of its own, so each has its own peak.
    peaks = [system["peak_rss_mib"] for system in systems.values()]
    assert all(peak > 100 for peak in peaks) and len(set(peaks)) > 1
    assert summary["inference_mfu"] is None  # no known peak for a CPU
    markdown = (project / "docs/BENCHMARKS.md").read_text(encoding="utf-8")
    section = markdown.split("<!-- benchmark:start -->")[1].split("<!-- benchmark:end -->")[0]
    assert f"{report['systems']['pipeline']['chars_per_s']:,.0f}" in section
    assert "| (f) Hugging Face `token-classification` pipeline |" in section
