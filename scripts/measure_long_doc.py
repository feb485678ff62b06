"""Run one long document through a pipeline; print its time and peak memory as JSON.

The text repeats real PD2014 test sentences, joined without separators, cut to
N characters. Peak resident memory is `getrusage`'s maxrss, read after the
pipeline is loaded and has tagged the text's first 100 characters (so that
lazy set-up is not counted), and again after the long document: the difference
is what the long document itself cost. With `--sizes`, each size runs in a fresh process,
so that each peak is its own.
"""
import json
import resource
import subprocess
import sys
import tempfile
import time
from itertools import cycle
from pathlib import Path
from typing import Optional

import spacy
import torch
import typer
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.util import fix_random_seed

from spacy_bert_crf.encoders import EncoderShape, build_encoder
from spacy_bert_crf.formats import read_text, read_two_file

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TEXT_FILE = ASSETS / "pd2014" / "test.txt.gz"
TAG_FILE = ASSETS / "pd2014" / "test_TAG.txt.gz"
TINY_SHAPE = EncoderShape(layers=2, hidden=64, heads=2, intermediate=128)


def long_text(n_chars: int, text_file: Path = TEXT_FILE) -> str:
    """The sentences of `text_file`, repeated and joined, cut to `n_chars` characters."""
    token_lines, _ = read_text(text_file)
    sentences = ["".join(tokens) for tokens in token_lines if tokens]
    pieces, length = [], 0
    for sentence in cycle(sentences):
        if length >= n_chars:
            break
        pieces.append(sentence)
        length += len(sentence)
    return "".join(pieces)[:n_chars]


def save_tiny_pipeline(output_dir: Path) -> Path:
    """Save an untrained pipeline on a random 2-layer, hidden-64 encoder.

    The pipe keeps its default span getter (windows of 128 tokens every 96),
    and takes its labels from ten PD2014 test sentences. Its predictions mean
    nothing; its time and memory are those of any pipeline of that shape.
    """
    encoder = build_encoder(
        output_dir / "encoder",
        config_path=ASSETS / "bert-base-chinese" / "config.json",
        vocab_path=ASSETS / "bert-base-chinese" / "vocab.txt",
        shape=TINY_SHAPE,
    )
    fix_random_seed(0)
    nlp = spacy.blank("zh")
    nlp.add_pipe("bert_crf_ner", config={"model": {"tok2vec": {"name": str(encoder)}}})
    gold, _ = read_two_file(TEXT_FILE, TAG_FILE, nlp.vocab)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in gold[:10]]
    nlp.initialize(lambda: examples)
    nlp.to_disk(output_dir / "pipeline")
    return output_dir / "pipeline"


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(model: str, n_chars: int, output_dir: Optional[Path]) -> dict:
    """Load `model`, tag one text of `n_chars` characters, and report time and memory."""
    nlp = spacy.load(model)
    text = long_text(n_chars)
    nlp(text[:100])
    before = peak_rss_mib()
    start = time.perf_counter()
    doc = nlp(text)
    seconds = time.perf_counter() - start
    after = peak_rss_mib()
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        DocBin(docs=[doc], store_user_data=False).to_disk(output_dir / f"{n_chars}.spacy")
    return {
        "model": model,
        "n_chars": len(text),
        "n_tokens": len(doc),
        "seconds": round(seconds, 3),
        "chars_per_s": round(len(text) / seconds, 1),
        "n_ents": len(doc.ents),
        "torch_threads": torch.get_num_threads(),
        "peak_rss_before_mib": round(before, 1),
        "peak_rss_after_mib": round(after, 1),
        "peak_rss_delta_mib": round(after - before, 1),
    }


def main(
    model: Optional[str] = typer.Argument(None, help="Pipeline package name or directory"),
    tiny: bool = typer.Option(False, "--tiny", help="Build an untrained pipeline on a tiny random encoder instead"),
    n_chars: int = typer.Option(100_000, "--n-chars", help="Characters in the document"),
    sizes: str = typer.Option("", "--sizes", help="Comma-separated sizes, each run in its own process"),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Save each tagged Doc here as <n_chars>.spacy"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch's CPU threads (default: torch's own choice)"),
):
    """Tag one document of N characters with MODEL; print one JSON object per size."""
    if (model is None) == (not tiny):
        raise typer.BadParameter("give either MODEL or --tiny")
    if threads is not None:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(save_tiny_pipeline(Path(tmp))) if tiny else model
        name = "tiny" if tiny else model
        if not sizes:
            print(json.dumps({**measure(path, n_chars, output_dir), "model": name}))
            return
        for size in (int(size) for size in sizes.split(",")):
            command = [sys.executable, __file__, path, "--n-chars", str(size)]
            if output_dir is not None:
                command += ["--output-dir", str(output_dir)]
            if threads is not None:
                command += ["--threads", str(threads)]
            result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
            print(json.dumps({**json.loads(result.stdout.splitlines()[-1]), "model": name}), flush=True)


if __name__ == "__main__":
    typer.run(main)
