"""How fast the server is: under load with micro-batching on and off, against `nlp.pipe`
in one process on the same texts; and the int8 encoder against fp32, in speed and F1.

Each load-test configuration gets a fresh server process, so that its peak
resident memory is its own; each is warmed up with a few requests first. The
client runs on the same machine as the server and shares its cores.
"""

import time
from dataclasses import asdict, replace
from typing import Any, Callable, Dict, List, Sequence

from spacy.scorer import Scorer
from spacy.tokens import DocBin
from spacy.training import Example

from .load_test import ServerProcess, run_load
from .measuring import in_fresh_process, peak_rss_mib, process_tree
from .serving import ServeSettings, load_pipeline

WARMUP_REQUESTS = 32


def request_texts(texts: Sequence[str], n_requests: int) -> List[str]:
    """The texts of `n_requests` requests, as `run_load` sends them: `texts` over and over."""
    return [texts[i % len(texts)] for i in range(n_requests)]


def serving_benchmark(
    model: str,
    texts: Sequence[str],
    n_requests: int = 2000,
    concurrencies: Sequence[int] = (1, 8, 32),
    settings: ServeSettings = ServeSettings(),
    quantize: bool = False,
    log: Callable[[str], None] = print,
) -> Dict[str, Any]:
    """Load-test `model` at each concurrency with micro-batching on (`settings`) and off
    (`max_batch_texts = 1`), then time `nlp.pipe` on the same texts in one process."""
    runs = []
    for batching, mode in (("on", settings), ("off", replace(settings, max_batch_texts=1))):
        for concurrency in concurrencies:
            with ServerProcess(model, mode, quantize) as server:
                run_load(server.url, texts, WARMUP_REQUESTS, concurrency)
                result = run_load(server.url, texts, n_requests, concurrency)
                memory = server_memory(server.pid)
            run = {"batching": batching, **result.summary(), **memory}
            runs.append(run)
            log(
                f"batching {batching:>3}, concurrency {concurrency:>2}: {run['requests_per_s']} requests/s, "
                f"{run['chars_per_s']} chars/s, p50/p95/p99 {run['p50_ms']}/{run['p95_ms']}/{run['p99_ms']} ms, "
                f"{run['errors']} errors, peak RSS {run['server_peak_rss_mib']} MiB (server) + "
                f"{run['worker_peak_rss_mib']} MiB (workers)"
            )
    library = in_fresh_process(library_throughput, model, request_texts(texts, n_requests), quantize)
    log(f"nlp.pipe in one process: {library['chars_per_s']} chars/s")
    top = max(concurrencies)
    best_batched = next(run for run in runs if run["batching"] == "on" and run["concurrency"] == top)
    return {
        "model": model,
        "quantize": quantize,
        "requests": n_requests,
        "distinct_texts": len(texts),
        "settings": asdict(settings),
        "runs": runs,
        "library": library,
        "server_to_library": {
            "concurrency": top,
            "ratio": round(best_batched["chars_per_s"] / library["chars_per_s"], 3),
        },
    }


def server_memory(pid: int) -> Dict[str, Any]:
    """Peak resident MiB of the server process and of each of its model workers (not multiprocessing's tracker)."""
    workers = [
        round(peak_rss_mib(child), 1)
        for child, process in process_tree(pid).items()
        if child != pid and "resource_tracker" not in process["command"]
    ]
    return {"server_peak_rss_mib": round(peak_rss_mib(pid), 1), "worker_peak_rss_mib": workers}


def library_throughput(model: str, texts: Sequence[str], quantize: bool) -> Dict[str, Any]:
    """`nlp.pipe` over `texts` in this process, after a warm-up: chars/s."""
    nlp = load_pipeline(model, quantize)
    list(nlp.pipe(texts[:WARMUP_REQUESTS]))
    started = time.perf_counter()
    for _ in nlp.pipe(texts):
        pass
    seconds = time.perf_counter() - started
    return {"texts": len(texts), "seconds": round(seconds, 3), "chars_per_s": round(sum(map(len, texts)) / seconds, 1)}


def quantization_benchmark(model: str, corpus: str, log: Callable[[str], None] = print) -> Dict[str, Any]:
    """The pipeline's speed and entity scores on `corpus` (a DocBin), fp32 and int8, each in a fresh process."""
    results = {}
    for name, quantize in (("fp32", False), ("int8", True)):
        results[name] = in_fresh_process(score_pipeline, model, corpus, quantize)
        log(
            f"{name}: {results[name]['chars_per_s']} chars/s, entity F1 {results[name]['ents_f']:.2f}, "
            f"peak RSS {results[name]['peak_rss_mib']} MiB"
        )
    return {
        "model": model,
        "corpus": corpus,
        **results,
        "speedup": round(results["int8"]["chars_per_s"] / results["fp32"]["chars_per_s"], 3),
        "f1_change": round(results["int8"]["ents_f"] - results["fp32"]["ents_f"], 2),
    }


def score_pipeline(model: str, corpus: str, quantize: bool) -> Dict[str, Any]:
    """Tag the texts of `corpus` with `nlp.pipe`, timed, and score the entities against its gold."""
    nlp = load_pipeline(model, quantize)
    gold = list(DocBin().from_disk(corpus).get_docs(nlp.vocab))
    texts = [doc.text for doc in gold]
    list(nlp.pipe(texts[:WARMUP_REQUESTS]))
    started = time.perf_counter()
    predicted = list(nlp.pipe(texts))
    seconds = time.perf_counter() - started
    scores = Scorer(nlp).score([Example(doc, reference) for doc, reference in zip(predicted, gold)])
    return {
        "quantize": quantize,
        "texts": len(texts),
        "chars_per_s": round(sum(map(len, texts)) / seconds, 1),
        "ents_f": round(100 * scores["ents_f"], 2),
        "ents_p": round(100 * scores["ents_p"], 2),
        "ents_r": round(100 * scores["ents_r"], 2),
        "ents_per_type": {
            label: {key: round(100 * value, 2) for key, value in type_scores.items()}
            for label, type_scores in scores["ents_per_type"].items()
        },
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }
