"""Benchmark the pipe against a plain PyTorch loop, pytorch-crf, spaCy's `ner` and Hugging Face.

Every system tags the same test sentences with the same encoder weights and
batch size, each in a process of its own (spacy_bert_crf.lab.benchmark_systems);
the tables are spacy_bert_crf.lab.benchmark_report's.
"""

import json
import shlex
import sys
import tempfile
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Optional

import spacy
import typer
from transformers import AutoConfig
from wasabi import msg

from spacy_bert_crf.lab.benchmark_report import benchmark_tables, replace_section, summarize
from spacy_bert_crf.lab.benchmark_systems import SYSTEMS, BenchmarkSettings, benchmark_docs, run_benchmark, set_up
from spacy_bert_crf.lab.encoders import EncoderShape, build_encoder

ROOT = Path(__file__).resolve().parent.parent
# --quick: a tiny encoder built on the spot and a slice of the sentences.
QUICK_SHAPE = EncoderShape(layers=2, hidden=128, heads=2, intermediate=256)


def main(
    encoder: Optional[Path] = typer.Option(
        None, "--encoder", help="BERT directory (default: encoders/default; with --quick a tiny one built here)"
    ),
    data: Path = typer.Option(
        ROOT / "assets/pd2014/test.txt.gz", "--data", help="Test sentences, in any format convert.py reads"
    ),
    quick: bool = typer.Option(
        False, "--quick/--full", help="--quick: tiny encoder, 128 sentences, 3 passes, few training steps"
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object (figures, targets, every system) and nothing else to stdout"
    ),
    output: Optional[Path] = typer.Option(None, "--output", help="Also write the JSON report here"),
    markdown: Optional[Path] = typer.Option(
        None, "--markdown", help="Write the tables into this file, between <!-- benchmark:start/end --> markers"
    ),
    systems: str = typer.Option(",".join(SYSTEMS), "--systems", help="Comma-separated subset of the systems"),
    sentences: int = typer.Option(0, "--sentences", help="Sentences to tag (0: all that fit one window)"),
    batch_size: int = typer.Option(64, "--batch-size"),
    train_steps: int = typer.Option(10, "--train-steps", help="Timed training steps of (a) and (b)"),
    ner_train_steps: int = typer.Option(
        20, "--ner-train-steps", help="Training steps of spaCy's ner before it is timed"
    ),
    passes: int = typer.Option(5, "--passes", help="Timed inference passes; the median counts"),
    min_pass_seconds: float = typer.Option(
        2.0, "--min-pass-seconds", help="Each pass repeats the work until it has lasted this long"
    ),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to use, -1 for the CPU"),
    mixed_precision: bool = typer.Option(
        False, "--mixed-precision/--fp32", help="fp16 autocast for the encoder (GPU only)"
    ),
):
    """Measure inference and training chars/s, the CRF's share of the time,
    the decoders at 64 × 128 × 9, and each system's peak RSS."""
    if mixed_precision and gpu_id < 0:
        raise typer.BadParameter("mixed precision needs a GPU (--gpu-id)")
    chosen = [name for name in systems.split(",") if name]
    unknown = set(chosen) - set(SYSTEMS)
    if unknown:
        raise typer.BadParameter(f"unknown systems {sorted(unknown)}: choose from {', '.join(SYSTEMS)}")
    if quick:
        sentences, passes, train_steps, ner_train_steps = sentences or 128, 3, 3, 3
    with tempfile.TemporaryDirectory() as tmp:
        if encoder is None:
            encoder = build_quick_encoder(Path(tmp) / "encoder") if quick else ROOT / "encoders/default"
        settings = BenchmarkSettings(
            encoder=str(encoder),
            batch_size=batch_size,
            inference_passes=passes,
            min_pass_seconds=min_pass_seconds,
            train_steps=train_steps,
            ner_train_steps=ner_train_steps,
            gpu_id=gpu_id,
            mixed_precision=mixed_precision,
        )
        gold = benchmark_docs(data, spacy.blank("zh").vocab, limit=sentences)
        texts = [doc.text for doc in gold]
        # With --json, stdout holds the JSON object alone: progress goes to stderr.
        info = partial(print, file=sys.stderr) if as_json else msg.info
        info(f"{len(texts)} sentences, {sum(map(len, texts))} characters from {data}; encoder {encoder}")
        workdir = set_up(Path(tmp) / "work", settings, gold)
        results = run_benchmark(workdir, chosen, on_result=lambda name, result: info(f"{name}: {json.dumps(result)}"))
        config = AutoConfig.from_pretrained(encoder)
    report = {
        "command": " ".join(["python", "scripts/benchmark.py", *map(shlex.quote, sys.argv[1:])]),
        "encoder": str(encoder),
        "encoder_shape": f"{config.num_hidden_layers} layers, hidden {config.hidden_size}, {config.num_attention_heads} heads, intermediate {config.intermediate_size}",
        "sentences": len(texts),
        "chars": sum(map(len, texts)),
        "settings": asdict(settings),
        "systems": results,
    }
    if set(SYSTEMS) <= set(results):
        report["summary"] = summarize(results, settings, texts, config)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if markdown is not None and "summary" in report:
        text = markdown.read_text(encoding="utf-8") if markdown.exists() else ""
        markdown.write_text(replace_section(text, benchmark_tables(report)), encoding="utf-8")
    if as_json:
        print(json.dumps({**report.get("summary", {}), **report}, ensure_ascii=False))
    elif "summary" in report:
        print(benchmark_tables(report))


def build_quick_encoder(path: Path) -> Path:
    assets = ROOT / "assets/bert-base-chinese"
    return build_encoder(path, config_path=assets / "config.json", vocab_path=assets / "vocab.txt", shape=QUICK_SHAPE)


if __name__ == "__main__":
    typer.run(main)
