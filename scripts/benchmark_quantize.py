"""The pipe's int8 encoder (quantize) against fp32: chars/s and entity F1 on a DocBin
(spacy_bert_crf.lab.serving_benchmark)."""

from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from spacy_bert_crf.lab.benchmark_report import write_json_report
from spacy_bert_crf.lab.serving_benchmark import quantization_benchmark


def main(
    model: str = typer.Argument(..., help="Pipeline package name or directory"),
    corpus: Path = typer.Argument(..., help="Gold DocBin, e.g. corpus/test.spacy"),
    output: Optional[Path] = typer.Option(None, "--output", help="Write the JSON here too"),
):
    """Speed, P/R/F1 and per-type scores of MODEL with and without quantize, as JSON."""
    if not corpus.is_file():
        msg.fail(f"No such DocBin: {corpus}", exits=1)
    result = quantization_benchmark(model, str(corpus), log=msg.info)
    print(write_json_report(result, output))


if __name__ == "__main__":
    typer.run(main)
