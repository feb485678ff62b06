"""Copy a pretrained encoder without its checkpoint and corpus cache: what `assets/encoder` ships."""

from pathlib import Path

import typer
from wasabi import msg

from spacy_bert_crf.lab.pretraining import export_encoder


def main(
    pretrained_dir: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="pretrain-encoder's output directory"
    ),
    output_dir: Path = typer.Argument(..., help="Directory to write the encoder to"),
    half: bool = typer.Option(False, "--half/--full", help="--half: fp16 weights, half the size (loaded as fp32)"),
):
    """Write PRETRAINED_DIR's weights (with the MLM head), config and tokenizer to OUTPUT_DIR."""
    if output_dir.exists() and not output_dir.is_dir():
        msg.fail(f"Not a directory: {output_dir}", exits=1)
    path = export_encoder(pretrained_dir, output_dir, half=half)
    size = sum(file.stat().st_size for file in path.iterdir()) / 2**20
    msg.good(f"Wrote {path} ({size:.1f} MiB)")


if __name__ == "__main__":
    typer.run(main)
