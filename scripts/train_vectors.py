"""Train character and bigram vectors (gensim word2vec) on raw text files."""

import logging
from pathlib import Path
from typing import List

import typer
from wasabi import msg

from spacy_bert_crf.lab.vectors import VectorSettings, text_files, train_vectors


def main(
    output_dir: Path = typer.Argument(..., help="Directory for chars.npz, bigrams.npz and vectors.json"),
    texts: List[Path] = typer.Argument(
        ..., help="Plain or .gz text files, one document a line, or folders of *.txt and *.txt.gz"
    ),
    char_dim: int = typer.Option(
        VectorSettings.char_dim, "--char-dim", help="Size of a character vector: the encoder's hidden size"
    ),
    bigram_dim: int = typer.Option(VectorSettings.bigram_dim, "--bigram-dim", help="Size of a bigram vector"),
    epochs: int = typer.Option(VectorSettings.epochs, "--epochs", help="Passes over the text"),
    max_bigrams: int = typer.Option(VectorSettings.max_bigrams, "--max-bigrams", help="Keep the most frequent bigrams"),
    workers: int = typer.Option(VectorSettings.workers, "--workers", help="Training threads"),
):
    """Fold every character as the encoder does, then train both tables with word2vec."""
    missing = [str(path) for path in texts if not path.exists()]
    if missing:
        msg.fail("No such text file", ", ".join(missing), exits=1)
    texts = text_files(texts)
    # gensim reports its progress (words/s, share done) through logging.
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.INFO)
    settings = VectorSettings(
        char_dim=char_dim, bigram_dim=bigram_dim, epochs=epochs, max_bigrams=max_bigrams, workers=workers
    )
    summary = train_vectors(texts, output_dir, settings, log=msg.text)
    msg.good(
        f"{summary['char_vectors']:,} character and {summary['bigram_vectors']:,} bigram vectors "
        f"from {summary['chars']:,} characters in {summary['minutes']['total']} min: {output_dir}"
    )


if __name__ == "__main__":
    typer.run(main)
