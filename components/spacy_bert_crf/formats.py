"""Readers and writers of the users' data: character-level BIO text in, Docs out.

The report's two-file format: one sentence a line, its characters separated by
spaces, and a parallel file with one tag per character (`B_LOC I_LOC O`).
Files may be gzip-compressed (`.gz`), carry a UTF-8 BOM and CRLF line ends.
Every problem is reported with its file and line; every repair is counted.
"""
import gzip
import io
import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc
from spacy.training.iob_utils import biluo_tags_to_spans, doc_to_biluo_tags
from spacy.training.iob_utils import biluo_to_iob, iob_to_biluo
from spacy.vocab import Vocab

from .schemes import BioTag, format_tag, parse_tag, repair_stray_inside

PathLike = Union[str, Path]
_TOKEN_SEPARATOR = re.compile(r" +")


class DataFormatError(ValueError):
    """Malformed input, located by file and line (1-based)."""

    def __init__(self, path: PathLike, line: int, message: str):
        self.path = Path(path)
        self.line = line
        super().__init__(f"{path}:{line}: {message}")


@dataclass
class ConversionReport:
    """What a conversion read, and what it had to repair."""

    sentences: int = 0
    empty_sentences: int = 0
    characters: int = 0
    entities: Counter = field(default_factory=Counter)
    tags: Counter = field(default_factory=Counter)
    stray_inside_repairs: Counter = field(default_factory=Counter)
    tag_notation: str = ""

    def to_dict(self) -> Dict:
        """A JSON-serialisable summary, counts sorted by label."""
        return {
            "sentences": self.sentences,
            "empty_sentences": self.empty_sentences,
            "characters": self.characters,
            "entities": dict(sorted(self.entities.items())),
            "entities_total": sum(self.entities.values()),
            "tags": dict(sorted(self.tags.items())),
            "repairs": {
                "stray_inside": dict(sorted(self.stray_inside_repairs.items())),
                "stray_inside_total": sum(self.stray_inside_repairs.values()),
            },
            "tag_notation": self.tag_notation,
        }


def open_text(path: PathLike) -> io.TextIOBase:
    """Open a UTF-8 text file, gzip-compressed if its name ends in `.gz`.

    A BOM is dropped; universal newlines make CRLF files read like LF ones.
    Lines are split on newlines only: never `str.splitlines`, which also splits
    on U+2028 and friends, characters that do occur in real text.
    """
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline=None)
    return open(path, encoding="utf-8-sig", newline=None)


def read_lines(path: PathLike) -> Iterator[str]:
    """Yield the lines of a text file without their line ends."""
    with open_text(path) as file:
        for line in file:
            yield line.rstrip("\n")


def split_tokens(line: str) -> List[str]:
    """Split a line of space-separated characters (runs of spaces allowed)."""
    line = line.strip(" ")
    return _TOKEN_SEPARATOR.split(line) if line else []


def read_two_file(
    text_path: PathLike, tag_path: PathLike, vocab: Vocab
) -> Tuple[List[Doc], ConversionReport]:
    """Read the report's two-file format into char-token Docs with `doc.ents`.

    One Doc per line, empty lines included (as empty Docs), so that Doc N is
    line N. A stray `I_X` starts a new entity and is counted as a repair.
    """
    report = ConversionReport()
    docs = []
    notations = set()
    lines = itertools.zip_longest(read_lines(text_path), read_lines(tag_path))
    for line_no, (text_line, tag_line) in enumerate(lines, start=1):
        if text_line is None or tag_line is None:
            shorter, longer = (text_path, tag_path) if text_line is None else (tag_path, text_path)
            n_lines = line_no - 1
            raise DataFormatError(
                shorter,
                n_lines,
                f"file ends after {n_lines} lines, but {longer} has more: "
                "the text and tag files must have the same number of lines",
            )
        chars = split_tokens(text_line)
        tag_strings = split_tokens(tag_line)
        if len(chars) != len(tag_strings):
            raise DataFormatError(
                tag_path,
                line_no,
                f"{len(tag_strings)} tags for {len(chars)} characters in {text_path}:{line_no}",
            )
        tags = []
        for position, tag_string in enumerate(tag_strings, start=1):
            try:
                tag, separator = parse_tag(tag_string)
            except ValueError as error:
                raise DataFormatError(tag_path, line_no, f"tag {position}: {error}") from None
            notations.add(separator)
            tags.append(tag)
        tags, repairs = repair_stray_inside(tags)
        doc = make_doc(vocab, chars, tags)
        docs.append(doc)
        report.sentences += 1
        report.empty_sentences += not chars
        report.characters += len(chars)
        report.tags.update(format_tag(tag) for tag in tags)
        report.entities.update(ent.label_ for ent in doc.ents)
        report.stray_inside_repairs.update(repairs)
    notations.discard("")
    report.tag_notation = "/".join(sorted(notations))
    return docs, report


def make_doc(vocab: Vocab, chars: Sequence[str], tags: Optional[Sequence[BioTag]] = None) -> Doc:
    """A Doc with one token per character, no spaces, and entities from BIO tags.

    The tags must be valid BIO (see `repair_stray_inside`).
    """
    doc = Doc(vocab, words=list(chars), spaces=[False] * len(chars))
    if tags is not None:
        iob = [format_tag(tag) for tag in tags]
        doc.ents = biluo_tags_to_spans(doc, iob_to_biluo(iob))
    return doc


def doc_to_tags(doc: Doc, separator: str = "-") -> List[str]:
    """The BIO tag of each token, written with `separator` ("-" or "_")."""
    iob = biluo_to_iob(doc_to_biluo_tags(doc))
    return [format_tag(parse_tag(tag)[0], separator) for tag in iob]


def read_text(path: PathLike) -> Tuple[List[List[str]], bool]:
    """Read text for prediction: one sentence a line, empty lines kept.

    Lines of space-separated single characters (the two-file format's text
    side) are split on the spaces; any other line is plain text whose
    non-space characters are the tokens. Returns the tokens of each line and
    whether the file was in the space-separated format.
    """
    lines = list(read_lines(path))
    tokenised = [split_tokens(line) for line in lines]
    space_separated = any(tokenised) and all(
        all(len(token) == 1 for token in tokens) for tokens in tokenised
    )
    if space_separated:
        return tokenised, True
    return [[char for char in line if not char.isspace()] for line in lines], False


def write_lines(path: PathLike, lines: Iterable[str]) -> None:
    """Write lines, each ended by a newline, as UTF-8 (gzip for `.gz`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8", newline="\n") as file:
        for line in lines:
            file.write(line + "\n")


def split_train_dev(n_lines: int, dev_every: int) -> Tuple[List[int], List[int]]:
    """Line indices of a deterministic split: every `dev_every`-th line is dev.

    Taking lines spread over the whole file, rather than its tail, keeps the
    dev set's topics and dates like the training set's.
    """
    dev = [i for i in range(n_lines) if i % dev_every == dev_every - 1]
    dev_set = set(dev)
    return [i for i in range(n_lines) if i not in dev_set], dev


def tag_lines(nlp, token_lines: Sequence[Sequence[str]], separator: str, batch_size: int = 64) -> Iterator[str]:
    """Tag each line of tokens with `nlp`; yield one line of tags per input line.

    Line N of the output answers line N of the input, empty lines included.
    """
    docs = (make_doc(nlp.vocab, tokens) for tokens in token_lines)
    for doc in nlp.pipe(docs, batch_size=batch_size):
        yield " ".join(doc_to_tags(doc, separator))
