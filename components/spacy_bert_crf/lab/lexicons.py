"""Build the lexicon that `spacy_bert_crf.lexicon` reads, from jieba's dictionary.

jieba's `dict.txt` (MIT) lists 349,046 words, each with a frequency and a
part-of-speech tag. The tags that name entities become the lexicon's classes
(`nr`, `nrt`, `nrfg`: PER; `ns`: LOC; `nt`: ORG; `t`: T), every other word is
a plain WORD, whose edges still say where words begin and end. The tags are
jieba's, not gold (it files `普京` under `ns`): the model learns how far to
trust each flag.
"""

import gzip
import json
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Tuple

from ..char_inputs import fold
from .vectors import sha256

ENTITY_CLASSES = {"nr": "PER", "nrt": "PER", "nrfg": "PER", "ns": "LOC", "nt": "ORG", "t": "T"}
OTHER_CLASS = "WORD"


def jieba_dictionary() -> Tuple[Path, str]:
    """The `dict.txt` of the installed jieba package, and how the provenance names it."""
    import jieba

    return Path(jieba.__file__).parent / "dict.txt", f"jieba {jieba.__version__}: jieba/dict.txt"


def read_jieba_dictionary(path: Path, max_length: int) -> Tuple[Dict[str, str], Counter]:
    """Folded words and their classes, and how many lines were kept or left out, and why.

    Where two words fold to the same text (`Ａ股`, `A股`), the more frequent one's class wins.
    """
    best: Dict[str, Tuple[int, str]] = {}
    counts: Counter = Counter()
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            fields = line.split()
            if len(fields) != 3 or not fields[1].isdigit():
                raise ValueError(f"{path}:{number}: expected `word frequency tag`, got {line.rstrip()!r}")
            word, frequency, tag = fold(fields[0]), int(fields[1]), fields[2]
            if len(word) > max_length:
                counts[f"longer than {max_length} characters"] += 1
                continue
            name = ENTITY_CLASSES.get(tag, OTHER_CLASS)
            if word in best:
                counts["folds to a word listed before"] += 1
                if frequency <= best[word][0]:
                    continue
            best[word] = (frequency, name)
    counts["kept"] = len(best)
    return {word: name for word, (_, name) in best.items()}, counts


def build_lexicon(output: Path, source: Path, max_length: int = 8, source_name: str = "") -> dict:
    """Write `output` (`word<TAB>class`, gzipped, sorted) and `lexicon.json` beside it;
    `source_name` names the source there (default: its path)."""
    started = time.time()
    entries, counts = read_jieba_dictionary(source, max_length)
    output.parent.mkdir(parents=True, exist_ok=True)
    # mtime 0: the same dictionary gives the same bytes.
    with gzip.GzipFile(output, "wb", mtime=0) as file:
        file.write("".join(f"{word}\t{name}\n" for word, name in sorted(entries.items())).encode("utf-8"))
    summary = {
        "source": source_name or str(source),
        "source_sha256": sha256(source),
        "output": str(output),
        "output_sha256": sha256(output),
        "max_length": max_length,
        "lines": dict(counts),
        "classes": dict(Counter(entries.values())),
        "seconds": round(time.time() - started, 2),
    }
    (output.parent / "lexicon.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return summary
