"""Base configs and overlays (spacy_bert_crf/lab/configs.py, scripts/compose_config.py)."""

import subprocess
import sys

import spacy
from spacy.util import load_config
from thinc.api import Config

from conftest import ROOT
from spacy_bert_crf.lab.configs import config_with_overlays, overlaid

DEFAULT = ROOT / "configs/default.cfg"
SOFTMAX = ROOT / "configs/overlays/softmax_head.cfg"
WORDPIECE = ROOT / "configs/overlays/wordpiece_input.cfg"


def test_settings_replace_a_section_whole_and_unnamed_subsections_stay():
    base = {"a": {"x": 1, "y": 2, "sub": {"z": 3}, "other": {"w": 4}}, "b": {"v": 5}}
    overlay = {"a": {"x": 10, "sub": {"q": 6}}}
    assert overlaid(base, overlay) == {"a": {"x": 10, "sub": {"q": 6}, "other": {"w": 4}}, "b": {"v": 5}}
    # A section without settings of its own only passes its subsections down.
    assert overlaid(base, {"a": {"other": {"w": 40}}}) == {
        "a": {"x": 1, "y": 2, "sub": {"z": 3}, "other": {"w": 40}},
        "b": {"v": 5},
    }
    # New sections come in whole.
    assert overlaid(base, {"c": {"u": 7}})["c"] == {"u": 7}


def test_the_softmax_overlay_swaps_the_head_and_keeps_the_encoder():
    for base in (DEFAULT, ROOT / "configs/bert_crf.cfg"):
        plain = load_config(base, interpolate=False)
        config = config_with_overlays(base, [SOFTMAX])
        model = config["components"]["bert_crf_ner"]["model"]
        assert model == {
            "@architectures": "spacy_bert_crf.SoftmaxTagger.v1",
            "tok2vec": plain["components"]["bert_crf_ner"]["model"]["tok2vec"],
        }
        config["components"]["bert_crf_ner"]["model"] = plain["components"]["bert_crf_ner"]["model"]
        assert config == plain


def test_the_wordpiece_overlay_replaces_the_encoder_block_whole():
    plain = config_with_overlays(DEFAULT)
    config = config_with_overlays(DEFAULT, [WORDPIECE])
    tok2vec = config["components"]["bert_crf_ner"]["model"]["tok2vec"]
    assert tok2vec["@architectures"] == "spacy-transformers.Tok2VecTransformer.v3"
    # The character encoder's own settings are gone, the overlay's subsections are in.
    assert "bigram_vectors" not in tok2vec and "window" not in tok2vec
    assert tok2vec["get_spans"]["window"] == 128 and tok2vec["name"] == "${paths.encoder}"
    model = config["components"]["bert_crf_ner"]["model"]
    assert model["crf_learn_rate_scale"] == plain["components"]["bert_crf_ner"]["model"]["crf_learn_rate_scale"]
    assert config["training"] == plain["training"]
    # It is a config spaCy resolves, with a pipe that builds.
    nlp = spacy.util.load_model_from_config(
        Config().from_str(config.to_str()).interpolate(), auto_fill=True, validate=True
    )
    assert nlp.pipe_names == ["bert_crf_ner"]


def test_overlays_apply_in_turn():
    both = config_with_overlays(DEFAULT, [WORDPIECE, SOFTMAX])["components"]["bert_crf_ner"]["model"]
    assert both["@architectures"] == "spacy_bert_crf.SoftmaxTagger.v1"
    assert both["tok2vec"]["@architectures"] == "spacy-transformers.Tok2VecTransformer.v3"


def test_compose_config_writes_what_spacy_train_reads(tmp_path):
    output = tmp_path / "run" / "config.cfg"
    script = str(ROOT / "scripts/compose_config.py")
    result = subprocess.run(
        [sys.executable, script, str(output), str(DEFAULT), str(SOFTMAX)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert load_config(output, interpolate=False) == config_with_overlays(DEFAULT, [SOFTMAX])
    missing = subprocess.run(
        [sys.executable, script, str(output), str(DEFAULT), str(tmp_path / "nope.cfg")], capture_output=True, text=True
    )
    assert missing.returncode == 1 and f"No such config file: {tmp_path / 'nope.cfg'}" in " ".join(
        missing.stdout.split()
    )
