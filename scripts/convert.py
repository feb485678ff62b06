"""Convert NER data in any common format (two-file, CoNLL, CLUENER, spaCy JSONL) into a spaCy DocBin."""

import json
from pathlib import Path
from typing import List, Literal, Optional

import spacy
import typer
from spacy.tokens import DocBin
from wasabi import msg

from spacy_bert_crf.formats import FORMATS, DataFormatError, read_docs, split_train_dev
from spacy_bert_crf.schemes import SCHEMES


def main(
    paths: List[Path] = typer.Argument(
        ...,
        metavar="INPUT_FILE OUTPUT_FILE | TEXT_FILE TAG_FILE OUTPUT_FILE",
        help="The data (.gz ok), or the two-file format's text and tag files, then the .spacy DocBin to write",
    ),
    # Literal[tuple] lists the tuple's items as the choices, so they stay those of the package.
    format: Literal[("auto", *FORMATS)] = typer.Option("auto", "--format", help="The input's format; auto detects it"),
    scheme: Literal[("auto", *SCHEMES)] = typer.Option("auto", "--scheme", help="The tags' scheme; auto detects it"),
    strict: bool = typer.Option(False, "--strict", help="Refuse any input that needs a repair"),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the JSON conversion report here"),
    lang: str = typer.Option("zh", "--lang", help="Language of the Docs' vocab"),
    encoding: str = typer.Option("utf-8", "--encoding", help="The input's text encoding, e.g. gb18030 for GBK corpora"),
    dev_output: Optional[Path] = typer.Option(
        None, "--dev-output", help="Hold out sentences as a dev set: the DocBin to write them to"
    ),
    dev_every: int = typer.Option(10, "--dev-every", help="With --dev-output: every N-th sentence goes to dev"),
):
    """Convert INPUT_FILE (or TEXT_FILE + TAG_FILE) into OUTPUT_FILE and print a summary of
    the whole input (before any --dev-output split): sentences, characters, entities per
    type and repairs. --report writes the full counts as JSON."""
    *inputs, output_file = paths
    if len(inputs) not in (1, 2):
        raise typer.BadParameter("expected INPUT_FILE OUTPUT_FILE or TEXT_FILE TAG_FILE OUTPUT_FILE")
    tag_file = inputs[1] if len(inputs) == 2 else None
    if tag_file is not None and format not in ("auto", "lines"):
        raise typer.BadParameter(f"a TAG_FILE goes with --format lines, not {format}")
    for path in (output_file, dev_output):
        if path is not None and path.is_dir():
            msg.fail(f"{path} is a directory: expected the .spacy file to write", exits=1)
    try:
        docs, conversion = read_docs(inputs[0], spacy.blank(lang).vocab, format, scheme, strict, tag_file, encoding)
    except (DataFormatError, OSError, LookupError) as error:
        msg.fail("Cannot convert", str(error), exits=1)
    outputs = {output_file: docs}
    if dev_output is not None:
        train, dev = split_train_dev(len(docs), dev_every)
        outputs = {output_file: [docs[i] for i in train], dev_output: [docs[i] for i in dev]}
    for path, split in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        # User data holds what a CoNLL line had besides character and tag, for export.py.
        DocBin(docs=split, store_user_data=True).to_disk(path)
    msg.good(f"Wrote {', '.join(str(path) for path in outputs)}")
    print(conversion.summary())
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(conversion.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    typer.run(main)
