"""Run one long document through a pipeline; print its time and peak memory as JSON.

The text repeats real PD2014 test sentences, joined without separators, cut to
N characters (spacy_bert_crf.lab.long_documents). With `--sizes`, each size
runs in a fresh process, so that each peak is its own.
"""

import json
import tempfile
from pathlib import Path
from typing import List, Optional

import spacy
import typer
from spacy.tokens import Doc

from spacy_bert_crf.formats import read_docs
from spacy_bert_crf.lab.benchmark_systems import BenchmarkSettings, untrained_pipeline
from spacy_bert_crf.lab.encoders import EncoderShape, build_encoder
from spacy_bert_crf.lab.long_documents import tag_long_document
from spacy_bert_crf.lab.measuring import in_fresh_process

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TEST_DATA = ASSETS / "pd2014" / "test.txt.gz"
TINY_SHAPE = EncoderShape(layers=2, hidden=64, heads=2, intermediate=128)


def main(
    model: Optional[str] = typer.Argument(None, help="Pipeline package name or directory"),
    tiny: bool = typer.Option(
        False, "--tiny", help="Build an untrained pipeline on a tiny random encoder (2 layers, hidden 64) instead"
    ),
    n_chars: int = typer.Option(100_000, "--n-chars", help="Characters in the document"),
    sizes: str = typer.Option("", "--sizes", help="Comma-separated sizes, each run in its own process"),
    output_dir: Optional[Path] = typer.Option(
        None, "--output-dir", help="Save each tagged Doc here as <n_chars>.spacy"
    ),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch's CPU threads (default: torch's own choice)"),
):
    """Tag one document of N characters with MODEL; print one JSON object per size."""
    if (model is None) == (not tiny):
        raise typer.BadParameter("give either MODEL or --tiny")
    gold, _ = read_docs(TEST_DATA, spacy.blank("zh").vocab)
    texts = [doc.text for doc in gold]
    with tempfile.TemporaryDirectory() as tmp:
        path, name = (tiny_pipeline(Path(tmp), gold[:10]), "tiny") if tiny else (model, model)
        if not sizes:
            result = tag_long_document(path, texts, n_chars, output_dir, threads)
            print(json.dumps({**result, "model": name}))
            return
        for size in (int(size) for size in sizes.split(",")):
            result = in_fresh_process(tag_long_document, str(path), texts, size, output_dir, threads)
            print(json.dumps({**result, "model": name}), flush=True)


def tiny_pipeline(tmp: Path, gold: List[Doc]) -> Path:
    """An untrained pipe on a tiny random encoder, labels from the `gold` Docs."""
    encoder = build_encoder(
        tmp / "encoder",
        config_path=ASSETS / "bert-base-chinese" / "config.json",
        vocab_path=ASSETS / "bert-base-chinese" / "vocab.txt",
        shape=TINY_SHAPE,
    )
    return untrained_pipeline(tmp / "pipeline", BenchmarkSettings(encoder=str(encoder)), gold)


if __name__ == "__main__":
    typer.run(main)
