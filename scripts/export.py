"""Export a spaCy DocBin to the two-file format or CoNLL, tags in the scheme and notation asked for."""

from pathlib import Path
from typing import List, Literal

import spacy
import typer
from spacy.tokens import DocBin

from spacy_bert_crf.formats import tag_path_for, write_conll, write_two_file
from spacy_bert_crf.schemes import SCHEMES


def main(
    docbin: Path = typer.Argument(..., exists=True, dir_okay=False, help="The .spacy DocBin to export"),
    outputs: List[Path] = typer.Argument(
        ...,
        metavar="OUTPUT...",
        help="conll: the file to write; lines: the text file, and the tag file (default: TEXT_TAG beside it)",
    ),
    format: Literal["lines", "conll"] = typer.Option(..., "--format", help="The format to write"),
    separator: Literal["-", "_"] = typer.Option("-", "--separator", help="Tag notation: '-' for B-LOC, '_' for B_LOC"),
    # Literal[tuple] lists the tuple's items as the choices, so they stay those of the package.
    scheme: Literal[tuple(SCHEMES)] = typer.Option("bio", "--scheme", help="The tag scheme to write"),
    lang: str = typer.Option("zh", "--lang", help="Language of the Docs' vocab"),
):
    """Write the Docs of DOCBIN to OUTPUT... in --format."""
    expected = (1, 2) if format == "lines" else (1,)
    if len(outputs) not in expected:
        raise typer.BadParameter(f"--format {format} writes {' or '.join(map(str, expected))} file(s)")
    docs = list(DocBin().from_disk(docbin).get_docs(spacy.blank(lang).vocab))
    if format == "lines" and len(outputs) == 1:
        outputs.append(tag_path_for(outputs[0]))
    try:
        if format == "conll":
            write_conll(docs, outputs[0], separator, scheme)
        else:
            write_two_file(docs, outputs[0], outputs[1], separator, scheme)
    except ValueError as error:
        typer.echo(f"✘ Cannot export: {error}", err=True)
        raise typer.Exit(1)
    typer.echo(f"✔ Wrote {len(docs)} docs to {' and '.join(map(str, outputs))}", err=True)


if __name__ == "__main__":
    typer.run(main)
