"""Draw the report's figures for a trained pipeline: data, CRF transitions, training curves, tag confusion."""

from pathlib import Path

import spacy
import typer
from wasabi import msg

from spacy_bert_crf.lab.figures import write_report_figures


def main(
    model: str = typer.Argument(..., help="Pipeline package name or directory"),
    corpus_dir: Path = typer.Argument(..., help="Directory with train/dev/test .spacy DocBins and their .json reports"),
    training_log: Path = typer.Argument(..., help="JSONL training log (one record per evaluation)"),
    output_dir: Path = typer.Argument(..., help="Directory for the PNGs and figures.json"),
    test_split: str = typer.Option("test", "--test-split", help="Split of CORPUS_DIR for the confusion matrix"),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to use, -1 for the CPU"),
):
    """Write MODEL's figures into OUTPUT_DIR, with the data of each in figures.json."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model)
    figures = write_report_figures(nlp, corpus_dir, training_log, output_dir, test_split=test_split)
    if "crf_transitions" not in figures:
        msg.info(f"{model} has no CRF: no transition heatmap")
    for name in figures:
        msg.good(f"Wrote {output_dir / name}.png")
    msg.good(f"Wrote {output_dir / 'figures.json'}")


if __name__ == "__main__":
    typer.run(main)
