"""Time `annotate` on this machine: local with 1 and 2 processes, Ray with 1 and 2 workers
(spacy_bert_crf.lab.annotation_benchmark)."""

import sys
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from spacy_bert_crf.lab.annotation_benchmark import measure_annotation
from spacy_bert_crf.lab.benchmark_report import write_json_report

ANNOTATE = [sys.executable, str(Path(__file__).resolve().parent / "annotate.py")]


def main(
    model: str = typer.Argument(..., help="Pipeline package name or directory"),
    lines: Path = typer.Argument(..., help="Plain text, one document a line"),
    scratch: Path = typer.Argument(..., help="Where the runs write their shards"),
    output: Optional[Path] = typer.Option(None, "--output", help="Write the JSON here too"),
    shard_lines: int = typer.Option(2_500, "--shard-lines", help="Lines per shard"),
    configurations: str = typer.Option(
        "local:1,local:2,ray:1,ray:2", "--configurations", help="ENGINE:WORKERS pairs, comma-separated"
    ),
):
    """Start-up, chars/s and worker peak RSS of each engine and worker count, as JSON."""
    if not lines.is_file():
        msg.fail(f"No such text file: {lines}", exits=1)
    chosen = [(engine, int(workers)) for engine, workers in (pair.split(":") for pair in configurations.split(","))]
    result = measure_annotation(
        ANNOTATE, model, lines, scratch, configurations=chosen, shard_lines=shard_lines, log=msg.info
    )
    print(write_json_report(result, output))


if __name__ == "__main__":
    typer.run(main)
