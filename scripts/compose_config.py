"""Write a training config: a base config with overlays on top (spacy_bert_crf/lab/configs.py)."""

from pathlib import Path
from typing import List

import typer
from wasabi import msg

from spacy_bert_crf.lab.configs import config_with_overlays


def main(
    output: Path = typer.Argument(..., help="The config file to write"),
    base: Path = typer.Argument(..., help="The base config, e.g. configs/default.cfg"),
    overlays: List[Path] = typer.Argument(
        None, help="Overlays applied in turn, e.g. configs/overlays/softmax_head.cfg"
    ),
):
    """Write BASE with each of OVERLAYS on top to OUTPUT."""
    overlays = overlays or []
    for path in [base, *overlays]:
        if not path.is_file():
            msg.fail(f"No such config file: {path}", exits=1)
    if output.is_dir():
        msg.fail(f"{output} is a directory: expected the config file to write", exits=1)
    output.parent.mkdir(parents=True, exist_ok=True)
    config_with_overlays(base, overlays).to_disk(output, interpolate=False)
    msg.good(f"Wrote {output}: {' + '.join(str(path) for path in [base, *overlays])}")


if __name__ == "__main__":
    typer.run(main)
