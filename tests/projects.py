"""A tiny copy of the project for the end-to-end tests (tests/test_project*.py).

`tiny_project` copies the project into a scratch directory, cuts the data to
40/20/20 lines of the real corpora, trains its own character and bigram
vectors on them, and leaves the rest to the tests' `spacy project run` calls.
"""

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ASSETS, ROOT

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
    # Still inside the default's 150 warm-up steps: by step 60 the BiLSTM-topped
    # model finds entities (dev F about 21), which the packaged model's test needs.
    "max_steps": 60,
    "eval_frequency": 30,
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


def head_lines(path: Path, n: int):
    with gzip.open(path, "rt", encoding="utf-8") as file:
        return [next(file) for _ in range(n)]


def tiny_project(root: Path) -> Path:
    """The project copied to `root`, its data cut to a tiny slice, with vectors trained on it."""
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


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
