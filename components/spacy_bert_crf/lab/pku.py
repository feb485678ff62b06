"""Character-level NER from the PKU part-of-speech annotation of People's Daily.

PKU's corpus marks every word with its part of speech (`江/nr 泽民/nr`, `北京/ns`,
`新华社/nt`) and brackets some compounds with a class of their own
(`[中国/ns 政府/n]nt`). Four tags name entities: `t` → T, `nr` → PER, `ns` → LOC,
`nt` → ORG. Where a compound sits, two conventions disagree:

- `words`, the convention of People's Daily 2014 as the report's corpus has it:
  every word is tagged by its own part of speech and a bracket only groups
  them, so `中国政府` is LOC `中国` and an untagged `政府`, and `国家外汇管理局`
  (three plain words) is no entity. Neighbouring words of one class are one
  entity (`美国/ns 华尔街/ns` → `美国华尔街`): PD2014 never has two entities of
  one class side by side.
- `compounds`: a bracket of class `nt`, `ns` or `nr` is one entity
  (`[中国/ns 政府/n]nt` → ORG `中国政府`); only PER and T words merge with
  their neighbours. This is how the pd1998 of `../shared/data` was derived.

A model trained on one and scored on the other pays for each disagreement twice,
a miss and a false alarm.
"""

import re
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from ..formats import DataFormatError, read_lines, split_train_dev, write_lines

ENTITY_TAGS: Dict[str, str] = {"t": "T", "nr": "PER", "ns": "LOC", "nt": "ORG"}
CONVENTIONS = ("words", "compounds")
# The opening `[`, the word, its part of speech, and a closing `]` with the compound's class.
_TOKEN = re.compile(r"^(\[)?(.+?)/([A-Za-z]+)(?:\]([A-Za-z]+))?$")
# Each paragraph opens with its id, e.g. `19980101-01-001-001/m`.
_PARAGRAPH_ID = re.compile(r"^\d{8}-\d{2}-\d{3}-\d{3}/m$")

Unit = Tuple[str, Optional[str]]


def _units(tokens: List[str], convention: str, where: Tuple[Path, int]) -> List[Unit]:
    """(text, label or None) for a paragraph's tokens, compounds resolved by `convention`."""
    units: List[Unit] = []
    compound: Optional[List[Unit]] = None
    for token in tokens:
        match = _TOKEN.match(token)
        if match is None:
            raise DataFormatError(*where, f"expected `word/tag`, `[word/tag` or `word/tag]class`, got {token!r}")
        opens, word, tag, closes = match.groups()
        if opens:
            if compound is not None:
                raise DataFormatError(*where, f"{token!r} opens a bracket inside another")
            compound = []
        unit = (word, ENTITY_TAGS.get(tag))
        if compound is None:
            if closes:
                raise DataFormatError(*where, f"{token!r} closes a bracket that was not opened")
            units.append(unit)
            continue
        compound.append(unit)
        if closes:
            label = ENTITY_TAGS[closes] if convention == "compounds" and closes in ("nr", "ns", "nt") else None
            units.extend([("".join(text for text, _ in compound), label)] if label else compound)
            compound = None
    if compound is not None:
        raise DataFormatError(*where, "a bracket is not closed by the paragraph's end")
    merging = {"PER", "T"} if convention == "compounds" else set(ENTITY_TAGS.values())
    merged: List[Unit] = []
    for text, label in units:
        if merged and label in merging and merged[-1][1] == label:
            merged[-1] = (merged[-1][0] + text, label)
        else:
            merged.append((text, label))
    return merged


def pku_to_bio(path: Path, convention: str = "words") -> Iterator[Tuple[List[str], List[str]]]:
    """(characters, `B_X`/`I_X`/`O` tags) for each paragraph of a PKU-annotated file.

    Empty lines are skipped: they separate paragraphs, and hold none. Spaces
    inside a word are no characters of the two-file format, so they are left out.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, not {convention!r}")
    for number, line in enumerate(read_lines(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if not _PARAGRAPH_ID.match(tokens[0]):
            raise DataFormatError(
                path, number, f"expected a paragraph id like 19980101-01-001-001/m, got {tokens[0]!r}"
            )
        chars: List[str] = []
        tags: List[str] = []
        for text, label in _units(tokens[1:], convention, (path, number)):
            text = "".join(text.split())
            chars.extend(text)
            tags.extend("O" if label is None else f"{'I' if i else 'B'}_{label}" for i in range(len(text)))
        if chars:
            yield chars, tags


def derive_corpus(source: Path, output_dir: Path, convention: str = "words", dev_every: int = 10) -> dict:
    """Write the two-file corpus of a PKU-annotated file into `output_dir`, split as
    `scripts/split_corpus.py` splits (every `dev_every`-th paragraph is dev):
    train.txt.gz, train_TAG.txt.gz, dev.txt.gz and dev_TAG.txt.gz. Returns each
    split's paragraphs, characters and entities."""
    paragraphs = list(pku_to_bio(Path(source), convention))
    summary = {}
    for split, indices in zip(("train", "dev"), split_train_dev(len(paragraphs), dev_every)):
        write_lines(output_dir / f"{split}.txt.gz", (" ".join(paragraphs[i][0]) for i in indices))
        write_lines(output_dir / f"{split}_TAG.txt.gz", (" ".join(paragraphs[i][1]) for i in indices))
        summary[split] = {
            "paragraphs": len(indices),
            "characters": sum(len(paragraphs[i][0]) for i in indices),
            "entities": entity_counts(paragraphs[i][1] for i in indices),
        }
    return summary


def entity_counts(tag_lines: Iterable[List[str]]) -> Dict[str, int]:
    """Entities of each class, counted by their `B_` tags."""
    counts: Dict[str, int] = {}
    for tags in tag_lines:
        for tag in tags:
            if tag.startswith("B_"):
                counts[tag[2:]] = counts.get(tag[2:], 0) + 1
    return dict(sorted(counts.items()))
