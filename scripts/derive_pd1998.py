"""Derive the NER corpus of pd1998 from the PKU part-of-speech annotation of People's Daily."""

from pathlib import Path

import typer
from wasabi import msg

from spacy_bert_crf.formats import DataFormatError
from spacy_bert_crf.lab.pku import CONVENTIONS, derive_corpus


def main(
    source: Path = typer.Argument(
        ..., help="PKU-annotated text: one paragraph a line, `word/tag` tokens (.gz or plain)"
    ),
    output_dir: Path = typer.Argument(..., help="Where to write train/dev .txt.gz and _TAG.txt.gz"),
    convention: str = typer.Option(
        "words",
        "--convention",
        help=f"How bracketed compounds are tagged, one of {CONVENTIONS}: see spacy_bert_crf.lab.pku",
    ),
    dev_every: int = typer.Option(10, "--dev-every", help="Every N-th paragraph goes to dev"),
):
    """Tag t → T, nr → PER, ns → LOC, nt → ORG, and split the paragraphs into train and dev."""
    if convention not in CONVENTIONS:
        msg.fail(f"--convention must be one of {CONVENTIONS}, not {convention!r}", exits=1)
    try:
        summary = derive_corpus(source, output_dir, convention, dev_every)
    except (DataFormatError, OSError) as error:
        msg.fail("Cannot derive the corpus", str(error), exits=1)
    for split, counts in summary.items():
        msg.good(
            f"{split}: {counts['paragraphs']:,} paragraphs, {counts['characters']:,} characters",
            f"entities {counts['entities']}",
        )


if __name__ == "__main__":
    typer.run(main)
