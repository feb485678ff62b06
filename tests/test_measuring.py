"""The lab's measuring helpers (spacy_bert_crf/lab/measuring.py) and the pipe's stage timer."""

import os

import pytest
import spacy
from spacy.training import Example

from conftest import tagger_config
from spacy_bert_crf.lab import measuring
from spacy_bert_crf.lab.measuring import StageSeconds, in_fresh_process, peak_rss_mib, timed_passes


class Clock:
    """A stand-in for time.perf_counter that moves only when the work says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(measuring.time, "perf_counter", clock)
    return clock


def test_a_pass_repeats_the_work_until_it_has_lasted_min_seconds(clock):
    durations = iter([0.125] + [0.125, 0.25, 0.125, 0.125] * 3)
    calls = []

    def run():
        calls.append(1)
        clock.now += next(durations)

    timing = timed_passes(run, passes=3, min_seconds=0.5)
    # The warm-up call took 0.125 s: four runs fill half a second.
    assert timing.runs_per_pass == 4 and len(calls) == 1 + 3 * 4
    assert timing.seconds == 0.625 / 4 and timing.spread == 0.0 and timing.stage_seconds == {}


def test_the_median_pass_counts_and_the_spread_says_how_far_passes_differ(clock):
    durations = iter([1.0, 1.0, 3.0, 2.0])
    timing = timed_passes(lambda: setattr(clock, "now", clock.now + next(durations)), passes=3, min_seconds=0.0)
    assert timing.runs_per_pass == 1 and timing.seconds == 2.0 and timing.spread == (3.0 - 1.0) / 2.0


def test_stage_seconds_are_per_run_medians(clock):
    stages = StageSeconds()

    def run():
        with stages("slow"):
            clock.now += 0.5
        with stages("fast"):
            clock.now += 0.125
        clock.now += 0.25

    timing = timed_passes(run, passes=3, min_seconds=0.0, stages=stages)
    assert timing.runs_per_pass == 1 and timing.seconds == 0.875
    assert timing.stage_seconds == {"slow": 0.5, "fast": 0.125}
    # The warm-up call counts in the totals, not in the passes.
    assert stages.totals == {"slow": 2.0, "fast": 0.5}


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
