"""Masked-LM pretraining tokens/s: the loss on masked positions only against Hugging Face's full-vocabulary loss."""

import json
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from spacy_bert_crf.lab.pretraining import PretrainingSettings, pretraining_speed


def main(
    encoders: List[str] = typer.Argument(..., help="Encoder directories to time, each with both losses"),
    text: Path = typer.Option(..., "--text", exists=True, dir_okay=False, help="Text file the batches come from"),
    steps: int = typer.Option(10, "--steps", help="Timed steps per encoder and loss, after 2 untimed ones"),
    batch_size: int = typer.Option(64, "--batch-size", help="Windows per step"),
    sequence_length: int = typer.Option(
        128, "--sequence-length", help="Characters per window, [CLS] and [SEP] included"
    ),
    output: Optional[Path] = typer.Option(None, "--output", help="JSON file for the figures"),
):
    """Train each ENCODER for --steps steps with each loss on the same batches; print tokens/s."""
    settings = PretrainingSettings(batch_size=batch_size, sequence_length=sequence_length, max_steps=steps)
    results = {}
    for encoder in encoders:
        speeds = pretraining_speed(encoder, [text], settings, steps)
        results[encoder] = {**speeds, "speedup": speeds["masked"] / speeds["full"]}
    msg.table(
        [
            (encoder, f"{r['full']:,.0f}", f"{r['masked']:,.0f}", f"{r['speedup']:.2f}×")
            for encoder, r in results.items()
        ],
        header=("encoder", "full vocabulary, tokens/s", "masked only, tokens/s", "speed-up"),
        divider=True,
    )
    if output is not None:
        settings_record = {
            "steps": steps,
            "batch_size": batch_size,
            "sequence_length": sequence_length,
            "text": str(text),
        }
        output.write_text(
            json.dumps({"settings": settings_record, "encoders": results}, indent=2) + "\n", encoding="utf-8"
        )


if __name__ == "__main__":
    typer.run(main)
