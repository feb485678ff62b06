"""The benchmark: its systems really share weights and its figures are computed right.

That every system runs and reports is the project's `benchmark` command test (tests/test_project.py).
"""

import pytest
import spacy
import torch
from transformers import BertConfig, BertModel

from conftest import ASSETS, invoke_script
from spacy_bert_crf.lab.benchmark_report import encoder_flops_per_token, peak_flops, replace_section
from spacy_bert_crf.lab.benchmark_systems import (
    BenchmarkSettings,
    _PlainTagger,
    benchmark_docs,
    token_classifier,
    untrained_pipeline,
)


@pytest.fixture(scope="module")
def gold_docs():
    return benchmark_docs(ASSETS / "pd2014" / "test.txt.gz", spacy.blank("zh").vocab, limit=12)


@pytest.fixture(scope="module")
def crf_pipeline(tiny_encoder, gold_docs, tmp_path_factory):
    settings = BenchmarkSettings(encoder=str(tiny_encoder))
    return untrained_pipeline(tmp_path_factory.mktemp("bench") / "crf", settings, gold_docs), settings


def test_benchmark_sentences_fit_one_window(gold_docs):
    assert len(gold_docs) == 12
    assert all(0 < len(doc.text) <= 126 and not any(char.isspace() for char in doc.text) for doc in gold_docs)


def test_plain_loop_and_hf_model_compute_the_pipes_emissions(crf_pipeline, gold_docs):
    """(b), (c) and (f) are the same model as (a), called by hand: same emissions."""
    path, settings = crf_pipeline
    nlp = spacy.load(path)
    ner = nlp.get_pipe("bert_crf_ner")
    texts = [doc.text for doc in gold_docs]
    expected = ner.model.predict([nlp.make_doc(text) for text in texts])
    tagger = _PlainTagger(path, settings)
    tagger.bert.eval()
    with torch.no_grad():
        emissions, mask = tagger.emissions(texts)
    for row, rows in enumerate(expected):
        assert int(mask[row].sum()) == len(rows)
        torch.testing.assert_close(emissions[row, : len(rows)], torch.as_tensor(rows), atol=1e-4, rtol=1e-4)
    # (f)'s logits are the emissions, on a sentence of one wordpiece per character.
    row = next(i for i, text in enumerate(texts) if len(tagger.tokenizer(text)["input_ids"]) == len(text) + 2)
    with torch.no_grad():
        logits = token_classifier(tagger)(**tagger.tokenizer(texts[row], return_tensors="pt")).logits[0, 1:-1]
    torch.testing.assert_close(logits, emissions[row, : len(texts[row])], atol=1e-4, rtol=1e-4)
    # On the pipe's own emissions (an untrained model's near-ties make 1e-4 matter), the loop's decode is the pipe's.
    padded = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(rows) for rows in expected], batch_first=True)
    paths = tagger.decode(padded, mask, "ours")
    assert [path.tolist() for path in paths] == [
        found.tag_ids.tolist() for found in ner.predict([nlp.make_doc(t) for t in texts])
    ]


def test_flops_count_every_weight_matrix_once():
    config = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    matrices = sum(
        parameter.numel()
        for name, parameter in BertModel(config).encoder.named_parameters()
        if name.endswith("weight") and parameter.dim() == 2
    )
    assert encoder_flops_per_token(config, n_tokens=10) == 2 * matrices + 2 * 2 * (2 * 10 * 64)


def test_peak_flops_are_known_for_the_lent_gpus_only():
    assert peak_flops("NVIDIA H100 80GB HBM3", mixed_precision=False) == 67e12
    assert peak_flops("NVIDIA H200", mixed_precision=True) == 989.4e12
    assert peak_flops("Intel(R) Xeon(R) CPU", mixed_precision=False) is None
    assert peak_flops("Intel(R) Xeon(R) CPU", mixed_precision=False, override_tflops=2.5) == 2.5e12


def test_replace_section_keeps_the_rest_of_the_file():
    text = "# Benchmarks\n\nhand-written\n"
    once = replace_section(text, "table 1")
    assert once.startswith(text.rstrip("\n")) and "<!-- benchmark:start -->\ntable 1\n<!-- benchmark:end -->" in once
    twice = replace_section(once + "\nafter\n", "table 2")
    assert "table 1" not in twice and "table 2" in twice and twice.endswith("\nafter\n")


def test_mixed_precision_needs_a_gpu():
    result = invoke_script("benchmark.py", "--quick", "--mixed-precision")
    assert result.exit_code != 0
    assert "needs a GPU" in result.output


def test_unknown_system_is_an_error():
    result = invoke_script("benchmark.py", "--quick", "--systems", "pipeline,tensorflow")
    assert result.exit_code != 0
    assert "tensorflow" in result.output
