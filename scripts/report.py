"""Render docs/REPORT.md from the metrics, figures and checks the project commands wrote."""

from pathlib import Path

import typer
from wasabi import msg

from spacy_bert_crf.lab.report import render_report


def main(
    output: Path = typer.Argument(..., help="The Markdown report to write"),
    run: str = typer.Argument(..., help="The training run the figures describe"),
    run_scores: Path = typer.Argument(..., help="Its test scores, as scripts/evaluate.py writes them"),
    figures_dir: Path = typer.Option(Path("docs/figures"), "--figures", help="scripts/figures.py's output"),
    experiments_dir: Path = typer.Option(
        Path("metrics/experiments"), "--experiments", help="scripts/experiment.py's output"
    ),
    pretraining_dir: Path = typer.Option(
        Path("encoders/pretrained"), "--pretraining", help="pretrain-encoder's output"
    ),
    displacy_check: Path = typer.Option(
        Path("docs/figures/predictions.check.json"), "--displacy-check", help="scripts/render_predictions.py's check"
    ),
):
    """Write OUTPUT from RUN's scores and figures, the experiments and the pretraining summary."""
    render_report(output, run, run_scores, figures_dir, experiments_dir, pretraining_dir, displacy_check)
    msg.good(f"Wrote {output}")


if __name__ == "__main__":
    typer.run(main)
