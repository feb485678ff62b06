"""CPU training under each allocator: seconds per step, kernel time and peak memory (docs/BENCHMARKS.md)."""

import json
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from spacy_bert_crf.lab.allocator_benchmark import compare_allocators


def main(
    config: Path = typer.Option(Path("configs/default.cfg"), "--config", exists=True, help="Training config"),
    train: Path = typer.Option(Path("corpus/train.spacy"), "--train", exists=True),
    dev: Path = typer.Option(Path("corpus/dev.spacy"), "--dev", exists=True),
    encoder: Path = typer.Option(Path("encoders/default"), "--encoder", exists=True),
    first_step: int = typer.Option(25, "--first-step", help="Timing starts at this evaluation"),
    last_step: int = typer.Option(100, "--last-step", help="… and ends at this one, the last step"),
    dev_limit: int = typer.Option(100, "--dev-limit", help="Dev sentences per evaluation"),
    output: Optional[Path] = typer.Option(None, "--output", help="JSON file for the figures"),
):
    """Train CONFIG for --last-step steps under each allocator, one process each, and compare."""
    if last_step <= first_step:
        msg.fail("--last-step must come after --first-step", exits=1)
    overrides = {
        "paths.train": str(train),
        "paths.dev": str(dev),
        "paths.encoder": str(encoder),
        "training.eval_frequency": str(first_step),
        "corpora.dev.limit": str(dev_limit),
    }
    if last_step % first_step:
        msg.fail("--last-step must be a multiple of --first-step (both are evaluations)", exits=1)
    results = compare_allocators(config, overrides, first_step, last_step)
    msg.table(
        [
            (
                r["allocator"],
                f"{r['seconds_per_step']:.3f}",
                f"{r['user_seconds']:.0f}",
                f"{r['kernel_seconds']:.0f}",
                f"{r['peak_rss_gib']:.2f}",
            )
            for r in results
        ],
        header=("allocator", "s/step", "user s", "kernel s", "peak RSS GiB"),
        divider=True,
    )
    if output is not None:
        output.write_text(
            json.dumps(
                {
                    "settings": {**overrides, "config": str(config), "steps": [first_step, last_step]},
                    "allocators": results,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    typer.run(main)
