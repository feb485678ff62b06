"""Tag schemes: the user's tag notation, BIO tags and the transitions they allow.

Internally every tag is spaCy's IOB notation (`B-LOC`, `I-LOC`, `O`). Users
write `B_LOC` as often as `B-LOC`; `parse_tag` accepts both and `format_tag`
writes a tag back in the user's notation, so files keep the notation they came
in.
"""
import re
from collections import Counter
from functools import lru_cache
from typing import Iterable, List, NamedTuple, Sequence, Tuple

import numpy

OUTSIDE = "O"
BEGIN = "B"
INSIDE = "I"

_TAG_PATTERN = re.compile(r"^([BI])([-_])(\S+)$")


class BioTag(NamedTuple):
    """A parsed tag: prefix "B", "I" or "O", and the entity label ("" for O)."""

    prefix: str
    label: str


def parse_tag(tag: str) -> Tuple[BioTag, str]:
    """Parse `O`, `B-X`/`I-X` or `B_X`/`I_X`; return the tag and its separator.

    Raises ValueError for anything else (the caller adds file and line).
    """
    if tag == OUTSIDE:
        return BioTag(OUTSIDE, ""), ""
    match = _TAG_PATTERN.match(tag)
    if match is None:
        raise ValueError(
            f"invalid tag {tag!r}: expected 'O', 'B-X'/'I-X' or 'B_X'/'I_X'"
        )
    prefix, separator, label = match.groups()
    return BioTag(prefix, label), separator


def format_tag(tag: BioTag, separator: str = "-") -> str:
    """Write a tag in the notation given by `separator` ("-" or "_")."""
    if tag.prefix == OUTSIDE:
        return OUTSIDE
    return f"{tag.prefix}{separator}{tag.label}"


def repair_stray_inside(tags: Sequence[BioTag]) -> Tuple[List[BioTag], Counter]:
    """Make every `I-X` that does not continue an `X` entity begin one.

    Noisy corpora (People's Daily 2014 among them) hold `I-X` after `O` or after
    another type. The usual reading, and spaCy's own in `iob_to_biluo`, is that
    such a tag starts a new entity. Returns the repaired tags and the number of
    repairs per label, so that callers can report them.
    """
    repaired: List[BioTag] = []
    repairs: Counter = Counter()
    previous = BioTag(OUTSIDE, "")
    for tag in tags:
        if tag.prefix == INSIDE and previous.label != tag.label:
            tag = BioTag(BEGIN, tag.label)
            repairs[tag.label] += 1
        repaired.append(tag)
        previous = tag
    return repaired, repairs


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
    """

    start: numpy.ndarray
    transitions: numpy.ndarray
    end: numpy.ndarray


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
    return AllowedTransitions(start, transitions, end)


def is_valid_bio(tags: Sequence[str]) -> bool:
    """Whether a sequence of tags needs no repair (see `repair_stray_inside`)."""
    return not repair_stray_inside([parse_tag(tag)[0] for tag in tags])[1]
