"""Run one of the report's comparisons from configs/experiments.cfg: train, score, plot."""

from pathlib import Path

import typer
from spacy.util import load_config
from wasabi import msg

from spacy_bert_crf.lab.experiments import load_experiment, load_settings, metrics_table, run_experiment
from spacy_bert_crf.lab.overrides import parse_overrides


def main(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Experiment: a section of the config, e.g. compare-heads"),
    output_dir: Path = typer.Option(
        Path("metrics/experiments"), "--output", help="Directory for the tables and figures"
    ),
    runs_dir: Path = typer.Option(Path("training/experiments"), "--runs", help="Directory for the trained variants"),
    config_path: Path = typer.Option(Path("configs/experiments.cfg"), "--config", help="Experiments config"),
):
    """Train every variant of experiment NAME, score it on the test set, and write
    NAME.json, NAME.md and NAME.png. Extra options override the config:
    --experiment.max_steps 1200."""
    config = load_config(config_path, overrides=parse_overrides(ctx.args), interpolate=True)
    summary = run_experiment(load_experiment(config, name), load_settings(config), runs_dir, output_dir)
    print(metrics_table(summary))
    msg.good(f"{name}: {summary['wall_seconds'] / 60:.1f} min; wrote {output_dir / name}.json, .md and .png")


app = typer.Typer(add_completion=False)
# Unknown options are config overrides, as with `spacy train`.
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(main)

if __name__ == "__main__":
    app()
