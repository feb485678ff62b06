"""Tag schemes: the user's tag notation, BIO/IOB1/BIOES/BMES, and the transitions BIO allows.

Every scheme is read into spaCy's BILUO tags and written from them, because
each is BILUO spelt with other letters:

| BILUO | B | I | L | U | what the letter says                  |
|-------|---|---|---|---|---------------------------------------|
| BIO   | B | I | I | B | begin / inside; the end is implicit   |
| IOB1  | B | I | I | B | as BIO, but I begins an entity and B  |
|       |   |   |   |   | only splits two adjacent X entities   |
| BIOES | B | I | E | S | begin, inside, end, single            |
| BMES  | B | M | E | S | BIOES with M for I                    |

`to_biluo` reads a sequence in one scheme and names every violation of it
(a `Repair`) together with the reading chosen, so that callers can count the
repairs or, under --strict, refuse the input. `from_biluo` writes the other
way, which `formats.doc_to_tags` combines with spaCy's `doc_to_biluo_tags`.

Users write `B_LOC` as often as `B-LOC`; `parse_tag` accepts both and
`format_tag` writes a tag back in the user's notation, so files keep the
notation they came in. The pipe itself always predicts BIO (`bio_tags`).
"""

import re
from collections import Counter
from functools import lru_cache
from typing import Dict, Iterable, List, NamedTuple, Sequence, Tuple

import numpy

OUTSIDE = "O"
BEGIN = "B"
INSIDE = "I"
# The prefix letters of all the schemes below: what `parse_tag` accepts before
# the scheme of a file is known.
ALL_LETTERS = "BIMES"

_SEPARATORS = "-_"

# The kinds of violation `to_biluo` reports, with the reading it chooses.
TAG_REPAIRS = {
    "stray_inside": "I-X (M-X) that continues no X entity: read as the start of one",
    "stray_end": "E-X that closes no X entity: read as a one-character entity (S-X)",
    "unclosed_entity": "B-X or I-X (M-X) not closed by E-X: the entity ends at its last tag",
    "stray_begin": "IOB1's B-X not right after an X entity: read as the start of one",
}


class BioTag(NamedTuple):
    """A parsed tag: its prefix letter ("B", "I", "M", "E", "S") or "O", and the label ("" for O)."""

    prefix: str
    label: str


class Scheme(NamedTuple):
    """A tag scheme, as the letters it writes for each of spaCy's BILUO letters."""

    name: str
    spelling: Dict[str, str]
    # IOB1: an inside tag may begin an entity, and B only splits adjacent ones.
    inside_begins: bool = False

    @property
    def letters(self) -> str:
        """The scheme's prefix letters, in the order B, I/M, E, S."""
        return "".join(dict.fromkeys(self.spelling[letter] for letter in "BILU"))

    @property
    def closes(self) -> bool:
        """Whether the scheme marks an entity's last token (E-X) rather than leaving it implicit."""
        return self.spelling["L"] != self.spelling["I"]

    def role(self, letter: str) -> str:
        """The BILUO letter a prefix letter of this scheme stands for (B for BIO's B, L for E)."""
        return next(biluo for biluo in "BILU" if self.spelling[biluo] == letter)

    def describe(self) -> str:
        """The tags the scheme allows, for messages: "O, B-X, M-X, E-X or S-X"."""
        tags = [OUTSIDE] + [f"{letter}-X" for letter in self.letters]
        return ", ".join(tags[:-1]) + " or " + tags[-1]


SCHEMES = {
    scheme.name: scheme
    for scheme in (
        Scheme("bio", {"B": "B", "I": "I", "L": "I", "U": "B"}),
        Scheme("iob1", {"B": "B", "I": "I", "L": "I", "U": "B"}, inside_begins=True),
        Scheme("bioes", {"B": "B", "I": "I", "L": "E", "U": "S"}),
        Scheme("bmes", {"B": "B", "I": "M", "L": "E", "U": "S"}),
    )
}


class Repair(NamedTuple):
    """A violation of a scheme or of a span format, and where it is.

    `kind` names the reading chosen (see `TAG_REPAIRS`), `index` is the token
    (or span) it concerns, and `message` says what was expected there: the
    error to show when the caller refuses repairs (--strict).
    """

    kind: str
    label: str
    index: int
    message: str


@lru_cache(maxsize=4096)
def parse_tag(tag: str, letters: str = "BI") -> Tuple[BioTag, str]:
    """Parse `O` or a prefix from `letters` + `-`/`_` + label; return the tag and its separator.

    Cached: a corpus has a few dozen distinct tags and millions of tokens, and
    the cache hands back one shared tuple per tag. Raises ValueError for
    anything else (the caller adds file and line).
    """
    if tag == OUTSIDE:
        return BioTag(OUTSIDE, ""), ""
    match = re.fullmatch(rf"([{letters}])([{_SEPARATORS}])(\S+)", tag)
    if match is None:
        examples = "/".join(f"{letter}-X" for letter in letters)
        raise ValueError(f"invalid tag {tag!r}: expected 'O' or {examples}, with '-' or '_' (B_X)")
    prefix, separator, label = match.groups()
    return BioTag(prefix, label), separator


def format_tag(tag: BioTag, separator: str = "-") -> str:
    """Write a tag in the notation given by `separator` ("-" or "_")."""
    if tag.prefix == OUTSIDE:
        return OUTSIDE
    return f"{tag.prefix}{separator}{tag.label}"


def detect_scheme(sentences: Iterable[Sequence[BioTag]]) -> str:
    """Guess a corpus's scheme from its tags: "bmes", "bioes", "iob1" or "bio".

    M- means BMES; otherwise E- or S- means BIOES. Among B/I tags, BIO begins
    entities with B-X and IOB1 with I-X, so the letter that begins more
    entities wins: noisy BIO corpora (People's Daily 2014) have a few stray
    I-X, and noisy IOB1 a few needless B-X. A corpus without entities is BIO.
    """
    letters = set()
    begins: Counter = Counter()
    for tags in sentences:
        previous = None
        for tag in tags:
            letters.add(tag.prefix)
            if tag.prefix in (BEGIN, INSIDE) and tag.label != previous:
                begins[tag.prefix] += 1
            previous = tag.label if tag.prefix != OUTSIDE else None
    if "M" in letters:
        return "bmes"
    if letters & {"E", "S"}:
        return "bioes"
    return "iob1" if begins[INSIDE] > begins[BEGIN] else "bio"


def to_biluo(tags: Sequence[BioTag], scheme: Scheme, separator: str = "-") -> Tuple[List[str], List[Repair]]:
    """Read a sentence's tags in `scheme` into valid BILUO tags, with a `Repair` per violation.

    The tags' prefixes must be letters of the scheme. The readings chosen are
    the usual ones (spaCy's `iob_to_biluo` makes the first for BIO): an inside
    or end tag that continues nothing begins an entity, and an entity left
    open ends at its last tag. `separator` only spells the tags in messages.
    """
    biluo: List[str] = []
    repairs: List[Repair] = []

    def spell(letter: str, label: str) -> str:
        return f"{scheme.spelling[letter]}{separator}{label}"

    def close_open_entity(index: int, label: str, expected: str) -> None:
        if scheme.closes:
            message = f"the {label} entity is not closed: expected {expected}"
            repairs.append(Repair("unclosed_entity", label, index, message))
        biluo[-1] = ("U" if biluo[-1][0] == "B" else "L") + biluo[-1][1:]

    open_label = None  # the label of an entity the previous tag left open
    for index, (letter, label) in enumerate(tags):
        role = OUTSIDE if letter == OUTSIDE else scheme.role(letter)
        continues = role in "IL" and label == open_label
        if open_label is not None and not continues:
            found = format_tag(BioTag(letter, label), separator)
            close_open_entity(index, open_label, f"{spell('I', open_label)} or {spell('L', open_label)}, found {found}")
        if role in "IL" and not continues:
            if not (scheme.inside_begins and role == "I"):
                kind = "stray_inside" if role == "I" else "stray_end"
                verb = "continues" if role == "I" else "closes"
                repairs.append(
                    Repair(
                        kind,
                        label,
                        index,
                        f"{spell(role, label)} {verb} no {label} entity: expected {spell('B', label)} before it",
                    )
                )
            role = "B" if role == "I" else "U"
        elif role == "B" and scheme.inside_begins and label != open_label:
            repairs.append(
                Repair(
                    "stray_begin",
                    label,
                    index,
                    f"{spell('B', label)} follows no {label} entity: IOB1 begins an entity with {spell('I', label)}",
                )
            )
        biluo.append(OUTSIDE if role == OUTSIDE else f"{role}-{label}")
        open_label = label if role in "BI" else None
    if open_label is not None:
        close_open_entity(len(tags) - 1, open_label, f"{spell('L', open_label)} before the end of the sentence")
    return biluo, repairs


def from_biluo(biluo: Sequence[str], scheme: Scheme) -> List[BioTag]:
    """Write valid BILUO tags (`B-X`, `I-X`, `L-X`, `U-X`, `O`) in `scheme`."""
    tags = []
    previous = None  # the label of the previous token
    for tag in biluo:
        if tag == OUTSIDE:
            tags.append(BioTag(OUTSIDE, ""))
            previous = None
            continue
        letter, label = tag[0], tag[2:]
        # IOB1 begins with I unless the entity follows another of its type.
        if scheme.inside_begins and letter in "BU" and previous != label:
            letter = "I"
        tags.append(BioTag(scheme.spelling[letter], label))
        previous = label
    return tags


def bio_tags(labels: Iterable[str]) -> List[str]:
    """The tag set for entity labels: `O`, then `B-X`, `I-X` for each label."""
    tags = [OUTSIDE]
    for label in labels:
        tags.extend((f"{BEGIN}-{label}", f"{INSIDE}-{label}"))
    return tags


class AllowedTransitions(NamedTuple):
    """Boolean masks of what a BIO sequence may do, over a tag set of size K.

    start[j]: may a sequence begin with tag j; transitions[i, j]: may tag j follow
    tag i; end[i]: may a sequence end with tag i.

    A blank token (whitespace, control characters) may sit inside an entity
    but never at its edge: blank_tags[j]: may it take tag j (not `B-X`);
    blank_transitions[i, j]: may tag j follow it when it has tag i (after
    `I-X`, only `I-X`); blank_end[i]: may a sequence end on it with tag i (`O`).
    """

    start: numpy.ndarray
    transitions: numpy.ndarray
    end: numpy.ndarray
    blank_tags: numpy.ndarray
    blank_transitions: numpy.ndarray
    blank_end: numpy.ndarray


@lru_cache(maxsize=16)
def allowed_transitions(tags: Tuple[str, ...]) -> AllowedTransitions:
    """The transitions of a valid BIO sequence: `I-X` only after `B-X` or `I-X`.

    Cached, since decoding asks for it every batch; treat the masks as read-only.
    """
    parsed = [parse_tag(tag)[0] for tag in tags]
    n_tags = len(parsed)
    start = numpy.ones(n_tags, dtype=bool)
    transitions = numpy.ones((n_tags, n_tags), dtype=bool)
    end = numpy.ones(n_tags, dtype=bool)
    for j, tag in enumerate(parsed):
        if tag.prefix == INSIDE:
            start[j] = False
            for i, previous in enumerate(parsed):
                transitions[i, j] = previous.label == tag.label
    outside = numpy.array([tag.prefix == OUTSIDE for tag in parsed])
    inside = numpy.array([tag.prefix == INSIDE for tag in parsed])
    blank_tags = outside | inside
    # Out of a blank I-X only I-X may follow (the transitions keep it of type X).
    blank_transitions = transitions & (outside[:, None] | inside[None, :])
    return AllowedTransitions(start, transitions, end, blank_tags, blank_transitions, outside.copy())


@lru_cache(maxsize=16)
def inside_of_begin(tags: Tuple[str, ...]) -> Tuple[int, ...]:
    """For each tag, the index of its entity's `I-X` if it is a `B-X`, else -1."""
    index = {tag: i for i, tag in enumerate(tags)}
    parsed = [parse_tag(tag)[0] for tag in tags]
    return tuple(index[f"{INSIDE}-{tag.label}"] if tag.prefix == BEGIN else -1 for tag in parsed)


def is_valid_bio(tags: Sequence[str]) -> bool:
    """Whether a sequence of BIO tags needs no repair (see `to_biluo`)."""
    return not to_biluo([parse_tag(tag)[0] for tag in tags], SCHEMES["bio"])[1]
