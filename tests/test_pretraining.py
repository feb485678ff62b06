"""Masked-LM pretraining: the character stream, the windows, the masks, the loss, resuming, and the run end to end."""

import gzip
import json
from itertools import islice

import numpy
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from transformers import AutoModel, BertForMaskedLM

from conftest import ASSETS, run_script
from spacy_bert_crf.char_encoder import CharBert, encoder_vocab
from spacy_bert_crf.lab.pretraining import (
    CHECKPOINT,
    PretrainingSettings,
    WindowStream,
    cached_corpus,
    device_name,
    encode_texts,
    export_encoder,
    mask_batch,
    masked_lm_loss,
    plain_line,
    pretrain_encoder,
    pretraining_speed,
)
from spacy_bert_crf.training_log import read_training_log

# A budget small enough for a test: 6 steps of 4 windows of 32 tokens.
TINY_RUN = dict(max_steps=6, batch_size=4, sequence_length=32, log_every=2, warmup_steps=2)


@pytest.fixture(scope="module")
def vocab(tiny_encoder):
    return encoder_vocab(str(tiny_encoder))


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


def test_encode_texts_gives_every_character_its_id_and_ends_lines_with_sep(vocab, tmp_path):
    (tmp_path / "a.txt").write_text("中 国 人\n\n２０１３ iPhone\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as file:
        file.write("“北京”\n")
    ids = encode_texts([tmp_path / "a.txt", tmp_path / "b.txt.gz"], vocab)
    expected = []
    for line in ["中国人", "２０１３ iPhone", "“北京”"]:
        expected += [vocab.token_id(char) for char in line] + [vocab.sep_id]
    assert ids.dtype == numpy.uint16 and ids.tolist() == expected
    # The pipe's mapping: full-width digits fold, the space has its id, `“` its twin's.
    assert ids[3] == vocab.sep_id and ids[4] == vocab.index["2"] and ids[8] == vocab.whitespace_id
    assert vocab.unknown_id not in expected


def test_the_corpus_cache_is_used_until_a_file_changes(vocab, tmp_path, monkeypatch):
    text = tmp_path / "text.txt"
    text.write_text("中国人民\n", encoding="utf-8")
    first = cached_corpus([text], vocab, tmp_path)
    calls = []
    monkeypatch.setattr(
        "spacy_bert_crf.lab.pretraining.encode_texts", lambda *args: calls.append(args) or numpy.zeros(1, "uint16")
    )
    assert cached_corpus([text], vocab, tmp_path).tolist() == first.tolist() and calls == []
    text.write_text("中国人民银行\n", encoding="utf-8")
    cached_corpus([text], vocab, tmp_path)
    assert len(calls) == 1


@settings(deadline=None, max_examples=30)
@given(
    st.integers(min_value=4, max_value=60),
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=1, max_value=9),
    st.integers(0, 5),
)
def test_window_stream_reads_every_window_once_an_epoch_from_any_start(vocab, length, start, size, seed):
    corpus = numpy.arange(1000, 1000 + length * 6 + 3, dtype="uint16")
    stream = WindowStream(corpus, vocab, sequence_length=8, seed=seed)
    assert len(stream) == len(corpus) // 6
    epoch = stream.batch(0, len(stream))
    assert (epoch[:, 0] == vocab.cls_id).all() and (epoch[:, -1] == vocab.sep_id).all()
    assert sorted(epoch[:, 1:-1].tolist()) == stream.windows.astype("int64").tolist()
    # A batch depends on its position alone, not on what was read before.
    fresh = WindowStream(corpus, vocab, sequence_length=8, seed=seed)
    assert torch.equal(fresh.batch(start, size), torch.cat([stream.batch(k, 1) for k in range(start, start + size)]))


def test_window_stream_orders_epochs_differently(vocab):
    stream = WindowStream(numpy.arange(1000, 1600, dtype="uint16"), vocab, sequence_length=8, seed=0)
    assert not torch.equal(stream.batch(0, len(stream)), stream.batch(len(stream), len(stream)))


def test_masks_follow_berts_recipe_and_leave_special_tokens(vocab):
    ids = torch.randint(1000, 8000, (200, 64), generator=torch.Generator().manual_seed(1))
    ids[:, 0], ids[:, -1], ids[:, 30] = vocab.cls_id, vocab.sep_id, vocab.sep_id
    inputs, labels = mask_batch(ids, vocab, 0.15, torch.Generator().manual_seed(2))
    chosen = labels != -100
    assert torch.equal(labels[chosen], ids[chosen])
    assert not chosen[:, [0, 30, -1]].any() and torch.equal(inputs[:, [0, 30, -1]], ids[:, [0, 30, -1]])
    assert torch.equal(inputs[~chosen], ids[~chosen])
    assert 0.13 < chosen.float().mean().item() < 0.17
    masked = inputs[chosen] == vocab.index["[MASK]"]
    kept = inputs[chosen] == ids[chosen]
    replaced = ~masked & ~kept
    assert 0.77 < masked.float().mean().item() < 0.83
    assert 0.07 < replaced.float().mean().item() < 0.13
    # Replacements come from the batch's own characters, never the special tokens.
    assert set(inputs[chosen][replaced].tolist()) <= set(ids[:, 1:-1].flatten().tolist()) - {vocab.sep_id}
    again = mask_batch(ids, vocab, 0.15, torch.Generator().manual_seed(2))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)


def _random_labels(model, generator):
    input_ids = torch.randint(1000, model.config.vocab_size, (3, 24), generator=generator)
    masked = torch.rand(input_ids.shape, generator=generator) < 0.15
    masked[0, 0] = True
    targets = torch.randint(1000, 1500, input_ids.shape, generator=generator)
    return input_ids, torch.where(masked, targets, -100)


def test_masked_lm_loss_is_hugging_faces(tiny_encoder):
    model = BertForMaskedLM.from_pretrained(tiny_encoder).eval()
    input_ids, labels = _random_labels(model, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = masked_lm_loss(model, input_ids, labels)
        theirs = model(input_ids=input_ids, labels=labels).loss
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)
    assert ours.item() > 1.0


def test_masked_lm_loss_over_an_output_vocabulary_is_that_softmax(tiny_encoder):
    model = BertForMaskedLM.from_pretrained(tiny_encoder).eval()
    input_ids, labels = _random_labels(model, torch.Generator().manual_seed(0))
    output_ids = torch.arange(900, 1600)
    with torch.no_grad():
        ours = masked_lm_loss(model, input_ids, labels, output_ids)
        logits = model(input_ids=input_ids).logits[labels != -100][:, output_ids]
        expected = torch.nn.functional.cross_entropy(logits, labels[labels != -100] - 900)
        everything = masked_lm_loss(model, input_ids, labels, torch.arange(model.config.vocab_size))
    assert ours.item() == pytest.approx(expected.item(), abs=1e-5)
    # The smaller softmax puts no mass on the rest of the vocabulary: a lower loss.
    assert ours.item() < everything.item()
    assert everything.item() == pytest.approx(masked_lm_loss(model, input_ids, labels).item(), abs=1e-5)


def test_learn_rate_warms_up_then_decays_by_the_square_root():
    run = PretrainingSettings(max_steps=1, learn_rate=1e-3, warmup_steps=100)
    assert run.learn_rate_at(1) == pytest.approx(1e-5)
    assert run.learn_rate_at(50) == pytest.approx(5e-4)
    assert run.learn_rate_at(100) == pytest.approx(1e-3)
    assert run.learn_rate_at(400) == pytest.approx(5e-4)
    rates = [run.learn_rate_at(step) for step in range(1, 1000)]
    assert rates[:100] == sorted(rates[:100]) and rates[99:] == sorted(rates[99:], reverse=True)


def test_settings_need_a_budget_and_spend_whichever_ends_first():
    with pytest.raises(ValueError, match="needs a budget"):
        PretrainingSettings()
    both = PretrainingSettings(max_steps=100, max_minutes=1.0)
    assert not both.spent(99, 59.0)
    assert both.spent(100, 0.0) and both.spent(0, 60.0)
    assert PretrainingSettings(max_minutes=1.0).spent(10**6, 1.0) is False


def test_pretraining_writes_a_loadable_encoder_and_its_log(pretrained, tiny_encoder, sample_text):
    output, summary = pretrained
    for name in (
        "config.json",
        "model.safetensors",
        "vocab.txt",
        "tokenizer_config.json",
        "pretraining.json",
        CHECKPOINT,
    ):
        assert (output / name).is_file(), name
    assert json.loads((output / "pretraining.json").read_text(encoding="utf-8")) == summary
    assert summary["steps"] == 6 and summary["tokens"] == 6 * 4 * 32
    assert summary["texts"] == [str(sample_text)] and summary["settings"]["batch_size"] == 4
    assert [run["steps"] for run in summary["runs"]] == [6] and summary["runs"][0]["tokens_per_second"] > 0
    assert 0 < summary["epochs"] == pytest.approx(24 / (summary["corpus_tokens"] / 30), abs=1e-3)

    log = read_training_log(output / "pretraining_log.jsonl", required=("step", "seconds", "tokens", "loss"))
    assert [record["step"] for record in log] == [2, 4, 6]
    assert [record["tokens"] for record in log] == [2 * 128, 4 * 128, 6 * 128]
    assert all(0 < record["loss"] < 20 for record in log)

    before, after = AutoModel.from_pretrained(tiny_encoder), AutoModel.from_pretrained(output)
    assert after.config.hidden_size == 64 and after.config.num_hidden_layers == 2
    # The encoder's dropout is kept for fine-tuning, though pretraining ran without.
    assert after.config.hidden_dropout_prob == before.config.hidden_dropout_prob == 0.1
    changed = [
        name for name, tensor in after.state_dict().items() if not torch.equal(tensor, before.state_dict()[name])
    ]
    assert "encoder.layer.0.attention.self.query.weight" in changed
    assert "embeddings.word_embeddings.weight" in changed
    # The pipe's encoder layer reads it, with the same vocabulary.
    assert CharBert.from_pretrained(str(output)).vocab.tokens == encoder_vocab(str(tiny_encoder)).tokens


def test_a_run_split_in_two_equals_one_uninterrupted_run(pretrained, tiny_encoder, sample_text, tmp_path):
    whole, whole_summary = pretrained
    split = tmp_path / "split"
    first = pretrain_encoder(
        str(tiny_encoder), [sample_text], split, PretrainingSettings(**{**TINY_RUN, "max_steps": 4})
    )
    second = pretrain_encoder(
        str(tiny_encoder), [sample_text], split, PretrainingSettings(**{**TINY_RUN, "max_steps": 2})
    )
    assert first["steps"] == 4 and second["steps"] == 6 and second["tokens"] == whole_summary["tokens"]
    assert [(run["first_step"], run["steps"]) for run in second["runs"]] == [(1, 4), (5, 2)]
    assert second["seconds"] > first["seconds"]
    ours, theirs = load_file(split / "model.safetensors"), load_file(whole / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.allclose(ours[name], theirs[name], atol=1e-6), name

    def losses(path):
        return [record["loss"] for record in read_training_log(path / "pretraining_log.jsonl", required=("loss",))]

    assert losses(split) == pytest.approx(losses(whole), abs=1e-5)


def test_resuming_refuses_other_settings_or_another_encoder(pretrained, tiny_bigram_encoder, sample_text, tmp_path):
    output, _ = pretrained
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / CHECKPOINT).write_bytes((output / CHECKPOINT).read_bytes())
    with pytest.raises(ValueError, match=r"other settings \(batch_size 4 → 8\).*--restart"):
        pretrain_encoder(
            str(pretrained[1]["encoder"]), [sample_text], copy, PretrainingSettings(**{**TINY_RUN, "batch_size": 8})
        )
    with pytest.raises(ValueError, match="continues the pretraining of .*tiny.*--restart"):
        pretrain_encoder(str(tiny_bigram_encoder), [sample_text], copy, PretrainingSettings(**TINY_RUN))
    fresh = pretrain_encoder(
        str(tiny_bigram_encoder), [sample_text], copy, PretrainingSettings(**{**TINY_RUN, "max_steps": 1}), restart=True
    )
    assert fresh["steps"] == 1 and len(fresh["runs"]) == 1


def test_too_little_text_for_one_batch(tiny_encoder, tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("中国人民\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"less than one batch \(4 windows of 32 tokens\).*short\.txt"):
        pretrain_encoder(str(tiny_encoder), [path], tmp_path / "out", PretrainingSettings(**TINY_RUN))


def test_the_exported_encoder_is_half_precision_and_loads_in_the_pipe(pretrained, tmp_path):
    output, _ = pretrained
    exported = export_encoder(output, tmp_path / "exported", half=True)
    assert not (exported / CHECKPOINT).exists() and not (exported / "corpus.npy").exists()
    for name in ("pretraining.json", "pretraining_log.jsonl"):
        assert (exported / name).read_bytes() == (output / name).read_bytes(), name
    weights = load_file(exported / "model.safetensors")
    assert {tensor.dtype for tensor in weights.values()} == {torch.float16}
    full = load_file(output / "model.safetensors")
    for name, tensor in weights.items():
        assert torch.allclose(tensor.float(), full[name], atol=1e-3, rtol=1e-3), name
    module = CharBert.from_pretrained(str(exported))
    assert next(module.parameters()).dtype == torch.float32


def test_the_export_script_keeps_full_precision_unless_asked(pretrained, tmp_path):
    output, _ = pretrained
    result = run_script("export_encoder.py", output, tmp_path / "full")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {tensor.dtype for tensor in load_file(tmp_path / "full" / "model.safetensors").values()} == {torch.float32}
    (tmp_path / "file").write_text("", encoding="utf-8")
    result = run_script("export_encoder.py", output, tmp_path / "file")
    assert result.returncode == 1 and "Not a directory" in result.stdout + result.stderr


def test_speed_is_measured_for_both_losses(tiny_encoder, sample_text):
    speeds = pretraining_speed(str(tiny_encoder), [sample_text], PretrainingSettings(**TINY_RUN), steps=2, warmup=1)
    assert set(speeds) == {"masked", "full"} and all(speed > 0 for speed in speeds.values())


def test_the_speed_benchmark_prints_and_writes_both_losses(tiny_encoder, sample_text, tmp_path):
    output = tmp_path / "speed.json"
    result = run_script(
        "benchmark_pretraining.py",
        tiny_encoder,
        "--text",
        sample_text,
        "--steps",
        1,
        "--batch-size",
        2,
        "--sequence-length",
        32,
        "--output",
        output,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(output.read_text(encoding="utf-8"))["encoders"][str(tiny_encoder)]
    assert figures["speedup"] == pytest.approx(figures["masked"] / figures["full"])
    assert f"{figures['masked']:,.0f}" in result.stdout


def test_cli_takes_config_overrides_after_the_text_files(tiny_encoder, sample_text, tmp_path):
    output = tmp_path / "cli"
    overrides = {"max_steps": 2, "batch_size": 2, "sequence_length": 32, "log_every": 1}
    flags = [item for key, value in overrides.items() for item in (f"--pretraining.{key}", value)]
    result = run_script("pretrain_encoder.py", tiny_encoder, output, sample_text, *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((output / "pretraining.json").read_text(encoding="utf-8"))
    assert summary["texts"] == [str(sample_text)]
    assert summary["steps"] == 2 and summary["tokens"] == 2 * 2 * 32
    assert {key: summary["settings"][key] for key in overrides} == overrides
    # Run again: it continues; with --restart it starts afresh.
    assert run_script("pretrain_encoder.py", tiny_encoder, output, sample_text, *flags).returncode == 0
    assert json.loads((output / "pretraining.json").read_text(encoding="utf-8"))["steps"] == 4
    assert run_script("pretrain_encoder.py", tiny_encoder, output, sample_text, *flags, "--restart").returncode == 0
    assert json.loads((output / "pretraining.json").read_text(encoding="utf-8"))["steps"] == 2


def test_cli_names_a_missing_text_file(tiny_encoder, sample_text, tmp_path):
    missing = tmp_path / "no_such_text.txt"
    result = run_script(
        "pretrain_encoder.py", tiny_encoder, tmp_path / "out", sample_text, missing, "--pretraining.max_steps", 1
    )
    assert result.returncode != 0
    # wasabi wraps long lines: compare with the whitespace collapsed.
    assert f"No such text file: {missing}" in " ".join((result.stdout + result.stderr).split())
    assert not (tmp_path / "out").exists()


def test_device_name_follows_spacys_gpu_id():
    assert device_name(-1) == "cpu"
    assert device_name(0) == "cuda:0"
    assert device_name(1) == "cuda:1"
