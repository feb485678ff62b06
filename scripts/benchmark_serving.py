"""Load-test the server (micro-batching on and off) and compare it with nlp.pipe in one process
(spacy_bert_crf.lab.serving_benchmark)."""

from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from spacy_bert_crf.formats import read_text
from spacy_bert_crf.lab.benchmark_report import write_json_report
from spacy_bert_crf.lab.serving import ServeSettings
from spacy_bert_crf.lab.serving_benchmark import serving_benchmark


def main(
    model: str = typer.Argument(..., help="Pipeline package name or directory"),
    texts: Path = typer.Argument(..., help="Sentences, one a line (plain or space-separated characters, .gz or not)"),
    requests: int = typer.Option(2000, "--requests", help="Requests per configuration"),
    concurrency: List[int] = typer.Option([1, 8, 32], "--concurrency", help="Clients at once; repeat the option"),
    max_batch_texts: int = typer.Option(ServeSettings.max_batch_texts, "--max-batch-texts"),
    max_wait_ms: float = typer.Option(ServeSettings.max_wait_ms, "--max-wait-ms"),
    workers: int = typer.Option(ServeSettings.workers, "--workers", help="Server processes with the model"),
    quantize: bool = typer.Option(False, "--quantize", help="Serve the int8 encoder"),
    output: Optional[Path] = typer.Option(None, "--output", help="Write the JSON here too"),
):
    """Throughput, latency percentiles, errors and the server's peak RSS, as JSON."""
    if not texts.is_file():
        msg.fail(f"No such text file: {texts}", exits=1)
    sentences = ["".join(tokens) for tokens in read_text(texts)[0] if tokens]
    settings = ServeSettings(max_batch_texts=max_batch_texts, max_wait_ms=max_wait_ms, workers=workers)
    result = serving_benchmark(model, sentences, requests, concurrency, settings, quantize, log=msg.info)
    print(write_json_report(result, output))


if __name__ == "__main__":
    typer.run(main)
