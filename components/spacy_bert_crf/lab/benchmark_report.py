"""The benchmark's report: model FLOPs and MFU, the headline figures and the
targets, and the Markdown tables scripts/benchmark.py writes into
docs/BENCHMARKS.md, from the results of `benchmark_systems`.
"""

import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
from wasabi import MarkdownRenderer

from .benchmark_systems import BenchmarkSettings

# Dense peak FLOP/s of the GPUs this project is benchmarked on, for the MFU estimate:
# (fp32 without TF32, fp16/bf16 tensor cores), from NVIDIA's H100 SXM datasheet (H200: same compute).
PEAK_FLOPS = {"H100": (67e12, 989.4e12), "H200": (67e12, 989.4e12)}


def encoder_flops_per_token(config, n_tokens: int) -> float:
    """Model FLOPs of one forward pass per token of a BERT encoder, for a sequence of `n_tokens`.

    2 FLOPs per multiply-add of the layers' weight matrices (attention Q, K, V
    and output: 4·d²; feed-forward: 2·d·d_ff), plus the attention scores and
    their weighted sum (2·n·d each), per layer. Embeddings are lookups, not counted.
    """
    d, d_ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return layers * (2 * (4 * d * d + 2 * d * d_ff) + 4 * n_tokens * d)


def model_flops(config, texts: Sequence[str], training: bool = False) -> float:
    """FLOPs of the encoder over `texts` (one wordpiece per character, plus [CLS] and [SEP]);
    training counts 3 forward passes' worth (forward, and twice that backward)."""
    forward = sum((len(text) + 2) * encoder_flops_per_token(config, len(text) + 2) for text in texts)
    return 3 * forward if training else forward


def peak_flops(device_name: str, mixed_precision: bool, override_tflops: Optional[float] = None) -> Optional[float]:
    """The device's dense peak FLOP/s for the MFU estimate: given, or known for the GPU; else None."""
    if override_tflops:
        return override_tflops * 1e12
    for name, (fp32, half) in PEAK_FLOPS.items():
        if name in device_name:
            return half if mixed_precision else fp32
    return None


def device_name(gpu_id: int) -> str:
    if gpu_id >= 0:
        return torch.cuda.get_device_name(gpu_id)
    with open("/proc/cpuinfo", encoding="utf-8") as file:
        model = next((line.split(":", 1)[1].strip() for line in file if line.startswith("model name")), "CPU")
    return f"{model} ({torch.get_num_threads()} torch threads)"


def summarize(
    results: Dict[str, Dict[str, Any]], settings: BenchmarkSettings, texts: Sequence[str], encoder_config
) -> Dict[str, Any]:
    """The headline figures, the targets and the MFU estimate, over all systems' results."""
    pipeline, loop = results["pipeline"], results["torch_loop"]
    decoders = results["decoders"]
    name = device_name(settings.gpu_id)
    peak = peak_flops(name, settings.mixed_precision)
    flops = model_flops(encoder_config, texts)
    chars = sum(map(len, texts))
    summary = {
        "device": name,
        "pipeline_chars_per_s": pipeline["chars_per_s"],
        "pipeline_without_probabilities_chars_per_s": results["pipeline_without_probabilities"]["chars_per_s"],
        "torch_loop_chars_per_s": loop["chars_per_s"],
        "crf_decode_share": pipeline["crf_share"],
        "entity_probability_share": pipeline["probability_share"],
        "our_decode_s": decoders["our_decode_s"],
        "pytorch_crf_decode_s": decoders["pytorch_crf_decode_s"],
        "spacy_ner_chars_per_s": results["spacy_ner"]["chars_per_s"],
        "hf_pipeline_chars_per_s": results["hf_pipeline"]["chars_per_s"],
        "pipeline_train_chars_per_s": pipeline["train_chars_per_s"],
        "torch_loop_train_chars_per_s": loop["train_chars_per_s"],
        "model_flops_per_char": round(flops / chars),
        "inference_tflops_per_s": round(pipeline["chars_per_s"] * flops / chars / 1e12, 4),
        "train_tflops_per_s": round(pipeline["train_chars_per_s"] * 3 * flops / chars / 1e12, 4),
    }
    summary["inference_mfu"] = round(summary["inference_tflops_per_s"] * 1e12 / peak, 4) if peak else None
    summary["train_mfu"] = round(summary["train_tflops_per_s"] * 1e12 / peak, 4) if peak else None
    summary["targets"] = {
        "pipeline_at_least_0.95_torch_loop": pipeline["chars_per_s"] >= 0.95 * loop["chars_per_s"],
        "crf_decode_share_at_most_3_percent": pipeline["crf_share"] <= 0.03,
        "our_decode_at_most_half_pytorch_crf": decoders["our_decode_s"] <= 0.5 * decoders["pytorch_crf_decode_s"],
        "pipeline_at_least_spacy_ner": pipeline["chars_per_s"] >= results["spacy_ner"]["chars_per_s"],
    }
    return summary


SYSTEM_TITLES = {
    "pipeline": "(a) our pipeline, CRF head, `nlp.pipe`",
    "pipeline_without_probabilities": "(a′) the same, `spans_key` null: no entity probabilities",
    "torch_loop": "(b) plain PyTorch loop, our decode",
    "torch_loop_pytorch_crf": "(c) plain PyTorch loop, pytorch-crf's decode",
    "softmax_pipeline": "(d) our pipeline, softmax head",
    "spacy_ner": "(e) spaCy's transition-based `ner`, same encoder",
    "hf_pipeline": "(f) Hugging Face `token-classification` pipeline",
}


def benchmark_tables(report: Dict[str, Any]) -> str:
    """Markdown: the systems, the decoders, and the targets."""
    results, summary = report["systems"], report["summary"]
    markdown = MarkdownRenderer()
    system_rows = []
    for name, title in SYSTEM_TITLES.items():
        result = results[name]
        shares = [f"{100 * result[key]:.2f}%" if key in result else "–" for key in ("crf_share", "probability_share")]
        train = f"{result['train_chars_per_s']:,.0f}" if "train_chars_per_s" in result else "–"
        system_rows.append([title, f"{result['chars_per_s']:,.0f}", *shares, train, f"{result['peak_rss_mib']:,.0f}"])
    system_header = [
        "system",
        "inference chars/s",
        "decode share",
        "entity probabilities share",
        "training chars/s",
        "peak RSS (MiB; training included where timed)",
    ]
    decoders = results["decoders"]
    batch_size, n_steps, n_tags = decoders["shape"]
    decoder_rows = [
        ["ours, BIO-constrained", f"{decoders['our_decode_s']:.5f}"],
        [
            f"ours, unconstrained (same paths as pytorch-crf: {decoders['paths_equal']})",
            f"{decoders['our_unconstrained_decode_s']:.5f}",
        ],
        ["pytorch-crf `decode`", f"{decoders['pytorch_crf_decode_s']:.5f}"],
    ]
    pipeline, torch_loop = results["pipeline"]["chars_per_s"], results["torch_loop"]["chars_per_s"]
    without_probabilities = results["pipeline_without_probabilities"]["chars_per_s"]
    targets = summary["targets"]
    target_rows = [
        [
            "(a) ≥ 0.95 × (b)",
            f"(a)/(b) = {pipeline / torch_loop:.3f}; without probabilities, (a′)/(b) = {without_probabilities / torch_loop:.3f}",
            _yes(targets["pipeline_at_least_0.95_torch_loop"]),
        ],
        [
            "CRF decoding ≤ 3% of (a)'s inference time",
            f"{100 * summary['crf_decode_share']:.2f}% "
            f"(entity probabilities: {100 * summary['entity_probability_share']:.2f}% more)",
            _yes(targets["crf_decode_share_at_most_3_percent"]),
        ],
        [
            "our decode ≤ 0.5 × pytorch-crf's",
            f"{decoders['our_to_pytorch_crf']:.3f} ×",
            _yes(targets["our_decode_at_most_half_pytorch_crf"]),
        ],
        [
            "(a) ≥ (e)",
            f"(a)/(e) = {pipeline / results['spacy_ner']['chars_per_s']:.3f}",
            _yes(targets["pipeline_at_least_spacy_ner"]),
        ],
    ]
    mfu = (
        f"; MFU {100 * summary['inference_mfu']:.2f}% inference, {100 * summary['train_mfu']:.2f}% training."
        if summary["inference_mfu"] is not None
        else "; no MFU (no known peak for this device)."
    )
    settings = report["settings"]
    return "\n".join(
        [
            f"Device: {summary['device']}. Encoder: {report['encoder_shape']}; {report['sentences']} sentences, "
            f"{report['chars']} characters, batch size {settings['batch_size']}, "
            f"inference: the median of {settings['inference_passes']} passes of at least "
            f"{settings['min_pass_seconds']:g} s each, "
            f"mixed precision {'on' if settings['mixed_precision'] else 'off'}. Command: `{report['command']}`.",
            "",
            markdown.table(system_rows, system_header, aligns=("l", "r", "r", "r", "r", "r")),
            "",
            f"Decoding alone, {batch_size} × {n_steps} steps × {n_tags} tags, timed as inference:",
            "",
            markdown.table(decoder_rows, ["decoder", "seconds"], aligns=("l", "r")),
            "",
            f"Model FLOPs: {summary['model_flops_per_char']:,} per character forward (one wordpiece per character); "
            f"inference {summary['inference_tflops_per_s']} TFLOP/s, training {summary['train_tflops_per_s']} TFLOP/s"
            + mfu,
            "",
            markdown.table(target_rows, ["target", "measured", "met"]),
        ]
    )


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def replace_section(markdown: str, section: str, marker: str = "benchmark") -> str:
    """`markdown` with the text between `<!-- {marker}:start -->` and `<!-- {marker}:end -->`
    replaced by `section` (appended with the markers if they are missing)."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    block = f"{start}\n{section}\n{end}"
    if start in markdown and end in markdown:
        head, rest = markdown.split(start, 1)
        return head + block + rest.split(end, 1)[1]
    return markdown.rstrip("\n") + "\n\n" + block + "\n"


def write_json_report(result: Dict[str, Any], output: Optional[Path]) -> str:
    """A benchmark's result as indented JSON, written to `output` too when given."""
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
    return text
