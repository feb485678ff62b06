"""Shared fixtures: a tiny encoder the tests build themselves, and slices of real data."""

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
import spacy
import typer
from spacy.training import Example
from typer.testing import CliRunner, Result

from spacy_bert_crf.formats import read_two_file
from spacy_bert_crf.lab.encoders import EncoderShape, build_encoder
from spacy_bert_crf.lab.vectors import VectorSettings, train_vectors

ROOT = Path(__file__).parent.parent
ASSETS = ROOT / "assets"
TINY_SHAPE = EncoderShape(layers=2, hidden=64, heads=2, intermediate=128)
TINY_VECTORS = VectorSettings(char_dim=64, bigram_dim=16, epochs=1, bigram_min_count=2, max_bigrams=5000, workers=1)


def pytest_collection_modifyitems(items):
    """The end-to-end project files first. They are the longest units of work
    (minutes each), so under `-n 2` they start at once, one per worker, and
    the other files fill in around them."""
    items.sort(key=lambda item: not Path(item.fspath).name.startswith("test_project"))


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer, hidden-64 BERT with bert-base-chinese's vocab."""
    return build_encoder(
        tmp_path_factory.mktemp("encoder") / "tiny",
        config_path=ASSETS / "bert-base-chinese" / "config.json",
        vocab_path=ASSETS / "bert-base-chinese" / "vocab.txt",
        shape=TINY_SHAPE,
    )


@pytest.fixture(scope="session")
def tiny_vectors(tmp_path_factory) -> Path:
    """Character (64-d) and bigram (16-d) tables trained on the PD2014 text, as train_vectors makes them."""
    output = tmp_path_factory.mktemp("vectors")
    train_vectors([ASSETS / "pd2014" / "test.txt.gz"], output, TINY_VECTORS, log=lambda line: None)
    return output


@pytest.fixture(scope="session")
def tiny_bigram_encoder(tmp_path_factory, tiny_vectors) -> Path:
    """The tiny encoder with its embeddings initialised from `tiny_vectors`."""
    return build_encoder(
        tmp_path_factory.mktemp("encoder") / "tiny_vectors",
        config_path=ASSETS / "bert-base-chinese" / "config.json",
        vocab_path=ASSETS / "bert-base-chinese" / "vocab.txt",
        shape=TINY_SHAPE,
        char_vectors=tiny_vectors / "chars.npz",
    )


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_encoder, pd2014_docs, tmp_path_factory) -> Path:
    """A saved `bert_crf_ner` pipeline on the tiny encoder, initialised (not trained) on 8 PD2014 sentences."""
    nlp = spacy.blank("zh")
    nlp.add_pipe("bert_crf_ner", config=tagger_config(tiny_encoder))
    nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc) for doc in pd2014_docs[:8]])
    path = tmp_path_factory.mktemp("pipeline") / "tiny"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="session")
def pd2014_docs():
    """The report's corpus (1,000 sentences) as gold Docs."""
    docs, _ = read_two_file(
        ASSETS / "pd2014" / "test.txt.gz", ASSETS / "pd2014" / "test_TAG.txt.gz", spacy.blank("zh").vocab
    )
    return docs


def tagger_config(
    encoder: Path,
    architecture: str = "spacy_bert_crf.CRFTagger.v1",
    bigram_vectors: Optional[Path] = None,
    encoder_settings: Optional[dict] = None,
    **model_settings,
) -> dict:
    """The pipe's config with a local encoder directory (and bigram table, and other
    `encoder_settings`), in windows of 32 characters."""
    return {
        "model": {
            "@architectures": architecture,
            **model_settings,
            "tok2vec": {
                "@architectures": "spacy_bert_crf.CharBertEncoder.v3",
                "name": str(encoder),
                "bigram_vectors": None if bigram_vectors is None else str(bigram_vectors),
                "window": 32,
                "stride": 24,
                **(encoder_settings or {}),
            },
        }
    }


def run_script(name: str, *args, env=None, cwd=ROOT) -> subprocess.CompletedProcess:
    """Run `scripts/<name>` as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )


def invoke_script(name: str, *args) -> Result:
    """Run `scripts/<name>`'s CLI inside this process, as `run_script` does in a new one.

    A new Python process spends seconds importing spaCy and torch; error paths,
    which a suite wants many of, need no more than the same command in-process.
    """
    spec = importlib.util.spec_from_file_location(Path(name).stem, ROOT / "scripts" / name)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    app = typer.Typer()
    app.command()(script.main)
    return CliRunner().invoke(app, [str(arg) for arg in args])
