"""The JSONL training logger, fed as spaCy's training loop feeds it, and the reader of its logs."""

import gzip
import io
import json
import time

import numpy
import pytest
import spacy
from spacy.training import Example
from spacy.util import load_config, load_model_from_config

from conftest import ROOT
from spacy_bert_crf.training_log import make_jsonl_logger, read_training_log

LOGGER = "spacy_bert_crf.JSONLLogger.v1"


@pytest.fixture(scope="module")
def config(tiny_encoder, tiny_vectors):
    """configs/default.cfg with the tiny encoder, interpolated as `spacy train` does."""
    overrides = {"paths.encoder": str(tiny_encoder), "paths.bigram_vectors": str(tiny_vectors / "bigrams.npz")}
    return load_config(ROOT / "configs" / "default.cfg", overrides=overrides, interpolate=True)


@pytest.fixture(scope="module")
def nlp_and_scores(config, pd2014_docs):
    """The default pipeline, initialised on a few gold Docs, and its scores on them."""
    nlp = load_model_from_config(config, auto_fill=True)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in pd2014_docs[:12] if len(doc)]
    nlp.initialize(lambda: examples)
    return nlp, nlp.evaluate(examples[:4])


def info(step, losses, score, other_scores, started=0.0):
    """An `info` dict as `train_while_improving` yields it at an evaluation: losses summed since the last."""
    return {
        "epoch": step // 150,
        "step": step,
        "score": score,
        "other_scores": other_scores,
        "losses": losses,
        "checkpoints": [(score, step)],
        "seconds": int(time.perf_counter() - started),
        "words": 40 * step,
    }


def as_numpy(scores):
    """Scores as numpy numbers, as a scorer may return them."""
    if isinstance(scores, dict):
        return {key: as_numpy(value) for key, value in scores.items()}
    if isinstance(scores, list):
        return [as_numpy(value) for value in scores]
    return None if scores is None else numpy.float32(scores)


def read_lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_logger_is_registered():
    assert spacy.registry.loggers.get(LOGGER) is make_jsonl_logger


def test_one_line_per_evaluation_with_mean_losses(nlp_and_scores, tmp_path):
    nlp, evaluated = nlp_and_scores
    # The untrained pipe's per-type scores are all 0: give each its own value.
    per_type = {label: {"p": 0.5, "r": 0.25, "f": 1 / 3 + i} for i, label in enumerate(evaluated["ents_per_type"])}
    scores = {**evaluated, "ents_per_type": per_type}
    path = tmp_path / "training" / "log.jsonl"
    stdout = io.StringIO()
    log_step, finalize = make_jsonl_logger(path, progress_bar=None)(nlp, stdout, io.StringIO())
    started = time.perf_counter()

    log_step(info(0, {"bert_crf_ner": 3.0}, 0.1, scores, started))
    # Flushed at once: a run still going can be read.
    first = read_lines(path)
    assert len(first) == 1
    time.sleep(0.05)
    for _ in range(99):
        log_step(None)
    assert read_lines(path) == first
    log_step(info(100, {"bert_crf_ner": numpy.float32(250.0)}, 0.25, as_numpy(scores), started))
    assert len(read_lines(path)) == 2
    log_step(None)
    log_step(info(150, {"bert_crf_ner": 25.0}, numpy.float64(0.5), scores, started))
    finalize()

    records = read_training_log(path)
    assert [record["step"] for record in records] == [0, 100, 150]
    assert [record["epoch"] for record in records] == [0, 0, 1]
    assert [record["words"] for record in records] == [0, 4000, 6000]
    # spaCy sums the losses since the previous evaluation: step 0 had 1 update, then 100, then 50.
    assert [record["losses"]["bert_crf_ner"] for record in records] == [3.0, 2.5, 0.5]
    assert all(list(record["losses"]) == ["bert_crf_ner"] for record in records)
    assert [record["score"] for record in records] == [0.1, 0.25, 0.5]
    for record in records:
        assert set(record) == {"step", "epoch", "seconds", "words", "losses", "scores", "score"}
        assert record["scores"]["ents_f"] == pytest.approx(scores["ents_f"])
        assert record["scores"]["ents_tag_acc"] == pytest.approx(scores["ents_tag_acc"])
        assert set(record["scores"]["ents_per_type"]) == {"T", "PER", "ORG", "LOC"}
        for label, values in record["scores"]["ents_per_type"].items():
            assert values == pytest.approx(per_type[label])
            assert all(type(value) is float for value in values.values())
    assert records[0]["scores"] == json.loads(json.dumps(scores))
    # Wall time, measured by the logger (spaCy's `seconds` is truncated to whole seconds).
    seconds = [record["seconds"] for record in records]
    assert seconds == sorted(seconds) and 0 <= seconds[0] < 5
    assert seconds[1] - seconds[0] >= 0.045
    # spaCy's console table is still printed, with spaCy's summed loss.
    table = stdout.getvalue().splitlines()
    assert "LOSS BERT" in table[0] and "ENTS_F" in table[0]
    assert table[3].split()[:3] == ["0", "100", "250.00"]


def test_a_rerun_overwrites_the_log(nlp_and_scores, tmp_path):
    nlp, scores = nlp_and_scores
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 999}\n' * 3, encoding="utf-8")
    for run in range(2):
        log_step, finalize = make_jsonl_logger(path, progress_bar=None, console_output=False)(nlp)
        log_step(info(0, {"bert_crf_ner": float(run)}, 0.0, scores))
        finalize()
        records = read_training_log(path)
        assert [(record["step"], record["losses"]["bert_crf_ner"]) for record in records] == [(0, float(run))]


def test_the_default_config_logs_with_it(config, nlp_and_scores, tmp_path):
    nlp, scores = nlp_and_scores
    assert config["training"]["logger"]["@loggers"] == LOGGER
    path = tmp_path / "from_config.jsonl"
    logger_config = {**config["training"]["logger"], "path": str(path), "console_output": False}
    setup = spacy.registry.resolve({"logger": logger_config})["logger"]
    log_step, finalize = setup(nlp)
    log_step(info(0, {"bert_crf_ner": 1.5}, 0.0, scores))
    finalize()
    assert read_training_log(path)[0]["losses"] == {"bert_crf_ner": 1.5}


def test_the_end_of_a_run_counts_the_tokens_trained_without_gold(config, pd2014_docs, tmp_path):
    nlp = load_model_from_config(config, auto_fill=True)
    labelled = [Example(nlp.make_doc(doc.text), doc) for doc in pd2014_docs[:6] if len(doc)]
    nlp.initialize(lambda: labelled)
    # References without entity annotation: every token is missing.
    unlabelled = [Example(nlp.make_doc(doc.text), nlp.make_doc(doc.text)) for doc in pd2014_docs[6:9] if len(doc)]
    log_step, finalize = make_jsonl_logger(tmp_path / "log.jsonl", progress_bar=None, console_output=False)(
        nlp, io.StringIO(), stderr := io.StringIO()
    )
    with pytest.warns(UserWarning, match="no gold entity tag") as warned:
        for example in unlabelled:
            nlp.update([example], sgd=None)
        nlp.update(labelled[:2], sgd=None)
    assert len(warned) == 1
    finalize()
    count = sum(len(example.predicted) for example in unlabelled)
    assert nlp.get_pipe("bert_crf_ner").tokens_without_gold == count
    assert (
        stderr.getvalue()
        == f"'bert_crf_ner': {count:,} training tokens had no gold entity tag and were trained as 'O'\n"
    )


def test_a_run_with_every_tag_says_nothing_at_its_end(nlp_and_scores, tmp_path):
    nlp, _ = nlp_and_scores
    log_step, finalize = make_jsonl_logger(tmp_path / "log.jsonl", progress_bar=None, console_output=False)(
        nlp, io.StringIO(), stderr := io.StringIO()
    )
    finalize()
    assert stderr.getvalue() == ""


def log_record(step, loss, score):
    return {
        "step": step,
        "epoch": 0,
        "seconds": step / 10,
        "words": 100 * step,
        "losses": {"bert_crf_ner": loss},
        "scores": {"ents_f": score, "ents_p": score, "ents_r": score, "ents_tag_acc": 0.9, "ents_per_type": {}},
        "score": score,
    }


def test_read_training_log_round_trips_and_names_bad_lines(tmp_path):
    records = [log_record(0, 5.0, 0.0), log_record(200, 2.0, 0.5)]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps(record) for record in records) + "\n\n", encoding="utf-8")
    assert read_training_log(path) == records
    with gzip.open(tmp_path / "log.jsonl.gz", "wt", encoding="utf-8") as file:
        file.write("".join(json.dumps(record) + "\n" for record in records))
    assert read_training_log(tmp_path / "log.jsonl.gz") == records

    path.write_text(json.dumps(records[0]) + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}:3: not valid JSON"):
        read_training_log(path)
    path.write_text(json.dumps(records[0]) + '\n{"step": 5}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}:2: not a training log record: no losses, scores"):
        read_training_log(path)
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}:1: not a training log record: no step, losses, scores"):
        read_training_log(path)


def test_read_training_log_checks_the_required_keys(tmp_path):
    # pretrain_encoder's log: other keys than the training log's.
    records = [
        {"step": 50, "seconds": 1.5, "tokens": 6400, "loss": 9.8},
        {"step": 100, "seconds": 3.0, "tokens": 12800, "loss": 8.1},
    ]
    path = tmp_path / "pretraining_log.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    assert read_training_log(path, required=("step", "loss")) == records
    assert read_training_log(path, required=()) == records
    with pytest.raises(ValueError, match=f"{path}:1: not a training log record: no losses, scores"):
        read_training_log(path)
    path.write_text(json.dumps(records[0]) + '\n{"step": 100, "tokens": 12800}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}:2: not a training log record: no loss$"):
        read_training_log(path, required=("step", "loss"))
