"""Masked-LM pretraining of a BERT encoder on plain-text or .gz files."""

from pathlib import Path
from typing import List

import typer
from spacy.util import load_config
from wasabi import msg

from spacy_bert_crf.lab.overrides import parse_overrides
from spacy_bert_crf.lab.pretraining import PretrainingSettings, device_name, pretrain_encoder


def main(
    ctx: typer.Context,
    encoder: str = typer.Argument(..., help="Encoder to start from: a directory (e.g. init-encoder's) or a hub name"),
    output_dir: Path = typer.Argument(..., help="Directory for the pretrained encoder"),
    text_files: List[str] = typer.Argument(..., help="Text files, plain or .gz, one line a paragraph or sentence"),
    config_path: Path = typer.Option(
        Path("configs/pretrain_encoder.cfg"), "--config", help="Config with a [pretraining] section"
    ),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to use, -1 for the CPU"),
    mixed_precision: bool = typer.Option(False, "--mixed-precision", help="bfloat16 autocast (on a GPU)"),
    restart: bool = typer.Option(False, "--restart", help="Start afresh, ignoring OUTPUT_DIR's checkpoint"),
):
    """Masked-LM training of ENCODER on TEXT_FILES, one character per position.

    A run spends its own budget and leaves a checkpoint in OUTPUT_DIR; the next
    run on OUTPUT_DIR continues from it, so runs add up. Extra options override
    the config: --pretraining.max_minutes 60.
    """
    # The file list is variadic, so it also swallows the config overrides that follow it.
    first_override = next((i for i, arg in enumerate(text_files) if arg.startswith("--")), len(text_files))
    overrides = text_files[first_override:] + ctx.args
    text_files = [Path(name) for name in text_files[:first_override]]
    config = load_config(config_path, overrides=parse_overrides(overrides))
    settings = PretrainingSettings(**config["pretraining"])
    for path in text_files:
        if not path.is_file():
            msg.fail(f"No such text file: {path}", exits=1)
    try:
        summary = pretrain_encoder(
            encoder, text_files, output_dir, settings, device_name(gpu_id), mixed_precision, restart=restart
        )
    except ValueError as error:
        msg.fail("Cannot pretrain", str(error), exits=1)
    run = summary["runs"][-1]
    msg.good(
        f"This run: {run['steps']} steps, {run['tokens']:,} tokens, {run['tokens_per_second']:,.0f} tokens/s. "
        f"In all: {summary['steps']} steps, {summary['epochs']:.3f} epochs, {summary['seconds'] / 60:.1f} min; "
        f"wrote {output_dir}"
    )


app = typer.Typer(add_completion=False)
# Unknown options are config overrides, as with `spacy train`.
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(main)

if __name__ == "__main__":
    app()
