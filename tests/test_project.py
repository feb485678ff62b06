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

from conftest import ASSETS, ROOT

pytestmark = pytest.mark.slow

PROJECT_FILES = ["project.yml", "configs", "scripts", "assets", "components", "setup.cfg", "pyproject.toml", "README.md"]
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
}


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
            (tiny / f"{split}{suffix}").write_text("".join(head_lines(ASSETS / f"{source}{suffix}.gz", n)), encoding="utf-8")
    # The test split stays gzip-compressed, with an empty line in it, as users' files may be.
    for suffix in (".txt", "_TAG.txt"):
        lines = head_lines(ASSETS / f"pd2014/test{suffix}.gz", 20)
        with gzip.open(tiny / f"test{suffix}.gz", "wt", encoding="utf-8") as file:
            file.write("".join(lines[:10] + ["\n"] + lines[10:]))
    overrides = [arg for key, value in TINY_VARS.items() for arg in (f"--vars.{key}", str(value))]
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "project", "run", "all", str(root), *overrides],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


def test_all_writes_every_output(project):
    assert (project / "encoders/default/config.json").exists()
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
    wheels = [*(project / "packages").glob("spacy_bert_crf-*.whl"), *(project / "packages").glob("zh_bert_crf_ner-*/dist/*.whl")]
    torch_pin = next(line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch=="))
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", torch_pin, *map(str, wheels)], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr[-3000:]
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
