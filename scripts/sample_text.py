"""Sample raw text files into one .gz file: every k-th line of each, about MAX_CHARS in all."""

from pathlib import Path
from typing import List

import typer
from wasabi import msg

from spacy_bert_crf.formats import write_lines
from spacy_bert_crf.lab.pretraining import sample_lines


def main(
    output_file: Path = typer.Argument(..., help="Sample to write (.gz to compress)"),
    text_files: List[Path] = typer.Argument(..., help="Text files, plain or .gz"),
    max_chars: int = typer.Option(8_000_000, "--max-chars", help="About how many characters to keep"),
):
    """Write a sample of TEXT_FILES that keeps each file's share of the whole."""
    lines = list(sample_lines(text_files, max_chars))
    write_lines(output_file, lines)
    msg.good(f"Wrote {len(lines):,} lines, {sum(map(len, lines)):,} characters to {output_file}")


if __name__ == "__main__":
    typer.run(main)
