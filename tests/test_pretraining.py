"""Masked-LM pretraining: the text stream, the windows, the loss, the budget, and the run end to end."""
import gzip
import json
import random
from itertools import islice

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, BertForMaskedLM

from spacy_bert_crf.pretraining import (
    PretrainingSettings,
    device_name,
    learn_rate_factor,
    masked_lm_loss,
    plain_line,
    pretrain_encoder,
    read_text_lines,
    shuffled,
    token_windows,
    training_batches,
)
from spacy_bert_crf.training_log import read_training_log
from conftest import ASSETS, run_script

# A budget small enough for a test: 6 steps of 4 windows of 32 tokens.
TINY_RUN = dict(max_steps=6, batch_size=4, sequence_length=32, log_every=2, shuffle_windows=16)


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    return AutoTokenizer.from_pretrained(tiny_encoder)


@pytest.fixture(scope="module")
def sample_text(tmp_path_factory):
    """The first 200 lines of the shipped raw-text sample, as a plain file."""
    path = tmp_path_factory.mktemp("rawtext") / "sample.txt"
    with gzip.open(ASSETS / "rawtext" / "sample.txt.gz", "rt", encoding="utf-8") as lines:
        path.write_text("".join(islice(lines, 200)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pretrained(tiny_encoder, sample_text, tmp_path_factory):
    """The tiny encoder after a 6-step run: (output directory, returned summary)."""
    output = tmp_path_factory.mktemp("pretrained") / "encoder"
    summary = pretrain_encoder(str(tiny_encoder), [sample_text], output, PretrainingSettings(**TINY_RUN))
    return output, summary


def test_plain_line_joins_char_tokens_and_keeps_prose():
    assert plain_line("中 国 人") == "中国人"
    # As read from a file, with the line end: the last character is still one token.
    assert plain_line("中 国 人\n") == "中国人"
    assert plain_line("  hello world 你好 \n") == "hello world 你好"
    assert plain_line("中国人民\n") == "中国人民"
    assert plain_line("") == ""
    assert plain_line("\n") == ""


def test_read_text_lines_interleaves_files_and_skips_empty_lines(tmp_path):
    (tmp_path / "a.txt").write_text("中 国 人\n\n第三行\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as file:
        file.write("hello world 你好\n你 好\n再见\n最后 一行\n")
    assert list(read_text_lines([tmp_path / "a.txt", tmp_path / "b.txt.gz"])) == [
        "中国人",
        "hello world 你好",
        # a.txt's second line is empty: b.txt.gz's comes next.
        "你好",
        "第三行",
        "再见",
        # a.txt has ended; b.txt.gz goes on.
        "最后 一行",
    ]


def test_token_windows_are_full_and_lose_only_the_remainder(tokenizer):
    lines = ["中国人民银行", "你好世界，今天天气很好。", "北京", "hello world", "上海浦东新区" * 3, "再见"] * 4
    length = 16
    # chunk_lines=5 makes the stream cross chunk boundaries mid-window.
    windows = list(token_windows(lines, tokenizer, length, chunk_lines=5))
    stream = []
    for line in lines:
        stream += tokenizer(line, add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    body = length - 2
    assert len(windows) == len(stream) // body > 1
    for window in windows:
        assert len(window) == length
        assert window[0] == tokenizer.cls_token_id and window[-1] == tokenizer.sep_token_id
        assert tokenizer.cls_token_id not in window[1:]
    bodies = [token for window in windows for token in window[1:-1]]
    assert bodies == stream[: len(bodies)]
    assert len(stream) - len(bodies) < body
    # Lines are separated by [SEP] inside the windows, not glued together.
    assert bodies.count(tokenizer.sep_token_id) == stream[: len(bodies)].count(tokenizer.sep_token_id) > 1
    assert list(token_windows(["中国"], tokenizer, length)) == []


@settings(deadline=None)
@given(st.lists(st.integers()), st.integers(min_value=1, max_value=40), st.integers())
def test_shuffled_is_a_seeded_permutation(items, buffer_size, seed):
    out = list(shuffled(items, buffer_size, random.Random(seed)))
    assert sorted(out) == sorted(items)
    assert list(shuffled(iter(items), buffer_size, random.Random(seed))) == out


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=200), st.integers(min_value=1, max_value=40), st.integers())
def test_shuffled_moves_items_only_within_the_buffer(length, buffer_size, seed):
    out = list(shuffled(range(length), buffer_size, random.Random(seed)))
    # Item i enters the buffer before position i - buffer_size + 1 is yielded.
    assert all(item <= position + buffer_size - 1 for position, item in enumerate(out))


def test_shuffled_shuffles():
    assert list(shuffled(range(100), 1, random.Random(0))) == list(range(100))
    assert list(shuffled(range(100), 10, random.Random(0))) != list(range(100))


def test_learn_rate_rises_then_decays_linearly():
    assert learn_rate_factor(0.0, 0.1) == 0.0
    assert learn_rate_factor(0.05, 0.1) == pytest.approx(0.5)
    assert learn_rate_factor(0.1, 0.1) == pytest.approx(1.0)
    assert learn_rate_factor(0.55, 0.1) == pytest.approx(0.5)
    assert learn_rate_factor(1.0, 0.1) == 0.0
    grid = [i / 100 for i in range(101)]
    factors = [learn_rate_factor(progress, 0.2) for progress in grid]
    assert factors[:21] == sorted(factors[:21]) and factors[20:] == sorted(factors[20:], reverse=True)
    assert max(factors) == pytest.approx(1.0)
    assert learn_rate_factor(0.5, 0.0) == pytest.approx(0.5)


def test_settings_need_a_budget():
    with pytest.raises(ValueError, match="needs a budget"):
        PretrainingSettings()
    with pytest.raises(ValueError, match="needs a budget"):
        PretrainingSettings(max_steps=0, max_minutes=0.0)


def test_progress_is_the_larger_share_capped_at_one():
    both = PretrainingSettings(max_steps=100, max_minutes=1.0)
    assert both.progress(50, 15) == pytest.approx(0.5)
    assert both.progress(10, 30) == pytest.approx(0.5)
    assert both.progress(80, 6) == pytest.approx(0.8)
    assert both.progress(200, 0) == 1.0
    assert both.progress(0, 600) == 1.0
    steps_only = PretrainingSettings(max_steps=100)
    assert steps_only.progress(25, 10**6) == pytest.approx(0.25)
    minutes_only = PretrainingSettings(max_minutes=2.0)
    assert minutes_only.progress(10**6, 60) == pytest.approx(0.5)


def test_masked_lm_loss_is_hugging_faces(tiny_encoder):
    model = BertForMaskedLM.from_pretrained(tiny_encoder).eval()
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, model.config.vocab_size, (3, 24), generator=generator)
    masked = torch.rand(input_ids.shape, generator=generator) < 0.15
    masked[0, 0] = True
    targets = torch.randint(1000, model.config.vocab_size, input_ids.shape, generator=generator)
    labels = torch.where(masked, targets, -100)
    with torch.no_grad():
        ours = masked_lm_loss(model, input_ids, labels)
        theirs = model(input_ids=input_ids, labels=labels).loss
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)
    assert ours.item() > 1.0


def test_pretraining_writes_a_loadable_encoder_and_its_log(pretrained, tiny_encoder, sample_text):
    output, summary = pretrained
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "pretraining.json"):
        assert (output / name).is_file(), name
    assert json.loads((output / "pretraining.json").read_text(encoding="utf-8")) == summary
    assert summary["steps"] == 6
    assert summary["tokens"] == 6 * 4 * 32
    assert summary["texts"] == [str(sample_text)] and summary["settings"]["batch_size"] == 4

    log = read_training_log(output / "pretraining_log.jsonl", required=("step", "seconds", "tokens", "loss"))
    assert [record["step"] for record in log] == [2, 4, 6]
    assert [record["tokens"] for record in log] == [2 * 128, 4 * 128, 6 * 128]
    assert all(0 < record["loss"] < 20 for record in log)
    assert [record["seconds"] for record in log] == sorted(record["seconds"] for record in log)

    # spacy-transformers loads the encoder with AutoModel; the weights are the trained ones.
    before, after = AutoModel.from_pretrained(tiny_encoder), AutoModel.from_pretrained(output)
    assert after.config.hidden_size == 64 and after.config.num_hidden_layers == 2
    changed = [
        name for name, tensor in after.state_dict().items() if not torch.equal(tensor, before.state_dict()[name])
    ]
    assert "encoder.layer.0.attention.self.query.weight" in changed
    assert "embeddings.word_embeddings.weight" in changed
    assert AutoTokenizer.from_pretrained(output).tokenize("北京") == ["北", "京"]


def test_pretraining_continues_with_the_saved_mlm_head(pretrained, sample_text, tmp_path):
    output, _ = pretrained
    saved = load_file(output / "model.safetensors")
    model, info = BertForMaskedLM.from_pretrained(output, output_loading_info=True)
    assert info["missing_keys"] == []
    for name in ("cls.predictions.transform.dense.weight", "cls.predictions.bias"):
        assert torch.equal(model.state_dict()[name], saved[name]), name
    settings = PretrainingSettings(**{**TINY_RUN, "max_steps": 2})
    summary = pretrain_encoder(str(output), [sample_text], tmp_path / "again", settings)
    assert summary["steps"] == 2 and summary["encoder"] == str(output)
    assert AutoModel.from_pretrained(tmp_path / "again").config.hidden_size == 64


def test_the_tiny_encoder_has_no_mlm_head_to_load(tiny_encoder):
    # The contrast to the test above: a first run starts with a fresh head.
    _, info = BertForMaskedLM.from_pretrained(tiny_encoder, output_loading_info=True)
    assert "cls.predictions.transform.dense.weight" in info["missing_keys"]


def test_too_little_text_for_one_batch(tokenizer, tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("中国人民\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"less than one batch \(4 windows of 32 tokens\).*short\.txt"):
        next(training_batches([path], tokenizer, PretrainingSettings(**TINY_RUN)))


def test_cli_takes_config_overrides_after_the_text_files(tiny_encoder, sample_text, tmp_path):
    output = tmp_path / "cli"
    overrides = {"max_steps": 2, "batch_size": 2, "sequence_length": 32, "log_every": 1, "shuffle_windows": 8}
    flags = [item for key, value in overrides.items() for item in (f"--pretraining.{key}", value)]
    result = run_script("pretrain_encoder.py", tiny_encoder, output, sample_text, *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((output / "pretraining.json").read_text(encoding="utf-8"))
    assert summary["texts"] == [str(sample_text)]
    assert summary["steps"] == 2 and summary["tokens"] == 2 * 2 * 32
    assert {key: summary["settings"][key] for key in overrides} == overrides
    assert len(read_training_log(output / "pretraining_log.jsonl", required=("step", "loss"))) == 2


def test_cli_names_a_missing_text_file(tiny_encoder, sample_text, tmp_path):
    missing = tmp_path / "no_such_text.txt"
    result = run_script("pretrain_encoder.py", tiny_encoder, tmp_path / "out", sample_text, missing, "--pretraining.max_steps", 1)
    assert result.returncode != 0
    # wasabi wraps long lines: compare with the whitespace collapsed.
    assert f"No such text file: {missing}" in " ".join((result.stdout + result.stderr).split())
    assert not (tmp_path / "out").exists()


def test_device_name_follows_spacys_gpu_id():
    assert device_name(-1) == "cpu"
    assert device_name(0) == "cuda:0"
    assert device_name(1) == "cuda:1"
