"""Character and character-bigram vectors, trained with gensim's word2vec on raw text.

The published character models that reach 88.8 (characters) and 91.9
(characters and bigrams) F1 on MSRA owe most of it to vectors pretrained on
raw text. These are those vectors, made from text the project holds:

- characters, folded as the encoder sees them (`char_inputs.fold`), to
  initialise the encoder's embeddings (`encoders.build_encoder`);
- bigrams of folded characters, with `char_inputs.BOUNDARY` at both ends of a
  line, for the encoder's bigram input (`char_encoder`).

Both are trained from one pass that writes the folded text as
space-separated tokens, which gensim's `corpus_file` mode then reads on every
worker without the GIL. Tables are written as `.npz` (keys, float16 vectors),
which the runtime reads with numpy alone.
"""

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy

from ..char_inputs import fold, text_bigrams
from ..formats import open_text

# corpus_file mode splits lines on spaces, so a folded space needs a stand-in.
_SPACE_STAND_IN = "\u2423"


@dataclass
class VectorSettings:
    """What `train_vectors` makes: sizes, window, epochs and vocabulary cuts."""

    char_dim: int = 256
    bigram_dim: int = 64
    window: int = 5
    epochs: int = 5
    negative: int = 5
    skip_gram: bool = False
    char_min_count: int = 1
    bigram_min_count: int = 5
    max_bigrams: int = 150_000
    workers: int = 2
    seed: int = 0


def text_files(paths: Sequence[Path]) -> List[Path]:
    """The files themselves, and the `*.txt` and `*.txt.gz` files of each folder, sorted."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.name.endswith((".txt", ".txt.gz"))))
        else:
            files.append(path)
    return files


def write_token_corpora(
    paths: Sequence[Path], chars_out: Path, bigrams_out: Path, progress: Callable[[int], None]
) -> Dict[str, int]:
    """Write the folded characters and their bigrams of every line, space-separated."""
    counts = {"lines": 0, "chars": 0}
    with chars_out.open("w", encoding="utf-8") as chars_file, bigrams_out.open("w", encoding="utf-8") as bigrams_file:
        for path in paths:
            with open_text(path) as lines:
                for line in lines:
                    line = line.rstrip("\n")
                    if not line.strip():
                        continue
                    chars = [fold(char)[0] for char in line]
                    chars_file.write(" ".join(_escape(char) for char in chars) + "\n")
                    bigrams_file.write(" ".join(_escape(key) for key in text_bigrams(line)) + "\n")
                    counts["lines"] += 1
                    counts["chars"] += len(chars)
                    if counts["lines"] % 10_000 == 0:
                        progress(counts["chars"])
    return counts


def _escape(token: str) -> str:
    return token.replace(" ", _SPACE_STAND_IN)


def _unescape(token: str) -> str:
    return token.replace(_SPACE_STAND_IN, " ")


def train_word2vec(corpus: Path, dim: int, min_count: int, max_vocab, settings: VectorSettings):
    """gensim word2vec over a space-separated corpus file."""
    from gensim.models import Word2Vec

    return Word2Vec(
        corpus_file=str(corpus),
        vector_size=dim,
        window=settings.window,
        min_count=min_count,
        max_final_vocab=max_vocab,
        sg=int(settings.skip_gram),
        negative=settings.negative,
        epochs=settings.epochs,
        workers=settings.workers,
        seed=settings.seed,
    )


def save_vectors(path: Path, keys: Sequence[str], vectors: numpy.ndarray) -> None:
    """A `.npz` with `keys` (unicode) and `vectors` (float16), as `char_inputs.load_vectors` reads it."""
    numpy.savez(path, keys=numpy.asarray(list(keys)), vectors=vectors.astype("float16"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def train_vectors(
    paths: Sequence[Path],
    output_dir: Path,
    settings: VectorSettings = VectorSettings(),
    log: Callable[[str], None] = print,
) -> dict:
    """Train both tables on `paths`; write `chars.npz`, `bigrams.npz` and `vectors.json`
    (settings, inputs with their sha256, counts and times) into `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    chars_corpus = output_dir / "chars.corpus.txt"
    bigrams_corpus = output_dir / "bigrams.corpus.txt"
    try:
        counts = write_token_corpora(paths, chars_corpus, bigrams_corpus, lambda n: log(f"folded {n:,} characters"))
        prepared = time.time()
        log(f"training character vectors on {counts['chars']:,} characters")
        chars = train_word2vec(chars_corpus, settings.char_dim, settings.char_min_count, None, settings)
        char_keys = [_unescape(key) for key in chars.wv.index_to_key]
        save_vectors(output_dir / "chars.npz", char_keys, chars.wv.vectors)
        chars_done = time.time()
        log("training bigram vectors")
        bigram_model = train_word2vec(
            bigrams_corpus, settings.bigram_dim, settings.bigram_min_count, settings.max_bigrams, settings
        )
        bigram_keys = [_unescape(key) for key in bigram_model.wv.index_to_key]
        save_vectors(output_dir / "bigrams.npz", bigram_keys, bigram_model.wv.vectors)
    finally:
        chars_corpus.unlink(missing_ok=True)
        bigrams_corpus.unlink(missing_ok=True)
    finished = time.time()
    summary = {
        "settings": asdict(settings),
        "inputs": [{"path": str(path), "sha256": sha256(Path(path))} for path in paths],
        "lines": counts["lines"],
        "chars": counts["chars"],
        "char_vectors": len(char_keys),
        "bigram_vectors": len(bigram_keys),
        "minutes": {
            "folding": round((prepared - started) / 60, 2),
            "chars": round((chars_done - prepared) / 60, 2),
            "bigrams": round((finished - chars_done) / 60, 2),
            "total": round((finished - started) / 60, 2),
        },
    }
    (output_dir / "vectors.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary
