"""Shared fixtures: a tiny encoder the tests build themselves, and slices of real data."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import typer
from typer.testing import CliRunner, Result

from spacy_bert_crf.encoders import EncoderShape, build_encoder
from spacy_bert_crf.formats import read_two_file

ROOT = Path(__file__).parent.parent
ASSETS = ROOT / "assets"
TINY_SHAPE = EncoderShape(layers=2, hidden=64, heads=2, intermediate=128)


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
def pd2014_docs():
    """The report's corpus (1,000 sentences) as gold Docs."""
    docs, _ = read_two_file(
        ASSETS / "pd2014" / "test.txt.gz", ASSETS / "pd2014" / "test_TAG.txt.gz", spacy.blank("zh").vocab
    )
    return docs


def tagger_config(encoder: Path, architecture: str = "spacy_bert_crf.CRFTagger.v1", **model_settings) -> dict:
    """The pipe's config with a local encoder directory."""
    return {
        "model": {
            "@architectures": architecture,
            **model_settings,
            "tok2vec": {
                "@architectures": "spacy-transformers.Tok2VecTransformer.v3",
                "name": str(encoder),
                "tokenizer_config": {"use_fast": True},
                "get_spans": {
                    "@span_getters": "spacy-transformers.strided_spans.v1",
                    "window": 32,
                    "stride": 24,
                },
                "pooling": {"@layers": "reduce_mean.v1"},
            },
        }
    }


def run_script(name: str, *args, env=None, cwd=ROOT) -> subprocess.CompletedProcess:
    """Run `scripts/<name>` as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd
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
