"""Every shipped config builds, initialises and tags with the tests' tiny encoder."""

from pathlib import Path

import pytest
from spacy.tokens import DocBin
from spacy.training.initialize import init_nlp
from spacy.util import load_config

from conftest import ROOT

# Training configs; experiments.cfg and pretrain_encoder.cfg configure scripts.
CONFIGS = sorted(path for path in (ROOT / "configs").glob("*.cfg") if "[nlp]" in path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def corpus(pd2014_docs, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "slice.spacy"
    DocBin(docs=pd2014_docs[:6]).to_disk(path)
    return path


def test_the_expected_configs_ship():
    assert {path.stem for path in CONFIGS} >= {"default", "default_softmax", "bert_crf", "bert_softmax"}


@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda path: path.stem)
def test_config_trains_a_pipe_that_sets_entities(config_path, corpus, tiny_encoder, tiny_vectors):
    overrides = {"paths.train": str(corpus), "paths.dev": str(corpus), "paths.encoder": str(tiny_encoder)}
    if load_config(config_path, interpolate=False)["paths"]["bigram_vectors"] is not None:
        overrides["paths.bigram_vectors"] = str(tiny_vectors / "bigrams.npz")
    config = load_config(config_path, overrides=overrides, interpolate=False)
    nlp = init_nlp(config)
    assert nlp.pipe_names == ["bert_crf_ner"]
    head = config["components"]["bert_crf_ner"]["model"]["@architectures"]
    assert ("softmax" in config_path.stem) == (head == "spacy_bert_crf.SoftmaxTagger.v1")
    doc = nlp("人民网1月1日讯据《纽约时报》报道")
    assert doc.has_annotation("ENT_IOB")
