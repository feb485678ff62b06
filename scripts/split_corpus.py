"""Split a two-file corpus into train and dev deterministically (every N-th line to dev)."""

from pathlib import Path

import typer
from wasabi import msg

from spacy_bert_crf.formats import DataFormatError, read_lines, split_train_dev, write_lines


def main(
    text_file: Path = typer.Argument(..., help="Text file of the corpus"),
    tag_file: Path = typer.Argument(..., help="Tag file of the corpus"),
    output_dir: Path = typer.Argument(..., help="Where to write train/dev .txt.gz and _TAG.txt.gz"),
    dev_every: int = typer.Option(10, "--dev-every", help="Every N-th line goes to dev"),
    encoding: str = typer.Option("utf-8", "--encoding", help="The input's text encoding, e.g. gb18030 for GBK corpora"),
):
    """Write train.txt.gz, train_TAG.txt.gz, dev.txt.gz, dev_TAG.txt.gz into OUTPUT_DIR."""
    try:
        texts, tags = list(read_lines(text_file, encoding)), list(read_lines(tag_file, encoding))
    except (DataFormatError, OSError, LookupError) as error:
        msg.fail("Cannot read the corpus", str(error), exits=1)
    if len(texts) != len(tags):
        msg.fail(f"{text_file} has {len(texts)} lines but {tag_file} has {len(tags)}", exits=1)
    splits = dict(zip(("train", "dev"), split_train_dev(len(texts), dev_every)))
    for split, indices in splits.items():
        write_lines(output_dir / f"{split}.txt.gz", (texts[i] for i in indices))
        write_lines(output_dir / f"{split}_TAG.txt.gz", (tags[i] for i in indices))
        msg.good(f"{split}: {len(indices)} lines")


if __name__ == "__main__":
    typer.run(main)
