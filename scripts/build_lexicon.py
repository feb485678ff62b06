"""Build the lexicon file the encoder's lexicon flags read, from jieba's dictionary."""

from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from spacy_bert_crf.lab.lexicons import build_lexicon, jieba_dictionary


def main(
    output: Path = typer.Argument(..., help="The lexicon to write: word<TAB>class, gzipped (.tsv.gz)"),
    source: Optional[Path] = typer.Option(
        None, "--source", help="A jieba-format dictionary (word frequency tag); default: the installed jieba's"
    ),
    max_length: int = typer.Option(8, "--max-length", help="Leave out longer words (counted in lexicon.json)"),
):
    """Fold every word as the encoder folds characters, and give it its class (PER, LOC, ORG, T or WORD)."""
    source, source_name = (source, str(source)) if source else jieba_dictionary()
    if not source.exists():
        msg.fail("No such dictionary", str(source), exits=1)
    summary = build_lexicon(output, source, max_length, source_name)
    left_out = {reason: n for reason, n in summary["lines"].items() if reason != "kept"}
    msg.good(f"{summary['lines']['kept']:,} words in {output}", f"classes {summary['classes']}; left out {left_out}")


if __name__ == "__main__":
    typer.run(main)
