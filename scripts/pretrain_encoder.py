"""Masked-LM pretraining of a BERT encoder on plain-text or .gz files."""
from pathlib import Path
from typing import List

import typer
from spacy.cli._util import parse_config_overrides
from spacy.util import load_config
from wasabi import msg

from spacy_bert_crf.pretraining import PretrainingSettings, device_name, pretrain_encoder



def main(
    ctx: typer.Context,
    encoder: str = typer.Argument(..., help="Encoder to start from: a directory (e.g. init-encoder's) or a hub name"),
    output_dir: Path = typer.Argument(..., help="Directory for the pretrained encoder"),
    text_files: List[str] = typer.Argument(..., help="Text files, plain or .gz, one line a paragraph or sentence"),
    config_path: Path = typer.Option(Path("configs/pretrain_encoder.cfg"), "--config", help="Config with a [pretraining] section"),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to use, -1 for the CPU"),
    mixed_precision: bool = typer.Option(False, "--mixed-precision", help="bfloat16 autocast (on a GPU)"),
):
    """Continue or start the masked-LM training of ENCODER on TEXT_FILES.

    Extra options override the config: --pretraining.max_minutes 60.
    """
    # The file list is variadic, so it also swallows the config overrides that follow it.
    first_override = next((i for i, arg in enumerate(text_files) if arg.startswith("--")), len(text_files))
    overrides = text_files[first_override:] + ctx.args
    text_files = [Path(name) for name in text_files[:first_override]]
    config = load_config(config_path, overrides=parse_config_overrides(overrides))
    settings = PretrainingSettings(**config["pretraining"])
    for path in text_files:
        if not path.is_file():
            msg.fail(f"No such text file: {path}", exits=1)
    summary = pretrain_encoder(
        encoder, text_files, output_dir, settings, device=device_name(gpu_id), mixed_precision=mixed_precision
    )
    msg.good(
        f"{summary['steps']} steps, {summary['tokens']:,} tokens in {summary['seconds']:.0f} s; "
        f"wrote {output_dir}"
    )


app = typer.Typer(add_completion=False)
# Unknown options are config overrides, as with `spacy train`.
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(main)

if __name__ == "__main__":
    app()
