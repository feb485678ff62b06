"""Training character and bigram vectors: what goes in is counted, folded and written as the encoder reads it."""

import gzip
import json

from conftest import ASSETS, run_script
from spacy_bert_crf.char_inputs import BOUNDARY, fold, load_vectors
from spacy_bert_crf.lab.vectors import text_files


def test_text_files_expand_folders(tmp_path):
    (tmp_path / "b.txt").write_text("x", encoding="utf-8")
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress("y".encode()))
    (tmp_path / "README.md").write_text("not text", encoding="utf-8")
    assert [p.name for p in text_files([tmp_path])] == ["a.txt.gz", "b.txt"]


def test_tiny_vectors_are_keyed_by_folded_characters(tiny_vectors):
    summary = json.loads((tiny_vectors / "vectors.json").read_text(encoding="utf-8"))
    with gzip.open(ASSETS / "pd2014" / "test.txt.gz", "rt", encoding="utf-8") as file:
        lines = [line.rstrip("\n") for line in file if line.strip()]
    assert summary["lines"] == len(lines)
    assert summary["chars"] == sum(map(len, lines))
    char_keys, char_vectors = load_vectors(tiny_vectors / "chars.npz")
    bigram_keys, bigram_vectors = load_vectors(tiny_vectors / "bigrams.npz")
    assert char_vectors.shape == (len(char_keys), 64) and bigram_vectors.shape == (len(bigram_keys), 16)
    # PD2014 is space-separated characters: the space is a character like any other here.
    assert " " in char_keys and all(fold(key) == key for key in char_keys)
    assert any(key.startswith(BOUNDARY) for key in bigram_keys)
    assert len(bigram_keys) <= 5000


def test_script_names_a_missing_file(tmp_path):
    result = run_script("train_vectors.py", tmp_path / "out", tmp_path / "missing.txt")
    assert result.returncode == 1
    assert "missing.txt" in result.stdout
