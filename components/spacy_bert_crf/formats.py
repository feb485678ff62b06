"""Readers and writers of the users' data: every common Chinese NER format in, Docs out, and back.

| format    | what it looks like                                                            |
|-----------|-------------------------------------------------------------------------------|
| `lines`   | the report's two files: a sentence a line, characters separated by spaces,    |
|           | and a tag file beside it with a tag per character (`x.txt` + `x_TAG.txt`)     |
| `conll`   | a character and its tag a line, tab- or space-separated, a blank line after   |
|           | each sentence; extra middle columns and Weibo's segmentation digits (`科0`)   |
| `cluener` | JSON objects `{"text", "label": {type: {mention: [[start, end_incl], ...]}}}` |
| `jsonl`   | spaCy's JSON objects `{"text", "entities": [[start, end, label], ...]}`, or   |
|           | Prodigy's `{"text", "spans": [{"start", "end", "label"}, ...]}`               |

Tags may be in any scheme of `schemes.py` (BIO, IOB1, BIOES, BMES) and written
`B-X` or `B_X`; JSON files may hold one object a line, pretty-printed objects
one after another, or one array of them. `read_docs` detects the format
(`detect_format`) and the scheme (`schemes.detect_scheme`); its arguments
override either guess. Files may be gzip-compressed (`.gz`), carry a UTF-8 BOM
and CRLF line ends.

Every malformed input raises `DataFormatError` with its file and 1-based line.
Every violation the reader can read a meaning into is a `Repair`, counted per
kind in the `ConversionReport` (`REPAIR_KINDS`), or an error under `strict`.

Decisions:

- Tokens. In the tag formats the file's tokens are the Doc's, with no spaces
  between them (`make_doc`). The JSON formats hold text, which is tokenised as
  the pipeline's `spacy.blank("zh")` does (`text_doc`): a token a character,
  but a single space after a character is that token's trailing whitespace,
  not a token. So `doc.text` is the JSON text, character offsets hold, and a
  training Example pairs the Doc with `nlp.make_doc(doc.text)` token for
  token. A span that begins or ends on such a space is trimmed to its tokens.
- Weibo's segmentation digits (and any middle columns, and a tab delimiter)
  are kept per Doc in `doc.user_data[CONLL_LAYOUT]`, so that `write_conll`
  gives the file back byte for byte; the two-file format has no place for them.
- Overlapping spans cannot all be `doc.ents`: the longest is kept (the first
  in the file among equally long ones) and each other is counted as dropped.
- JSON objects without annotation (CLUENER's test set) become Docs whose
  entity annotation is missing rather than "O", counted as `unannotated`.
"""

import codecs
import gzip
import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

from spacy.tokens import Doc, Span
from spacy.training.iob_utils import biluo_tags_to_spans, doc_to_biluo_tags
from spacy.util import get_words_and_spaces
from spacy.vocab import Vocab
from wasabi import table as text_table

from .schemes import (
    ALL_LETTERS,
    OUTSIDE,
    SCHEMES,
    TAG_REPAIRS,
    BioTag,
    Repair,
    detect_scheme,
    format_tag,
    from_biluo,
    parse_tag,
    to_biluo,
)

PathLike = Union[str, Path]
FORMATS = ("lines", "conll", "cluener", "jsonl")
# The doc.user_data key of what a CoNLL line held besides the character and its tag.
CONLL_LAYOUT = "spacy_bert_crf.conll_layout"
SPAN_REPAIRS = {
    "mention_mismatch": "CLUENER: the text at a mention's offsets is not the mention: the offsets are kept",
    "overlapping_span_dropped": "a span overlapping a longer one (or an equally long, earlier one): dropped",
    "whitespace_trimmed": "a span beginning or ending on a space that is no token: trimmed to its tokens",
    "whitespace_span_dropped": "a span of such spaces only: dropped",
}
REPAIR_KINDS = {**TAG_REPAIRS, **SPAN_REPAIRS}

_TOKEN_SEPARATOR = re.compile(r" +")
# Weibo's `科0`, `p10`, `��0`: the character(s), then the position in its word.
_SEGMENTATION_SUFFIX = re.compile(r"(.+?)([0-9]+)", re.DOTALL)
_DELIMITER_NAMES = {"\t": "tabs", " ": "spaces"}


class DataFormatError(ValueError):
    """Malformed input, located by file and line (1-based)."""

    def __init__(self, path: PathLike, line: int, message: str):
        self.path = Path(path)
        self.line = line
        super().__init__(f"{path}:{line}: {message}")


@dataclass
class ConversionReport:
    """What a conversion read, and what it had to repair."""

    format: str = ""
    scheme: str = ""
    sentences: int = 0
    empty_sentences: int = 0
    unannotated: int = 0
    characters: int = 0
    entities: Counter = field(default_factory=Counter)
    tags: Counter = field(default_factory=Counter)
    repairs: Dict[str, Counter] = field(default_factory=lambda: {kind: Counter() for kind in REPAIR_KINDS})
    tag_notation: str = ""
    token_suffixes: int = 0

    def add(self, doc: Doc, repairs: Iterable[Repair], annotated: bool = True) -> None:
        """Count a converted Doc and the repairs made to it; tags are counted in the report's scheme."""
        self.sentences += 1
        self.empty_sentences += not len(doc)
        self.characters += len(doc)
        self.token_suffixes += len(doc.user_data.get(CONLL_LAYOUT, {}).get("suffixes", ()))
        for repair in repairs:
            self.repairs[repair.kind][repair.label] += 1
        if annotated:
            self.entities.update(ent.label_ for ent in doc.ents)
            self.tags.update(doc_to_tags(doc, "-", self.scheme or "bio"))
        else:
            self.unannotated += 1

    def summary(self) -> str:
        """A few lines for the console: what was read, entities per type, and every repair made."""
        rows = [
            ["format, scheme", f"{self.format}, {self.scheme or '-'}"],
            ["sentences", f"{self.sentences:,} ({self.empty_sentences:,} empty, {self.unannotated:,} unannotated)"],
            ["characters", f"{self.characters:,}"],
        ]
        rows += [[f"entities {label}", f"{count:,}"] for label, count in sorted(self.entities.items())]
        rows.append(["entities", f"{sum(self.entities.values()):,}"])
        for kind, counts in self.repairs.items():
            if counts:
                by_label = ", ".join(f"{label} {count:,}" for label, count in sorted(counts.items()))
                rows.append([f"repairs {kind}", f"{sum(counts.values()):,} ({by_label})"])
        if not any(self.repairs.values()):
            rows.append(["repairs", "none"])
        return text_table(rows, aligns=("l", "r"))

    def to_dict(self) -> Dict:
        """A JSON-serialisable summary, counts sorted by label; every repair kind is listed."""
        repairs = {}
        for kind, counts in self.repairs.items():
            repairs[kind] = dict(sorted(counts.items()))
            repairs[f"{kind}_total"] = sum(counts.values())
        return {
            "format": self.format,
            "scheme": self.scheme,
            "sentences": self.sentences,
            "empty_sentences": self.empty_sentences,
            "unannotated": self.unannotated,
            "characters": self.characters,
            "entities": dict(sorted(self.entities.items())),
            "entities_total": sum(self.entities.values()),
            "tags": dict(sorted(self.tags.items())),
            "repairs": repairs,
            "repairs_total": sum(sum(counts.values()) for counts in self.repairs.values()),
            "tag_notation": self.tag_notation,
            "token_suffixes": self.token_suffixes,
        }


def open_text(path: PathLike, encoding: str = "utf-8") -> "TextFile":
    """Open a text file (UTF-8 unless told otherwise), gzip-compressed if its name ends in `.gz`.

    A UTF-8 BOM is dropped; universal newlines make CRLF files read like LF
    ones. Lines are split on newlines only: never `str.splitlines`, which also
    splits on U+2028 and friends, characters that do occur in real text.
    Older Chinese corpora come in GBK or GB18030: pass that encoding.
    """
    return TextFile(path, encoding)


class TextFile:
    """A text file, read line by line or whole, whose decoding errors name the file, line and byte."""

    def __init__(self, path: PathLike, encoding: str):
        self.path = Path(path)
        self.encoding = encoding
        codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
        opener = gzip.open if self.path.suffix == ".gz" else open
        self._file = opener(self.path, "rt", encoding=codec, newline=None)

    def __enter__(self) -> "TextFile":
        return self

    def __exit__(self, *exception) -> None:
        self._file.close()

    def __iter__(self) -> Iterator[str]:
        try:
            yield from self._file
        except UnicodeDecodeError:
            raise self._decoding_error() from None

    def read(self) -> str:
        try:
            return self._file.read()
        except UnicodeDecodeError:
            raise self._decoding_error() from None

    def _decoding_error(self) -> DataFormatError:
        # The text layer decodes in blocks, so its error has no line: find it in the bytes.
        decoder = codecs.getincrementaldecoder(self.encoding)()
        opener = gzip.open if self.path.suffix == ".gz" else open
        line_no, byte = 0, None
        with opener(self.path, "rb") as raw:
            for line_no, line in enumerate(raw, start=1):
                try:
                    decoder.decode(line)
                except UnicodeDecodeError as error:
                    byte = line[error.start] if error.start < len(line) else line[-1]
                    break
        utf8 = codecs.lookup(self.encoding).name == "utf-8"
        message = f"not valid {'UTF-8' if utf8 else self.encoding}"
        if byte is not None:
            message += f" (byte 0x{byte:02x})"
        if utf8:
            message += "; if this is GBK, pass --encoding gb18030"
        return DataFormatError(self.path, line_no, message)


def read_lines(path: PathLike, encoding: str = "utf-8") -> Iterator[str]:
    """Yield the lines of a text file without their line ends."""
    with open_text(path, encoding) as file:
        for line in file:
            yield line.rstrip("\n")


def are_characters(tokens: Sequence[str]) -> bool:
    """Whether a line's tokens are single characters: the two-file format's text side."""
    return all(len(token) == 1 for token in tokens)


def split_tokens(line: str) -> List[str]:
    """Split a line of space-separated characters (runs of spaces allowed)."""
    line = line.strip(" ")
    return _TOKEN_SEPARATOR.split(line) if line else []


def tag_path_for(text_path: PathLike) -> Path:
    """The tag file the report names after a text file: `train.txt.gz` → `train_TAG.txt.gz`."""
    path = Path(text_path)
    stem, dot, suffixes = path.name.partition(".")
    return path.with_name(f"{stem}_TAG{dot}{suffixes}")


def detect_format(path: PathLike, encoding: str = "utf-8") -> str:
    """Guess the format of a data file: one of `FORMATS`.

    A file with its tag file beside it (`tag_path_for`) is the two-file format.
    A first line of columns whose last column, and not every column, is a tag
    is CoNLL. A file that starts with `{` or `[` is JSON: CLUENER if an object
    has "label", spaCy's JSONL if one has "entities" or "spans"; with neither
    (as in CLUENER's test set) a `.jsonl` name means JSONL, any other CLUENER.
    """
    path = Path(path)
    if tag_path_for(path).exists():
        return "lines"
    line_no, line = 1, ""
    with open_text(path, encoding) as file:
        for line_no, line in enumerate(file, start=1):
            if line.strip():
                break
    line = line.rstrip(" \t\n")
    columns = line.split("\t" if "\t" in line else " ")
    # CoNLL first: a Weibo line may begin with "[" or "{", as `[0\tO` does.
    if len(columns) >= 2 and _is_tag(columns[-1]) and not all(map(_is_tag, columns)):
        return "conll"
    if line.lstrip().startswith(("{", "[")):
        return _json_format(path, encoding)
    raise DataFormatError(
        path,
        line_no,
        "cannot tell the format: expected columns of a character and its tag (CoNLL), JSON objects, "
        f"or a text file with its tag file {tag_path_for(path).name} beside it; name the format to read",
    )


def read_docs(
    path: PathLike,
    vocab: Vocab,
    format: str = "auto",
    scheme: str = "auto",
    strict: bool = False,
    tag_path: Optional[PathLike] = None,
    encoding: str = "utf-8",
) -> Tuple[List[Doc], ConversionReport]:
    """Read a data file into Docs with `doc.ents`, and report what was read and repaired.

    `format` is one of `FORMATS` or "auto" (`detect_format`); `scheme` one of
    `schemes.SCHEMES` or "auto" (`schemes.detect_scheme`), for the tag formats.
    The two-file format reads its tags from `tag_path`, by default the file
    `tag_path_for(path)`. With `strict`, any repair is a DataFormatError.
    """
    if format == "auto":
        format = "lines" if tag_path is not None else detect_format(path, encoding)
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: expected 'auto' or one of {', '.join(FORMATS)}")
    if scheme != "auto" and scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}: expected 'auto' or one of {', '.join(SCHEMES)}")
    if tag_path is not None and format != "lines":
        raise ValueError(f"a tag file goes with the two-file format 'lines', not {format!r}")
    report = ConversionReport(format=format)
    if format in _SPAN_READERS:
        return _span_docs(path, vocab, _SPAN_READERS[format], strict, report, encoding), report
    if format == "lines":
        sentences = list(_two_file_sentences(path, tag_path or tag_path_for(path), encoding))
    else:
        sentences = _conll_sentences(path, encoding)
    return _tagged_docs(sentences, vocab, scheme, strict, report), report


def read_two_file(
    text_path: PathLike,
    tag_path: PathLike,
    vocab: Vocab,
    scheme: str = "auto",
    strict: bool = False,
    encoding: str = "utf-8",
) -> Tuple[List[Doc], ConversionReport]:
    """Read the report's two-file format into char-token Docs with `doc.ents`.

    One Doc per line, empty lines included (as empty Docs), so that Doc N is
    line N. A stray `I_X` starts a new entity and is counted as a repair.
    """
    return read_docs(text_path, vocab, "lines", scheme, strict, tag_path, encoding)


def make_doc(vocab: Vocab, chars: Sequence[str], tags: Optional[Sequence[str]] = None) -> Doc:
    """A Doc with one token per character, no spaces, and entities from valid BILUO tags.

    BILUO is what `schemes.to_biluo` reads every scheme into.
    """
    doc = Doc(vocab, words=list(chars), spaces=[False] * len(chars))
    if tags is not None:
        doc.ents = biluo_tags_to_spans(doc, tags)
    return doc


def text_doc(vocab: Vocab, text: str) -> Doc:
    """The Doc of `text` that `spacy.blank("zh").make_doc` makes: its char segmenter's tokens.

    A token a character, except that a single space after a character is that
    token's trailing whitespace, so `doc.text == text`.
    """
    words, spaces = get_words_and_spaces(list(text), text)
    return Doc(vocab, words=words, spaces=spaces)


def doc_to_tags(doc: Doc, separator: str = "-", scheme: str = "bio") -> List[str]:
    """The tag of each token in `scheme`, written with `separator` ("-" or "_").

    Tokens without entity annotation are written O.
    """
    tags = from_biluo(doc_to_biluo_tags(doc), SCHEMES[scheme])
    return [format_tag(tag, separator) for tag in tags]


def write_two_file(
    docs: Iterable[Doc], text_path: PathLike, tag_path: PathLike, separator: str = "-", scheme: str = "bio"
) -> None:
    """Write Docs in the report's two-file format: a Doc a line, tags in `scheme`.

    The spaces between tokens are not written (the format has no way to tell
    them from the separators); a token holding a space cannot be written.
    """
    docs = list(docs)
    write_lines(text_path, (" ".join(_writable(token.text, " ") for token in doc) for doc in docs))
    write_lines(tag_path, (" ".join(doc_to_tags(doc, separator, scheme)) for doc in docs))


def write_conll(docs: Iterable[Doc], path: PathLike, separator: str = "-", scheme: str = "bio") -> None:
    """Write Docs as CoNLL lines of a token and its tag in `scheme`, a blank line after each Doc.

    A Doc read from CoNLL keeps the layout it was read in (`CONLL_LAYOUT`: the
    delimiter, middle columns, Weibo's digits); any other is written
    `char TAG`, space-separated. An empty Doc has no lines, so it is skipped.
    """
    write_lines(path, _conll_lines(docs, separator, scheme))


def read_text(path: PathLike, encoding: str = "utf-8") -> Tuple[List[List[str]], bool]:
    """Read text for prediction: one sentence a line, empty lines kept.

    Lines of space-separated single characters (the two-file format's text
    side) are split on the spaces; any other line is plain text whose
    non-space characters are the tokens. Returns the tokens of each line and
    whether the file was in the space-separated format.
    """
    lines = list(read_lines(path, encoding))
    tokenised = [split_tokens(line) for line in lines]
    space_separated = any(tokenised) and all(map(are_characters, tokenised))
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


# The tag formats: sentences of tokens and tags, whose scheme is known once all are read.


@dataclass
class _TaggedSentence:
    """A sentence of a tag format, its tags parsed but not yet read in a scheme."""

    tokens: List[str]
    tags: List[BioTag]
    separators: Set[str]
    path: Path
    line: int
    # CoNLL: tag i is on line `line + i`; two-file: every tag is on `line`.
    one_tag_a_line: bool
    layout: Optional[dict] = None

    @classmethod
    def parse(
        cls,
        tokens: List[str],
        tags: Sequence[str],
        path: PathLike,
        line: int,
        one_tag_a_line: bool,
        layout: Optional[dict] = None,
    ) -> "_TaggedSentence":
        """Parse the tags of a sentence, any scheme's letters allowed; an invalid tag is an error."""
        sentence = cls(tokens, [], set(), Path(path), line, one_tag_a_line, layout)
        for index, tag_string in enumerate(tags):
            try:
                tag, separator = parse_tag(tag_string, ALL_LETTERS)
            except ValueError as error:
                raise sentence.error(index, str(error)) from None
            sentence.tags.append(tag)
            sentence.separators.add(separator)
        return sentence

    def error(self, index: int, message: str) -> DataFormatError:
        """The error to raise about tag `index`, at its line."""
        if self.one_tag_a_line:
            return DataFormatError(self.path, self.line + index, message)
        return DataFormatError(self.path, self.line, f"tag {index + 1}: {message}")


def _two_file_sentences(text_path: PathLike, tag_path: PathLike, encoding: str) -> Iterator[_TaggedSentence]:
    """The sentences of the two-file format, a line of each file at a time."""
    lines = itertools.zip_longest(read_lines(text_path, encoding), read_lines(tag_path, encoding))
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
        tags = split_tokens(tag_line)
        if len(chars) != len(tags):
            raise DataFormatError(
                tag_path, line_no, f"{len(tags)} tags for {len(chars)} characters in {text_path}:{line_no}"
            )
        yield _TaggedSentence.parse(chars, tags, tag_path, line_no, one_tag_a_line=False)


def _conll_sentences(path: PathLike, encoding: str) -> List[_TaggedSentence]:
    """The sentences of a CoNLL file: the first column the token, the last its tag.

    The first line fixes the delimiter (a tab if it has one, else a space) and
    the number of columns. Trailing spaces and tabs are ignored. If every
    token ends in ASCII digits after its first character, the digits are
    Weibo's segmentation positions, kept in the layout rather than the token.
    """
    blocks: List[Tuple[int, List[List[str]]]] = []  # each sentence's first line and columns
    rows: Optional[List[List[str]]] = None
    delimiter, n_columns, columns_line = " ", 0, 0
    for line_no, line in enumerate(read_lines(path, encoding), start=1):
        line = line.rstrip(" \t")
        if not line:
            rows = None
            continue
        if not n_columns:
            delimiter = "\t" if "\t" in line else " "
            n_columns, columns_line = len(line.split(delimiter)), line_no
            if n_columns < 2:
                raise DataFormatError(path, line_no, "expected a character and its tag, separated by a tab or a space")
        columns = line.split(delimiter)
        if len(columns) != n_columns:
            raise DataFormatError(
                path,
                line_no,
                f"{len(columns)} columns: expected {n_columns} separated by {_DELIMITER_NAMES[delimiter]}, "
                f"as on line {columns_line}",
            )
        if not columns[0]:
            raise DataFormatError(path, line_no, "empty first column: expected a character")
        if rows is None:
            rows = []
            blocks.append((line_no, rows))
        rows.append(columns)
    matches = [[_SEGMENTATION_SUFFIX.fullmatch(columns[0]) for columns in rows] for _, rows in blocks]
    suffixed = bool(blocks) and all(all(sentence) for sentence in matches)
    sentences = []
    for (line, rows), sentence_matches in zip(blocks, matches):
        tokens = [columns[0] for columns in rows]
        layout: Dict[str, object] = {} if delimiter == " " else {"delimiter": delimiter}
        if suffixed:
            tokens = [match.group(1) for match in sentence_matches]
            layout["suffixes"] = [match.group(2) for match in sentence_matches]
        if n_columns > 2:
            layout["columns"] = [columns[1:-1] for columns in rows]
        tags = [columns[-1] for columns in rows]
        sentences.append(_TaggedSentence.parse(tokens, tags, path, line, one_tag_a_line=True, layout=layout or None))
    return sentences


def _tagged_docs(
    sentences: List[_TaggedSentence], vocab: Vocab, scheme_name: str, strict: bool, report: ConversionReport
) -> List[Doc]:
    """Read the sentences' tags in their scheme (detected if "auto") into Docs."""
    if scheme_name == "auto":
        scheme_name = detect_scheme(sentence.tags for sentence in sentences)
    scheme = SCHEMES[scheme_name]
    report.scheme = scheme_name
    notations: Set[str] = set()
    docs = []
    for sentence in sentences:
        separator = min(sentence.separators - {""}, default="-")
        for index, tag in enumerate(sentence.tags):
            if tag.prefix != OUTSIDE and tag.prefix not in scheme.letters:
                raise sentence.error(
                    index,
                    f"tag {format_tag(tag, separator)!r} is not in the {scheme_name.upper()} scheme: "
                    f"expected {scheme.describe()}",
                )
        biluo, repairs = to_biluo(sentence.tags, scheme, separator)
        if strict and repairs:
            raise sentence.error(repairs[0].index, repairs[0].message)
        doc = make_doc(vocab, sentence.tokens, biluo)
        if sentence.layout:
            doc.user_data[CONLL_LAYOUT] = sentence.layout
        report.add(doc, repairs)
        notations |= sentence.separators
        docs.append(doc)
    report.tag_notation = "/".join(sorted(notations - {""}))
    return docs


def _conll_lines(docs: Iterable[Doc], separator: str, scheme: str) -> Iterator[str]:
    """The lines `write_conll` writes."""
    for doc in docs:
        if not len(doc):
            continue
        layout = doc.user_data.get(CONLL_LAYOUT, {})
        delimiter = layout.get("delimiter", " ")
        suffixes = layout.get("suffixes", [""] * len(doc))
        middle = layout.get("columns", [[]] * len(doc))
        if len(suffixes) != len(doc) or len(middle) != len(doc):
            raise ValueError(f"the CoNLL layout of the Doc {doc.text[:20]!r}… no longer matches its tokens")
        for token, suffix, columns, tag in zip(doc, suffixes, middle, doc_to_tags(doc, separator, scheme)):
            yield delimiter.join([_writable(token.text, delimiter) + suffix, *columns, tag])
        yield ""


def _writable(token: str, delimiter: str) -> str:
    """The token, if a line-based format with this delimiter can hold it."""
    if delimiter in token or "\n" in token or "\r" in token:
        raise ValueError(f"cannot write the token {token!r}: it holds the format's delimiter or a line break")
    return token


def _is_tag(column: str) -> bool:
    """Whether a column reads as a tag of any scheme."""
    try:
        parse_tag(column, ALL_LETTERS)
    except ValueError:
        return False
    return True


# The span formats: JSON objects of a text and its entities' character offsets.

_Span = Tuple[int, int, str]  # start, end (exclusive), label


def _json_values(path: PathLike, encoding: str) -> Iterator[Tuple[int, object]]:
    """Yield each JSON value of a file with the line it starts on.

    The values may follow one another (one a line, or pretty-printed) or be
    the items of one top-level array.
    """
    with open_text(path, encoding) as file:
        text = file.read()
    decoder = json.JSONDecoder()
    line, counted = 1, 0

    def line_at(position: int) -> int:
        # Positions only grow, so counting from the last one keeps this linear.
        nonlocal line, counted
        line += text.count("\n", counted, position)
        counted = position
        return line

    def skip_space(position: int) -> int:
        while position < len(text) and text[position] in " \t\n\r":
            position += 1
        return position

    position = skip_space(0)
    in_array = text.startswith("[", position)
    if in_array:
        position = skip_space(position + 1)
    while position < len(text):
        if in_array and text[position] == "]":
            if skip_space(position + 1) < len(text):
                raise DataFormatError(path, line_at(skip_space(position + 1)), "invalid JSON: data after the array")
            return
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise DataFormatError(path, error.lineno, f"invalid JSON: {error.msg} (column {error.colno})") from None
        yield line_at(position), value
        position = skip_space(end)
        if in_array and text.startswith(",", position):
            position = skip_space(position + 1)
        elif in_array and not text.startswith("]", position):
            raise DataFormatError(path, line_at(position), "invalid JSON: expected ',' or ']' after an array item")
    if in_array:
        raise DataFormatError(path, line_at(len(text.rstrip())), "invalid JSON: expected ']' to close the array")


def _json_format(path: PathLike, encoding: str) -> str:
    """ "cluener" or "jsonl", from the keys of a JSON file's objects (see `detect_format`)."""
    for _, value in _json_values(path, encoding):
        if isinstance(value, dict) and "label" in value:
            return "cluener"
        if isinstance(value, dict) and ("entities" in value or "spans" in value):
            return "jsonl"
    return "jsonl" if ".jsonl" in Path(path).suffixes else "cluener"


def _text_of(value: object) -> str:
    """The "text" of a JSON object."""
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        shown = json.dumps(value, ensure_ascii=False)
        raise ValueError(f'expected a JSON object with a "text" string, found {shown[:80]}')
    return value["text"]


def _cluener_spans(value: object) -> Tuple[str, Optional[List[_Span]], List[Repair]]:
    """The text, spans (None without "label") and repairs of a CLUENER object."""
    text = _text_of(value)
    if "label" not in value:
        return text, None, []
    groups = value["label"]
    if not isinstance(groups, dict) or not all(isinstance(mentions, dict) for mentions in groups.values()):
        raise ValueError('expected "label" as {type: {mention: [[start, end], ...]}}')
    spans: List[_Span] = []
    repairs = []
    for label, mentions in groups.items():
        for mention, offsets in mentions.items():
            # Anything but a list of pairs is reported as the bad pair it is.
            for pair in offsets if isinstance(offsets, list) else [offsets]:
                if not (isinstance(pair, list) and len(pair) == 2 and all(type(i) is int for i in pair)):
                    raise ValueError(
                        f"expected [start, end] offsets of the {label} mention {mention!r}, found {pair!r}"
                    )
                start, end = pair
                if not 0 <= start <= end < len(text):
                    raise ValueError(
                        f"offsets [{start}, {end}] of the {label} mention {mention!r} are out of range: "
                        f"expected 0 <= start <= end < {len(text)}, the text's length"
                    )
                if text[start : end + 1] != mention:
                    repairs.append(
                        Repair(
                            "mention_mismatch",
                            label,
                            len(spans),
                            f"the {label} mention {mention!r} at [{start}, {end}] is not the text there, "
                            f"{text[start : end + 1]!r}: expected them to be equal",
                        )
                    )
                spans.append((start, end + 1, label))
    return text, spans, repairs


def _jsonl_spans(value: object) -> Tuple[str, Optional[List[_Span]], List[Repair]]:
    """The text and spans (None without "entities" or "spans") of a spaCy/Prodigy object."""
    text = _text_of(value)
    keys = [key for key in ("entities", "spans") if key in value]
    if not keys:
        return text, None, []
    if len(keys) > 1:
        raise ValueError('expected "entities" or "spans", not both')
    entries = value[keys[0]]
    spans: List[_Span] = []
    # Anything but a list of items is reported as the bad item it is.
    for entry in entries if isinstance(entries, list) else [entries]:
        if isinstance(entry, dict):
            start, end, label = entry.get("start"), entry.get("end"), entry.get("label")
        else:
            start, end, label = entry if isinstance(entry, list) and len(entry) == 3 else (None, None, None)
        if not (type(start) is int and type(end) is int and isinstance(label, str) and label):
            raise ValueError(
                f'expected "{keys[0]}" items as [start, end, label] or {{"start", "end", "label"}}, found {entry!r}'
            )
        if not 0 <= start < end <= len(text):
            raise ValueError(
                f"{label} span [{start}, {end}) is out of range: "
                f"expected 0 <= start < end <= {len(text)}, the text's length"
            )
        spans.append((start, end, label))
    return text, spans, []


_SPAN_READERS: Dict[str, Callable[[object], Tuple[str, Optional[List[_Span]], List[Repair]]]] = {
    "cluener": _cluener_spans,
    "jsonl": _jsonl_spans,
}


def _span_docs(
    path: PathLike, vocab: Vocab, read_spans: Callable, strict: bool, report: ConversionReport, encoding: str
) -> List[Doc]:
    """Read a JSON file's objects into Docs, a Doc an object."""
    docs = []
    for line, value in _json_values(path, encoding):
        try:
            text, spans, repairs = read_spans(value)
        except ValueError as error:
            raise DataFormatError(path, line, str(error)) from None
        doc = text_doc(vocab, text)
        if spans is not None:
            spans, dropped = _drop_overlaps(spans)
            ents, trimmed = _align_spans(doc, spans)
            repairs += dropped + trimmed
            if strict and repairs:
                raise DataFormatError(path, line, repairs[0].message)
            doc.ents = ents
        report.add(doc, repairs, annotated=spans is not None)
        docs.append(doc)
    return docs


def _drop_overlaps(spans: List[_Span]) -> Tuple[List[_Span], List[Repair]]:
    """The spans without overlaps, in text order, and a Repair for each span dropped.

    The longest span is kept, and the first in the file among equally long ones.
    """
    longest_first = sorted(range(len(spans)), key=lambda i: (spans[i][0] - spans[i][1], i))
    kept: List[_Span] = []
    repairs = []
    for index in longest_first:
        start, end, label = spans[index]
        other = next((span for span in kept if span[0] < end and start < span[1]), None)
        if other is None:
            kept.append(spans[index])
            continue
        repairs.append(
            Repair(
                "overlapping_span_dropped",
                label,
                index,
                f"the {label} span at characters {start}-{end - 1} overlaps the {other[2]} span at "
                f"{other[0]}-{other[1] - 1}: expected entities that do not overlap",
            )
        )
    return sorted(kept), repairs


def _align_spans(doc: Doc, spans: List[_Span]) -> Tuple[List[Span], List[Repair]]:
    """The spans as entities of `doc`; a span whose edge is a space that is no token is trimmed."""
    ents = []
    repairs = []
    for index, (start, end, label) in enumerate(spans):
        span = doc.char_span(start, end, label=label)
        if span is None:
            span = doc.char_span(start, end, label=label, alignment_mode="contract")
            repairs.append(
                Repair(
                    "whitespace_trimmed" if span is not None else "whitespace_span_dropped",
                    label,
                    index,
                    f"the {label} span at characters {start}-{end - 1} begins or ends on a space, "
                    "which is no token: expected it to begin and end on a character",
                )
            )
        if span is not None:
            ents.append(span)
    return ents, repairs
