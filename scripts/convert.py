"""Convert the report's two-file BIO format (text + tags) into a spaCy DocBin."""
import json
from pathlib import Path
from typing import Optional

import spacy
import typer
from spacy.tokens import DocBin

from spacy_bert_crf.formats import DataFormatError, read_two_file


def main(
    text_file: Path = typer.Argument(..., help="One sentence a line, characters separated by spaces (.gz ok)"),
    tag_file: Path = typer.Argument(..., help="One tag per character, e.g. B_LOC I_LOC O (.gz ok)"),
    output_file: Path = typer.Argument(..., help="The .spacy DocBin to write"),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the JSON conversion report here"),
    lang: str = typer.Option("zh", "--lang", help="Language of the Docs' vocab"),
):
    """Convert TEXT_FILE + TAG_FILE into OUTPUT_FILE and print a JSON report."""
    try:
        docs, conversion = read_two_file(text_file, tag_file, spacy.blank(lang).vocab)
    except DataFormatError as error:
        typer.echo(f"✘ Cannot convert: {error}", err=True)
        raise typer.Exit(1)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=False).to_disk(output_file)
    summary = json.dumps(conversion.to_dict(), ensure_ascii=False, indent=2)
    print(summary)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(summary + "\n", encoding="utf-8")


if __name__ == "__main__":
    typer.run(main)
