"""Every character its own input: one vocabulary id per token, and its bigrams.

A wordpiece tokenizer that sees `doc.text` makes `2013` or `iPhone` one piece
shared by several character tokens, and deletes whitespace and control
characters, so alignment has to guess. Chinese BERT-NER code instead feeds one
character per position; so does this module. `CharVocab.token_id` maps one
spaCy token to exactly one id of a BERT vocabulary, trying in turn:

1. its NFKC form, which folds width (`１２` → `12`, `Ａ` → `A`, `，` → `,`);
2. that, lower-cased (bert-base-chinese's vocabulary has no `A`–`Z`);
3. the text as it is;
4. `PLAIN_TWINS`, for marks the vocabulary lacks but whose plain twin it has
   (`“` → `"`, `—` → `-`);
5. the first character of the result (`…` folds to `...`, and a multi-character
   token from another segmenter is read by its first character);
6. whitespace → `WHITESPACE_TOKEN`, and anything else → `[UNK]`.

`doc.text` is never changed: only the ids are.

Bigrams are keyed on the same folded characters, so that `１２月` and `12月`
share them too. A token's left bigram is its previous character and itself,
its right bigram itself and its next character; `BOUNDARY` stands before the
first and after the last character of a text.
"""

import unicodedata
from functools import lru_cache
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import numpy
from spacy.strings import hash_string

UNKNOWN_TOKEN = "[UNK]"
# Whitespace must get an id of its own (it sits inside entities such as
# `Apple Park`), and bert-base-chinese has no entry for it: the first
# unused slot takes that role.
WHITESPACE_TOKEN = "[unused1]"
BOUNDARY = "\x02"
# Marks that bert-base-chinese lacks, each with the twin it has.
PLAIN_TWINS: Mapping[str, str] = {
    "“": '"',
    "”": '"',
    "„": '"',
    "‘": "'",
    "’": "'",
    "‚": "'",
    "—": "-",
    "–": "-",
    "―": "-",
    "−": "-",
}


def fold(text: str) -> str:
    """A token's text as the vocabularies see it: NFKC, lower case, plain twins.

    Whitespace folds to a single space, and every other character with no
    printable form (control and format characters, U+FFFD) to U+FFFD.
    """
    folded = unicodedata.normalize("NFKC", text).lower()
    if not folded or folded.isspace():
        return " "
    return "".join(_fold_char(char) for char in folded)


@lru_cache(maxsize=None)
def _fold_char(char: str) -> str:
    if char.isspace():
        return " "
    if unicodedata.category(char)[0] == "C" or char == "\ufffd":
        return "\ufffd"
    return PLAIN_TWINS.get(char, char)


@lru_cache(maxsize=None)
def is_blank(text: str) -> bool:
    """Whether a token is whitespace or control characters only: never an entity's edge."""
    return all(char.isspace() or unicodedata.category(char)[0] == "C" or char == "\ufffd" for char in text)


class CharVocab:
    """One id of a BERT vocabulary for every token, whatever its text."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)
        self.index: Dict[str, int] = {token: i for i, token in enumerate(self.tokens)}
        for required in (UNKNOWN_TOKEN, "[CLS]", "[SEP]", "[PAD]"):
            if required not in self.index:
                raise ValueError(f"the vocabulary has no {required} entry")
        self.unknown_id = self.index[UNKNOWN_TOKEN]
        self.whitespace_id = self.index.get(WHITESPACE_TOKEN, self.unknown_id)
        self.cls_id = self.index["[CLS]"]
        self.sep_id = self.index["[SEP]"]
        self.pad_id = self.index["[PAD]"]
        self._cache: Dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.tokens)

    def token_id(self, text: str) -> int:
        """The one vocabulary id of a token's text (see the module's docstring)."""
        found = self._cache.get(text)
        if found is None:
            found = self._cache[text] = self._look_up(text)
        return found

    def _look_up(self, text: str) -> int:
        nfkc = unicodedata.normalize("NFKC", text)
        # The width-folded form first: bert-base-chinese also has entries for
        # full-width `１２`, which would keep pd1998's digits apart from PD2014's.
        for candidate in (nfkc, nfkc.lower(), text):
            if candidate in self.index:
                return self.index[candidate]
        folded = fold(text)
        if folded == " ":
            return self.whitespace_id
        for candidate in (folded, folded[0]):
            if candidate in self.index:
                return self.index[candidate]
        return self.unknown_id

    def ids(self, texts: Iterable[str]) -> numpy.ndarray:
        """The ids of a sequence of token texts, as int64."""
        return numpy.fromiter((self.token_id(text) for text in texts), dtype="int64")

    @classmethod
    def from_file(cls, path) -> "CharVocab":
        """A BERT `vocab.txt`. Split on `\\n` only: two entries of bert-base-chinese hold U+2028."""
        with open(path, encoding="utf-8") as file:
            tokens = file.read().split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        return cls(tokens)


def folded_chars(texts: Iterable[str]) -> List[str]:
    """Each token's folded text, cut to one character (the bigrams' alphabet)."""
    return [fold(text)[0] for text in texts]


def bigrams(chars: Sequence[str]) -> List[str]:
    """The n + 1 bigrams of n folded characters, `BOUNDARY` at both ends:
    character i's left bigram is entry i, its right bigram entry i + 1."""
    padded = [BOUNDARY, *chars, BOUNDARY]
    return [left + right for left, right in zip(padded, padded[1:])]


class BigramVocab:
    """Bigram strings to rows of a bigram table; row 0 is every unknown bigram."""

    def __init__(self, keys: Sequence[str]):
        self.keys = list(keys)
        self.index = {key: i + 1 for i, key in enumerate(self.keys)}

    def __len__(self) -> int:
        """Rows of the table, the unknown row included."""
        return len(self.keys) + 1

    def rows(self, folded: Sequence[str]) -> numpy.ndarray:
        """The n + 1 bigram rows of a text given as its n tokens' folded characters."""
        index = self.index
        return numpy.fromiter((index.get(key, 0) for key in bigrams(folded)), dtype="int64")


def hashed_rows(folded: Sequence[str], buckets: int) -> numpy.ndarray:
    """(n + 1, 2) rows of a hashed table of `buckets` rows for the n + 1 bigrams
    of n folded characters: the two halves of each bigram's 64-bit hash, so
    that two bigrams which share one row seldom share the other."""
    keys = bigrams(folded)
    hashes = numpy.fromiter((hash_string(key) for key in keys), dtype="uint64", count=len(keys))
    halves = numpy.stack([hashes & numpy.uint64(0xFFFFFFFF), hashes >> numpy.uint64(32)], axis=1)
    return (halves % numpy.uint64(buckets)).astype("int64")


def text_bigrams(text: str) -> List[str]:
    """The bigrams of a raw line, one character a token, as the vectors are trained on."""
    return bigrams([fold(char) for char in text])


def load_vectors(path) -> Tuple[List[str], numpy.ndarray]:
    """Keys and vectors (float32) of a `.npz` table written by `vectors.save_vectors`."""
    with numpy.load(path, allow_pickle=False) as table:
        return [str(key) for key in table["keys"]], table["vectors"].astype("float32")


def lookup_rows(keys: Sequence[str], wanted: Sequence[str]) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(rows into `wanted`, rows into `keys`) of the entries both share."""
    position = {key: i for i, key in enumerate(keys)}
    pairs = [(i, position[key]) for i, key in enumerate(wanted) if key in position]
    if not pairs:
        return numpy.zeros((0,), dtype="int64"), numpy.zeros((0,), dtype="int64")
    wanted_rows, key_rows = zip(*pairs)
    return numpy.asarray(wanted_rows, dtype="int64"), numpy.asarray(key_rows, dtype="int64")
