"""Tag corpora into JSONL shards, one record per input line, resumable (spacy_bert_crf.lab.annotation)."""

from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from spacy_bert_crf.lab.annotation import InputFormat, annotate


def main(
    model: str = typer.Argument(..., help="Pipeline package name or directory"),
    inputs: List[str] = typer.Argument(
        ..., help="Text (one document a line) or JSONL files, .gz or not; globs and folders too; then OUTPUT_DIR"
    ),
    engine: str = typer.Option("local", "--engine", help="local (nlp.pipe) or ray (Ray Data actor pool)"),
    address: Optional[str] = typer.Option(
        None, "--address", help="Ray cluster to join (auto, or ray://host:10001); none: start Ray here"
    ),
    workers: int = typer.Option(1, "--workers", help="Processes (local) or actors (ray)"),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="GPUs per Ray actor"),
    batch_size: int = typer.Option(64, "--batch-size", help="Documents per nlp.pipe batch"),
    shard_lines: int = typer.Option(10_000, "--shard-lines", help="Input lines per output shard"),
    text_field: str = typer.Option("text", "--text-field", help="JSONL: the field holding the text"),
    id_field: str = typer.Option("id", "--id-field", help="JSONL: the field kept as the record's id"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Tag every shard again instead of resuming"),
):
    """Tag every line of INPUTS... into OUTPUT_DIR/shards/*.jsonl and write OUTPUT_DIR/manifest.json."""
    if len(inputs) < 2:
        msg.fail("Give at least one input and the output directory", exits=1)
    *sources, output_dir = inputs
    if engine not in ("local", "ray"):
        msg.fail(f"--engine must be local or ray, not {engine!r}", exits=1)
    try:
        result = annotate(
            model,
            sources,
            Path(output_dir),
            engine=engine,
            workers=workers,
            batch_size=batch_size,
            shard_lines=shard_lines,
            input_format=InputFormat(text_field, id_field),
            address=address,
            gpus_per_worker=gpus_per_worker,
            overwrite=overwrite,
            log=msg.info,
        )
    except (FileNotFoundError, NotADirectoryError) as error:
        msg.fail(str(error), exits=1)
    problems = ", ".join(f"{count} {kind}" for kind, count in result["problems"].items()) or "none"
    msg.good(
        f"{result['documents']:,} records for {result['input_lines']:,} input lines in {len(result['shards'])} shards "
        f"({result['characters']:,} characters, {sum(result['entities'].values()):,} entities; bad lines: {problems}) "
        f"in {result['wall_seconds']:.1f} s: {Path(output_dir) / 'manifest.json'}"
    )


if __name__ == "__main__":
    typer.run(main)
