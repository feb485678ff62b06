"""Lexicon features: which dictionary words each character begins, continues or ends.

A model trained on 1998's news has met few of 2014's places and names; a
dictionary that lists `伏尔加格勒` as a place tells it where such a word starts and
ends even so. Following SoftLexicon (Ma et al. 2020) in its simplest form,
character i gets one flag per (position, class): whether some dictionary word
of that class Begins at i, has i in its Middle, Ends at i, or is i alone
(Single). The flags are added to the character's embedding through a learned
projection, as the bigram vectors are.

Words are matched on the characters as the vocabularies fold them
(`char_inputs.folded_chars`, which the encoder computes once per text for the
bigrams and the lexicon), so full-width text finds the same words.
"""

import gzip
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy

POSITIONS = ("B", "M", "E", "S")
BEGIN, MIDDLE, END, SINGLE = range(len(POSITIONS))


class Lexicon:
    """Dictionary words, each with one class, and the (position, class) flags of a text."""

    def __init__(self, entries: Iterable[Tuple[str, str]]):
        self.entries: Dict[str, str] = dict(entries)
        self.classes: List[str] = sorted(set(self.entries.values()))
        if any(not word for word in self.entries):
            raise ValueError("the lexicon holds an empty word")
        # Every string that some longer word begins with: a match that is not one
        # of them cannot grow, so the search from a character stops there instead
        # of trying every length up to the longest word's.
        self._extendable = {word[:end] for word in self.entries for end in range(1, len(word))}
        self._class_ids = {name: i for i, name in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def width(self) -> int:
        """Flags per character: one for every (position, class)."""
        return len(POSITIONS) * len(self.classes)

    def features(self, folded: Sequence[str]) -> numpy.ndarray:
        """(len(folded), width) float32 flags of a text given as its tokens' folded
        characters (`char_inputs.folded_chars`)."""
        chars = "".join(folded)
        flags = numpy.zeros((len(chars), len(POSITIONS), len(self.classes)), dtype="float32")
        entries, extendable, class_ids = self.entries, self._extendable, self._class_ids
        for start in range(len(chars)):
            for end in range(start + 1, len(chars) + 1):
                piece = chars[start:end]
                name = entries.get(piece)
                if name is not None:
                    k = class_ids[name]
                    if end - start == 1:
                        flags[start, SINGLE, k] = 1.0
                    else:
                        flags[start, BEGIN, k] = 1.0
                        flags[start + 1 : end - 1, MIDDLE, k] = 1.0
                        flags[end - 1, END, k] = 1.0
                if piece not in extendable:
                    break
        return flags.reshape(len(chars), self.width)

    def to_dict(self) -> dict:
        return {"words": list(self.entries), "classes": list(self.entries.values())}

    @classmethod
    def from_dict(cls, data: dict) -> "Lexicon":
        return cls(zip(data["words"], data["classes"]))


def read_lexicon(path) -> Lexicon:
    """A lexicon file: one `word<TAB>class` a line, gzipped if the name ends in `.gz`."""
    opener = gzip.open if str(path).endswith(".gz") else open
    entries = []
    with opener(path, "rt", encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 2 or not fields[0] or not fields[1]:
                raise ValueError(f"{path}:{number}: expected `word<TAB>class`, got {line.rstrip()!r}")
            entries.append((fields[0], fields[1]))
    lexicon = Lexicon(entries)
    if len(lexicon) != len(entries):
        raise ValueError(f"{path}: {len(entries) - len(lexicon)} words occur more than once")
    return lexicon
