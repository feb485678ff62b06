"""Encoders built offline load through the same `from_pretrained` path as hub models."""

import subprocess
import sys

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from conftest import ASSETS, ROOT
from spacy_bert_crf.lab.encoders import EncoderShape, build_encoder

CONFIG = ASSETS / "bert-base-chinese" / "config.json"
VOCAB = ASSETS / "bert-base-chinese" / "vocab.txt"


def test_random_encoder_has_the_real_vocab_and_the_asked_shape(tiny_encoder):
    model = AutoModel.from_pretrained(tiny_encoder)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert model.config.vocab_size == 21128
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    assert len(tokenizer) == 21128
    # vocab.txt holds U+2028 in two entries: a reader that splits on it shifts every id after.
    vocab_lines = VOCAB.read_text(encoding="utf-8").split("\n")
    assert tokenizer.convert_ids_to_tokens(21127) == vocab_lines[21127]
    assert tokenizer.tokenize("北京") == ["北", "京"]


def test_from_pretrained_keeps_the_first_layers(tiny_encoder, tmp_path):
    output = build_encoder(
        tmp_path / "one_layer",
        config_path=CONFIG,
        vocab_path=VOCAB,
        shape=EncoderShape(layers=1),
        from_pretrained=str(tiny_encoder),
    )
    source, cut = AutoModel.from_pretrained(tiny_encoder), AutoModel.from_pretrained(output)
    assert cut.config.num_hidden_layers == 1 and len(cut.encoder.layer) == 1
    for name, tensor in cut.state_dict().items():
        assert torch.equal(tensor, source.state_dict()[name]), name


def test_embeddings_only_copies_embeddings_and_nothing_else(tiny_encoder, tmp_path):
    output = build_encoder(
        tmp_path / "embeddings",
        config_path=CONFIG,
        vocab_path=VOCAB,
        from_pretrained=str(tiny_encoder),
        embeddings_only=True,
        seed=1,
    )
    source, built = AutoModel.from_pretrained(tiny_encoder).state_dict(), AutoModel.from_pretrained(output).state_dict()
    assert source.keys() == built.keys()
    for name in source:
        same = torch.equal(source[name], built[name])
        if name.startswith("embeddings."):
            assert same, name
        elif name.endswith("weight") and "LayerNorm" not in name:
            assert not same, name


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"shape": EncoderShape(hidden=100, heads=3)}, "not a multiple"),
        ({"embeddings_only": True}, "needs --from-pretrained"),
    ],
)
def test_bad_shapes_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_encoder(tmp_path / "x", config_path=CONFIG, vocab_path=VOCAB, **kwargs)


def test_cli_writes_a_loadable_directory(tmp_path):
    output = tmp_path / "cli"
    args = ["--layers", "1", "--hidden", "32", "--heads", "2", "--intermediate", "64"]
    subprocess.run([sys.executable, ROOT / "scripts" / "init_encoder.py", output, *args], check=True)
    assert AutoModel.from_pretrained(output).config.hidden_size == 32
    result = subprocess.run(
        [sys.executable, ROOT / "scripts" / "init_encoder.py", tmp_path / "bad", "--embeddings-only"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "needs --from-pretrained" in result.stdout
