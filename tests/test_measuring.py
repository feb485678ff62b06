"""The lab's measuring helpers (spacy_bert_crf/lab/measuring.py) and the pipe's stage timer."""

import os
import time

import spacy
from spacy.training import Example

from conftest import tagger_config
from spacy_bert_crf.lab.measuring import StageSeconds, in_fresh_process, peak_rss_mib, timed_passes


def test_a_pass_repeats_the_work_until_it_has_lasted_min_seconds():
    calls = []

    def run():
        calls.append(1)
        time.sleep(0.01)

    timing = timed_passes(run, passes=3, min_seconds=0.05)
    assert 5 <= timing.runs_per_pass <= 6
    # The warm-up call, then three passes.
    assert len(calls) == 1 + 3 * timing.runs_per_pass
    assert 0.01 <= timing.seconds < 0.02
    assert timing.spread >= 0 and timing.stage_seconds == {}


def test_stage_seconds_are_per_run_medians():
    stages = StageSeconds()

    def run():
        with stages("slow"):
            time.sleep(0.004)
        with stages("fast"):
            pass

    timing = timed_passes(run, passes=3, min_seconds=0.0, stages=stages)
    assert timing.runs_per_pass == 1
    assert 0.004 <= timing.stage_seconds["slow"] < timing.seconds
    assert timing.stage_seconds["fast"] < 0.001
    # The warm-up call counts in the totals, not in the passes.
    assert stages.totals["slow"] >= 4 * 0.004


def test_a_stage_that_raises_is_still_timed():
    stages = StageSeconds()
    try:
        with stages("failing"):
            raise RuntimeError
    except RuntimeError:
        pass
    assert "failing" in stages.totals


def test_a_fresh_process_is_another_process_with_its_own_peak():
    assert in_fresh_process(os.getpid) != os.getpid()
    assert in_fresh_process(peak_rss_mib) > 0


def test_the_pipe_reports_its_decoding_stages_to_its_timer(tiny_encoder, pd2014_docs):
    nlp = spacy.blank("zh")
    nlp.add_pipe("bert_crf_ner", config=tagger_config(tiny_encoder))
    nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc) for doc in pd2014_docs[:4]])
    pipe = nlp.get_pipe("bert_crf_ner")
    pipe.stage_timer = stages = StageSeconds()
    list(nlp.pipe(doc.text for doc in pd2014_docs[:8]))
    assert set(stages.totals) == {"decode", "probabilities"}
    pipe.spans_key = None
    before = dict(stages.totals)
    nlp(pd2014_docs[0].text)
    assert stages.totals["probabilities"] == before["probabilities"] and stages.totals["decode"] > before["decode"]
    pipe.stage_timer = None
    nlp(pd2014_docs[0].text)
