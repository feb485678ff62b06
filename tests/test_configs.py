"""Every shipped config builds, initialises and tags with the tests' tiny encoder."""

from pathlib import Path

import pytest
from spacy.tokens import DocBin
from spacy.training.initialize import init_nlp
from spacy.util import load_config

from conftest import ROOT
from spacy_bert_crf.lab.configs import config_with_overlays

# The base training configs, one per machine; experiments.cfg and pretrain_encoder.cfg configure scripts.
BASES = sorted(path for path in (ROOT / "configs").glob("*.cfg") if "[nlp]" in path.read_text(encoding="utf-8"))
OVERLAYS = sorted((ROOT / "configs" / "overlays").glob("*.cfg"))
# Every base alone and with every overlay.
CONFIGS = [(base, None) for base in BASES] + [(base, overlay) for base in BASES for overlay in OVERLAYS]


@pytest.fixture(scope="module")
def corpus(pd2014_docs, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "slice.spacy"
    DocBin(docs=pd2014_docs[:6]).to_disk(path)
    return path


def test_the_expected_configs_ship():
    assert [path.stem for path in BASES] == ["bert_crf", "default"]
    assert {path.stem for path in OVERLAYS} == {"softmax_head", "wordpiece_input"}


@pytest.mark.parametrize("base,overlay", CONFIGS, ids=lambda path: path.stem if path else "alone")
def test_config_trains_a_pipe_that_sets_entities(base, overlay, corpus, tiny_encoder, tiny_vectors, tmp_path):
    overrides = {"paths.train": str(corpus), "paths.dev": str(corpus), "paths.encoder": str(tiny_encoder)}
    if load_config(base, interpolate=False)["paths"]["bigram_vectors"] is not None:
        overrides["paths.bigram_vectors"] = str(tiny_vectors / "bigrams.npz")
    # Through the file scripts/compose_config.py writes, as `spacy train` reads it.
    composed = tmp_path / "config.cfg"
    config_with_overlays(base, [overlay] if overlay else []).to_disk(composed, interpolate=False)
    config = load_config(composed, overrides=overrides, interpolate=False)
    nlp = init_nlp(config)
    assert nlp.pipe_names == ["bert_crf_ner"]
    head = config["components"]["bert_crf_ner"]["model"]["@architectures"]
    softmax = overlay is not None and overlay.stem == "softmax_head"
    assert softmax == (head == "spacy_bert_crf.SoftmaxTagger.v1")
    doc = nlp("人民网1月1日讯据《纽约时报》报道")
    assert doc.has_annotation("ENT_IOB")
