"""Tag a text file with a trained pipeline: one line of tags per input line."""

from pathlib import Path

import spacy
import typer
from tqdm import tqdm
from wasabi import msg

from spacy_bert_crf.formats import DataFormatError, read_text, tag_lines, write_lines


def main(
    model: str = typer.Argument(..., help="Pipeline package name or directory"),
    input_file: Path = typer.Argument(..., help="One sentence a line: characters separated by spaces, or plain text"),
    output_file: Path = typer.Argument(..., help="The tag file to write, line N for input line N"),
    separator: str = typer.Option("_", "--separator", help="Tag notation: '_' for B_LOC, '-' for B-LOC"),
    batch_size: int = typer.Option(64, "--batch-size", help="Sentences per batch"),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to use, -1 for the CPU"),
    encoding: str = typer.Option("utf-8", "--encoding", help="The input's text encoding, e.g. gb18030 for GBK corpora"),
):
    """Predict the tags of INPUT_FILE into OUTPUT_FILE."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    if output_file.is_dir():
        msg.fail(f"{output_file} is a directory: expected the tag file to write", exits=1)
    try:
        token_lines, space_separated = read_text(input_file, encoding)
    except (DataFormatError, OSError, LookupError) as error:
        msg.fail("Cannot read the input", str(error), exits=1)
    nlp = spacy.load(model)
    msg.info(f"{len(token_lines)} lines of {'space-separated characters' if space_separated else 'plain text'}")
    tags = tag_lines(nlp, token_lines, separator, batch_size)
    write_lines(output_file, tqdm(tags, total=len(token_lines), unit="line"))
    msg.good(f"Wrote {output_file}")


if __name__ == "__main__":
    typer.run(main)
