"""The malloc setting is training's, asked for in the configs: loading the model leaves the allocator alone."""

import json
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.util import load_config, registry

from conftest import ROOT, tagger_config
from spacy_bert_crf.lab.allocator_benchmark import ALLOCATORS, Allocator, compare_allocators

# Records every mallopt call the process makes through ctypes, then runs the given code.
RECORD_MALLOPT = """
import ctypes, json, sys
calls = []
real_cdll = ctypes.CDLL
class Recorder:
    def __init__(self, *args, **kwargs):
        self._library = real_cdll(*args, **kwargs)
    def __getattr__(self, name):
        if name == "mallopt":
            return lambda *args: calls.append(list(args)) or 1
        return getattr(self._library, name)
ctypes.CDLL = Recorder
exec(sys.argv[1])
print(json.dumps(calls))
"""


def mallopt_calls(code: str) -> list:
    result = subprocess.run([sys.executable, "-c", RECORD_MALLOPT, code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().split("\n")[-1])


def test_importing_and_loading_leave_malloc_alone(tiny_encoder, pd2014_docs, tmp_path):
    nlp = spacy.blank("zh")
    nlp.add_pipe("bert_crf_ner", config=tagger_config(tiny_encoder))
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in pd2014_docs[:4]]
    nlp.initialize(lambda: examples)
    nlp.to_disk(tmp_path / "pipeline")
    assert mallopt_calls(f"import spacy, spacy_bert_crf; spacy.load({str(tmp_path / 'pipeline')!r})('北京')") == []


def test_the_training_configs_pin_the_threshold_before_init():
    for name in ("default", "bert_crf"):
        section = load_config(ROOT / "configs" / f"{name}.cfg")["initialize"]["before_init"]
        assert section == {"@callbacks": "spacy_bert_crf.pin_mmap_threshold.v1", "threshold": 65536}, name
    callback = registry.resolve({"cb": {"@callbacks": "spacy_bert_crf.pin_mmap_threshold.v1", "threshold": 131072}})[
        "cb"
    ]
    code = (
        "import spacy\nfrom spacy.util import registry\n"
        "callback = registry.resolve({'cb': {'@callbacks': 'spacy_bert_crf.pin_mmap_threshold.v1', 'threshold': 131072}})['cb']\n"
        "nlp = spacy.blank('zh')\nassert callback(nlp) is nlp\n"
    )
    # M_MMAP_THRESHOLD is -3 in glibc's malloc.h.
    assert mallopt_calls(code) == [[-3, 131072]]
    assert callable(callback)


@pytest.mark.slow
def test_the_allocator_benchmark_times_each_allocator(tiny_encoder, pd2014_docs, tmp_path):
    DocBin(docs=pd2014_docs[:8]).to_disk(tmp_path / "train.spacy")
    overrides = {
        "paths.train": str(tmp_path / "train.spacy"),
        "paths.dev": str(tmp_path / "train.spacy"),
        "paths.encoder": str(tiny_encoder),
        "paths.bigram_vectors": "null",
        "components.bert_crf_ner.model.tok2vec.bigram_buckets": "0",
        "training.eval_frequency": "2",
    }
    allocators = [ALLOCATORS[0], ALLOCATORS[1], Allocator("missing", preload="libno_such_malloc.so")]
    results = compare_allocators(ROOT / "configs" / "default.cfg", overrides, 2, 4, allocators)
    assert [result["allocator"] for result in results] == [ALLOCATORS[0].name, ALLOCATORS[1].name]
    for result in results:
        assert result["seconds_per_step"] > 0 and result["user_seconds"] > 0 and 0.1 < result["peak_rss_gib"] < 8
