"""Annotating corpora into resumable JSONL shards (spacy_bert_crf/lab/annotation.py, scripts/annotate.py)."""

import gzip
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import spacy

from conftest import ROOT, run_script
from spacy_bert_crf.lab.annotation import (
    InputFormat,
    annotate,
    doc_entities,
    input_files,
    plan_shards,
    shard_documents,
    shard_path,
)
from spacy_bert_crf.lab.annotation_benchmark import run_sampled, worker_peaks_mib
from spacy_bert_crf.lab.measuring import process_tree


@pytest.fixture(scope="module")
def model(tiny_pipeline):
    return tiny_pipeline


@pytest.fixture(scope="module")
def texts(pd2014_docs):
    return [doc.text for doc in pd2014_docs[:12]]


@pytest.fixture()
def corpus(tmp_path, texts) -> Path:
    """A folder of inputs as users have them: plain text with an empty line and a
    line of bad UTF-8, gzip-compressed text, and JSONL with ids and bad lines."""
    root = tmp_path / "corpus"
    (root / "news").mkdir(parents=True)
    plain = "\n".join(texts[:4]).encode() + b"\n\n" + "北京".encode() + b"\xff\xfe" + "上海".encode() + b"\n"
    (root / "news" / "a.txt").write_bytes(plain)
    with gzip.open(root / "news" / "b.txt.gz", "wt", encoding="utf-8") as file:
        file.write("\n".join(texts[4:8]) + "\n")
    jsonl = [json.dumps({"id": f"doc-{i}", "text": text}, ensure_ascii=False) for i, text in enumerate(texts[8:])]
    jsonl += ["{not json", json.dumps({"id": "no-text", "body": "x"}), json.dumps(["a list"])]
    (root / "c.jsonl").write_text("\n".join(jsonl) + "\n", encoding="utf-8")
    (root / "README.md").write_text("not an input\n", encoding="utf-8")
    return root


def records(output_dir: Path):
    manifest = json.loads((output_dir / "manifest.json").read_text(encoding="utf-8"))
    return [
        json.loads(line)
        for name in manifest["shards"]
        for line in (output_dir / "shards" / name).read_text(encoding="utf-8").splitlines()
    ], manifest


def test_folders_and_globs_name_the_text_and_jsonl_files(corpus):
    assert [path.name for path in input_files([corpus])] == ["c.jsonl", "a.txt", "b.txt.gz"]
    assert [path.name for path in input_files([str(corpus / "news" / "*.txt*")])] == ["a.txt", "b.txt.gz"]
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        input_files([corpus / "nothing.txt"])


def test_every_line_gets_one_record_with_the_pipes_entities(model, corpus, texts, tmp_path):
    output = tmp_path / "out"
    annotate(str(model), [corpus], output, shard_lines=3, log=lambda line: None)
    found, manifest = records(output)
    assert manifest["input_lines"] == manifest["documents"] == len(found) == 6 + 4 + 7 and manifest["complete"]
    assert [(Path(r["source"]).name, r["line"]) for r in found] == [
        *(("c.jsonl", n) for n in range(1, 8)),
        *(("a.txt", n) for n in range(1, 7)),
        *(("b.txt.gz", n) for n in range(1, 5)),
    ]
    by_place = {(Path(r["source"]).name, r["line"]): r for r in found}
    assert by_place[("a.txt", 5)]["chars"] == 0 and by_place[("a.txt", 5)]["ents"] == []
    bad = by_place[("a.txt", 6)]
    assert bad["problems"] == ["invalid_utf8"] and bad["chars"] == len("北京\ufffd\ufffd上海")
    assert [by_place[("c.jsonl", n)].get("id") for n in range(1, 8)] == [
        "doc-0",
        "doc-1",
        "doc-2",
        "doc-3",
        None,
        "no-text",
        None,
    ]
    assert [by_place[("c.jsonl", n)].get("problems") for n in (5, 6, 7)] == [
        ["invalid_json"],
        ["no_text_field"],
        ["no_text_field"],
    ]
    assert manifest["problems"] == {"invalid_json": 1, "invalid_utf8": 1, "no_text_field": 2}
    # Each shard is one nlp.pipe call over its lines; lines without text are tagged as "".
    nlp = spacy.load(model)
    shards = plan_shards(input_files([corpus]), 3)
    expected = [
        doc_entities(doc)
        for shard in shards
        for doc in nlp.pipe(text for text, _ in shard_documents(shard, InputFormat()))
    ]
    assert [r["ents"] for r in found] == expected
    assert [len(shard_path(output, shard).read_text(encoding="utf-8").splitlines()) for shard in shards] == [
        3,
        3,
        1,
        3,
        3,
        3,
        1,
    ]
    assert manifest["entities"] == {
        label: sum(ent["label"] == label for ents in expected for ent in ents)
        for label in sorted({ent["label"] for ents in expected for ent in ents})
    }
    assert manifest["characters"] == sum(r["chars"] for r in found)


def test_a_rerun_resumes_with_the_same_output_and_overwrite_starts_afresh(model, corpus, tmp_path):
    output = tmp_path / "out"
    annotate(str(model), [corpus], output, shard_lines=3, log=lambda line: None)
    before = {path.name: path.read_bytes() for path in (output / "shards").iterdir()}
    kept = output / "shards" / sorted(before)[0]
    kept_mtime = kept.stat().st_mtime_ns
    # A crash: one shard never finished, and its temporary file was left behind.
    lost = output / "shards" / sorted(before)[2]
    lost.unlink()
    (lost.parent / f".{lost.name}.123.partial").write_text('{"half": ', encoding="utf-8")
    resumed = []
    annotate(str(model), [corpus], output, shard_lines=3, log=resumed.append)
    assert resumed[0] == f"{len(before)} shards, {len(before) - 1} already done, 1 to tag (local)"
    after = {path.name: path.read_bytes() for path in (output / "shards").glob("*.jsonl")}
    assert after == before and kept.stat().st_mtime_ns == kept_mtime
    assert not list((output / "shards").glob(".*.partial"))
    afresh = []
    annotate(str(model), [corpus], output, shard_lines=3, overwrite=True, log=afresh.append)
    assert afresh[0] == f"{len(before)} shards, 0 already done, {len(before)} to tag (local)"
    assert {path.name: path.read_bytes() for path in (output / "shards").glob("*.jsonl")} == before


def test_a_long_line_is_one_record(model, tmp_path, texts):
    long_line = "".join(texts) * (100_000 // len("".join(texts)) + 1)
    (tmp_path / "long.txt").write_text(long_line[:100_000] + "\n", encoding="utf-8")
    annotate(str(model), [tmp_path / "long.txt"], tmp_path / "out", log=lambda line: None)
    found, manifest = records(tmp_path / "out")
    assert manifest["documents"] == 1 and found[0]["chars"] == 100_000
    assert all(0 <= ent["start"] < ent["end"] <= 100_000 for ent in found[0]["ents"])


def test_two_local_workers_write_what_one_does(model, corpus, tmp_path):
    """In a fresh process, as users run it: spaCy forks the workers (`n_process`)."""
    annotate(str(model), [corpus], tmp_path / "one", shard_lines=4, log=lambda line: None)
    two = run_script("annotate.py", model, corpus, tmp_path / "two", "--workers", 2, "--shard-lines", 4)
    assert two.returncode == 0, two.stderr[-3000:]
    for path in (tmp_path / "one" / "shards").glob("*.jsonl"):
        assert (tmp_path / "two" / "shards" / path.name).read_bytes() == path.read_bytes(), path.name


def test_the_script_names_a_missing_input_and_refuses_a_file_as_output(model, corpus, tmp_path):
    missing = run_script("annotate.py", model, tmp_path / "nope.txt", tmp_path / "out")
    assert missing.returncode == 1 and "nope.txt: no such file" in " ".join(missing.stdout.split())
    (tmp_path / "file").write_text("", encoding="utf-8")
    clash = run_script("annotate.py", model, corpus, tmp_path / "file")
    assert clash.returncode == 1 and "not a directory" in " ".join(clash.stdout.split())
    good = run_script("annotate.py", model, corpus, tmp_path / "out", "--shard-lines", 5)
    assert good.returncode == 0, good.stderr
    assert "17 records for 17 input lines" in " ".join(good.stdout.split())
    assert json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))["complete"] is True


# Ray is the `ray` extra, which CI installs; without it these tests skip. Each starts Ray
# (tens of seconds), so they are slow tests.
requires_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra")


@pytest.fixture()
def clean_run(model, corpus, tmp_path):
    output = tmp_path / "local"
    annotate(str(model), [corpus], output, shard_lines=2, log=lambda line: None)
    return {path.name: path.read_bytes() for path in (output / "shards").glob("*.jsonl")}


@requires_ray
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_gives_the_local_engines_output(model, corpus, clean_run, tmp_path, monkeypatch):
    import ray

    # No cluster listens there: a run without --address must start its own Ray.
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    output = tmp_path / "ray"
    result = annotate(str(model), [corpus], output, engine="ray", workers=2, shard_lines=2, log=lambda line: None)
    assert result["complete"] and not ray.is_initialized()
    assert {path.name: path.read_bytes() for path in (output / "shards").glob("*.jsonl")} == clean_run


@pytest.fixture()
def ray_cluster(tmp_path, monkeypatch):
    """A Ray head on 127.0.0.1 with 2 CPUs, stopped afterwards."""
    # Ray 2.60 turns token authentication on for `ray start` when ~/.ray/auth_token
    # exists, and a joining driver was then refused (InvalidAuthToken) on this machine;
    # the head and the jobs the tests start (which inherit the environment) say the
    # mode themselves, so a token left by an earlier run changes nothing.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    port = 6391
    start = subprocess.run(
        [
            "ray",
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120)


@requires_ray
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_address_joins_a_running_cluster(model, corpus, clean_run, ray_cluster, tmp_path):
    output = tmp_path / "cluster"
    script = run_script(
        "annotate.py",
        model,
        corpus,
        output,
        "--engine",
        "ray",
        "--address",
        ray_cluster,
        "--workers",
        2,
        "--shard-lines",
        2,
    )
    assert script.returncode == 0, script.stderr[-3000:]
    assert {path.name: path.read_bytes() for path in (output / "shards").glob("*.jsonl")} == clean_run


@requires_ray
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_killed_worker_loses_nothing(model, texts, pd2014_docs, ray_cluster, tmp_path):
    """Kill one actor process mid-run: the job finishes, every line once, the entities a clean run's."""
    corpus = tmp_path / "lines.txt"
    corpus.write_text("\n".join(doc.text for doc in pd2014_docs[:300]) + "\n", encoding="utf-8")
    clean = tmp_path / "clean"
    annotate(str(model), [corpus], clean, shard_lines=5, log=lambda line: None)
    output = tmp_path / "killed"
    command = [sys.executable, str(ROOT / "scripts" / "annotate.py"), str(model), str(corpus), str(output)]
    command += ["--engine", "ray", "--address", ray_cluster, "--workers", "2", "--shard-lines", "5"]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and job.poll() is None:
        actors = subprocess.run(["pgrep", "-f", "MapBatches.ShardTagger"], capture_output=True, text=True)
        if actors.stdout.split() and list((output / "shards").glob("*.jsonl")):
            killed = int(actors.stdout.split()[0])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    stdout, stderr = job.communicate(timeout=300)
    assert killed is not None, "no worker was seen tagging"
    assert job.returncode == 0, stderr[-3000:]
    found, manifest = records(output)
    assert manifest["complete"] and len(found) == manifest["input_lines"] == 300
    assert [r["line"] for r in found] == list(range(1, 301))
    shards = sorted(path.name for path in (clean / "shards").glob("*.jsonl"))
    assert sorted(path.name for path in (output / "shards").glob("*.jsonl")) == shards
    for name in shards:
        assert (output / "shards" / name).read_bytes() == (clean / "shards" / name).read_bytes(), name


def test_the_benchmark_samples_each_process_of_a_run():
    tree = process_tree(os.getpid())
    assert tree[os.getpid()]["rss_kib"] > 0
    code = "import multiprocessing as m, time\nif __name__ == '__main__':\n p = m.Process(target=time.sleep, args=(1,)); p.start(); p.join()"
    run = run_sampled([sys.executable, "-c", code], sample_seconds=0.05)
    assert run["seconds"] >= 1 and len(run["processes"]) >= 2
    assert len(worker_peaks_mib(run, "local", 2)) >= 1 and worker_peaks_mib(run, "local", 1)[0] > 0


def test_a_file_of_space_separated_characters_is_read_as_its_characters(model, texts, tmp_path):
    (tmp_path / "chars.txt").write_text("\n".join(" ".join(text) for text in texts[:3]) + "\n\n", encoding="utf-8")
    annotate(str(model), [tmp_path / "chars.txt"], tmp_path / "out", log=lambda line: None)
    found, manifest = records(tmp_path / "out")
    assert [r["chars"] for r in found] == [len(text) for text in texts[:3]] + [0]
    nlp = spacy.load(model)
    assert [r["ents"] for r in found] == [doc_entities(doc) for doc in nlp.pipe(texts[:3] + [""])]
    assert manifest["characters"] == sum(map(len, texts[:3]))
