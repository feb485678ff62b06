"""Write a BERT encoder directory (weights + tokenizer) that the pipe and spacy-transformers load."""

from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from spacy_bert_crf.lab.encoders import EncoderShape, build_encoder

ASSETS = Path(__file__).parent.parent / "assets" / "bert-base-chinese"


def main(
    output_dir: Path = typer.Argument(..., help="Directory to write the encoder to"),
    from_pretrained: Optional[str] = typer.Option(
        None, "--from-pretrained", help="Hub name or local directory of pretrained weights"
    ),
    embeddings_only: bool = typer.Option(
        False, "--embeddings-only", help="Keep only the pretrained embeddings; initialise the rest randomly"
    ),
    layers: Optional[int] = typer.Option(None, "--layers", help="Number of transformer layers"),
    hidden: Optional[int] = typer.Option(None, "--hidden", help="Hidden size (random init only)"),
    heads: Optional[int] = typer.Option(None, "--heads", help="Attention heads"),
    intermediate: Optional[int] = typer.Option(None, "--intermediate", help="Feed-forward size"),
    config: Path = typer.Option(ASSETS / "config.json", "--config", help="BERT config for random init"),
    vocab: Path = typer.Option(ASSETS / "vocab.txt", "--vocab", help="Wordpiece vocabulary for random init"),
    char_vectors: Optional[Path] = typer.Option(
        None, "--char-vectors", help="Character table (scripts/train_vectors.py) to initialise the embeddings from"
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed of the initialisation"),
):
    """Build the encoder: random init from CONFIG and VOCAB, or from pretrained weights."""
    shape = EncoderShape(layers=layers, hidden=hidden, heads=heads, intermediate=intermediate)
    try:
        path = build_encoder(
            output_dir,
            config_path=config,
            vocab_path=vocab,
            shape=shape,
            from_pretrained=from_pretrained,
            embeddings_only=embeddings_only,
            char_vectors=char_vectors,
            seed=seed,
        )
    except ValueError as error:
        msg.fail("Cannot build the encoder", str(error), exits=1)
    msg.good(f"Saved the encoder to {path}")


if __name__ == "__main__":
    typer.run(main)
