"""The report's comparisons: train a few variants of one pipeline, score and plot them.

An experiment is a section of configs/experiments.cfg; each of its
subsections is a variant: a training config (optionally with an overlay on top,
lab/configs.py), the encoder to build for it, and config
overrides. Every variant is trained by `spacy train` in a process of
its own (as a user would run it, and so one run's memory never carries into
the next), then scored on the test set. Variants that are the same run
(same config, overrides, encoder, data and budget: e.g. the CRF baseline of
`compare-heads` and the 4-layer variant of `compare-layers`) are trained once
and shared through a run index.
"""

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import spacy
from thinc.api import Config
from transformers import AutoModel
from wasabi import MarkdownRenderer, msg

from ..formats import PathLike
from ..scoring import evaluate_on
from ..training_log import read_training_log
from .configs import config_with_overlays
from .encoders import EncoderShape, build_encoder
from .figures import training_curves
from .vectors import sha256

ENCODER_KINDS = ("vectors", "random", "pretrained")


@dataclass
class Variant:
    """One training run of an experiment."""

    name: str
    config: str
    # "vectors": initialised from the shape, embeddings from the character
    # vectors (what init-encoder builds for the default); "random": the same
    # without the vectors; "pretrained": the pretrained encoder (cut to `layers`).
    encoder: str = "vectors"
    layers: Optional[int] = None
    overrides: Dict[str, Any] = field(default_factory=dict)
    # A config file on top of `config` (lab/configs.py), e.g. another head or
    # encoder block, whose settings differ and cannot be overridden one by one.
    overlay: Optional[str] = None
    # Data of its own (compare-corpora); unset, the variant takes [experiment]'s.
    train: Optional[str] = None
    dev: Optional[str] = None
    test: Optional[str] = None

    def __post_init__(self):
        if self.encoder not in ENCODER_KINDS:
            raise ValueError(f"variant {self.name}: encoder must be one of {ENCODER_KINDS}, not {self.encoder!r}")


@dataclass
class Experiment:
    name: str
    title: str
    variants: List[Variant]


@dataclass
class ExperimentSettings:
    """`[experiment]` of configs/experiments.cfg: what every variant shares."""

    train: str
    dev: str
    test: str
    max_steps: int
    eval_frequency: int
    dev_limit: int
    gpu_id: int
    # What "pretrained" means: pretrain-encoder's output, a hub name or a local directory.
    pretrained: str
    shape: EncoderShape
    encoder_config: str
    encoder_vocab: str
    # The character table of "vectors" encoders.
    char_vectors: str


# Sections of the experiments config that are not experiments.
SHARED_SECTIONS = ("experiment", "variables")


def load_experiment(config: Dict[str, Any], name: str) -> Experiment:
    """The experiment `name` of a loaded experiments config."""
    if name not in config or name in SHARED_SECTIONS:
        known = sorted(key for key in config if key not in SHARED_SECTIONS)
        raise ValueError(f"No experiment {name!r}; the config has {', '.join(known)}")
    section = dict(config[name])
    title = section.pop("title")
    variants = [Variant(name=key, **value) for key, value in section.items()]
    return Experiment(name=name, title=title, variants=variants)


def load_settings(config: Dict[str, Any]) -> ExperimentSettings:
    section = dict(config["experiment"])
    section["shape"] = EncoderShape(**section["shape"])
    return ExperimentSettings(**section)


def run_experiment(
    experiment: Experiment, settings: ExperimentSettings, runs_dir: PathLike, output_dir: PathLike
) -> Dict[str, Any]:
    """Train and score every variant; write `<name>.json`, `<name>.md` and `<name>.png`."""
    runs_dir, output_dir = Path(runs_dir), Path(output_dir)
    started = time.perf_counter()
    if settings.gpu_id >= 0:
        spacy.require_gpu(settings.gpu_id)
    results = [_run_variant(variant, settings, runs_dir) for variant in experiment.variants]
    output_dir.mkdir(parents=True, exist_ok=True)
    curves = training_curves(
        {result["variant"]: read_training_log(result["log"]) for result in results},
        output_dir / f"{experiment.name}.png",
        title=experiment.title,
    )
    summary = {
        "experiment": experiment.name,
        "title": experiment.title,
        "settings": {key: str(value) if key == "shape" else value for key, value in asdict(settings).items()},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "variants": results,
        "figure": f"{experiment.name}.png",
        "curves": curves["runs"],
    }
    (output_dir / f"{experiment.name}.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (output_dir / f"{experiment.name}.md").write_text(metrics_table(summary) + "\n", encoding="utf-8")
    return summary


def metrics_table(summary: Dict[str, Any]) -> str:
    """A Markdown table of one experiment: test P/R/F, token accuracy, best dev F, time.

    Per-type F columns are shown where every variant has the same entity types.
    Variants trained on different corpora have different types, and their
    per-type scores stay in the JSON only.
    """
    label_sets = {tuple(sorted(result["test"]["ents_per_type"])) for result in summary["variants"]}
    labels = list(label_sets.pop()) if len(label_sets) == 1 else []
    header = [
        "variant",
        "test P",
        "test R",
        "test F",
        *[f"{label} F" for label in labels],
        "token acc.",
        "best dev F (step)",
        "train time",
    ]
    rows = []
    for result in summary["variants"]:
        test = result["test"]
        per_type = [_percent(test["ents_per_type"].get(label, {}).get("f")) for label in labels]
        rows.append(
            [
                result["variant"],
                _percent(test["ents_p"]),
                _percent(test["ents_r"]),
                _percent(test["ents_f"]),
                *per_type,
                _percent(test["ents_tag_acc"]),
                f"{_percent(result['best_dev_f'])} ({result['best_dev_step']})",
                f"{result['train_seconds'] / 60:.1f} min",
            ]
        )
    return MarkdownRenderer().table(rows, header, aligns=("l", *"r" * (len(header) - 1)))


def _percent(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _run_variant(variant: Variant, settings: ExperimentSettings, runs_dir: Path) -> Dict[str, Any]:
    encoder = _encoder_for(variant, settings, runs_dir / "encoders")
    train, dev, test = (getattr(variant, split) or getattr(settings, split) for split in ("train", "dev", "test"))
    overrides = {
        "paths.train": train,
        "paths.dev": dev,
        "paths.encoder": str(encoder),
        "training.max_steps": settings.max_steps,
        "training.eval_frequency": settings.eval_frequency,
        "corpora.dev.limit": settings.dev_limit,
        **variant.overrides,
    }
    config = config_with_overlays(variant.config, [variant.overlay] if variant.overlay else [])
    name = "+".join(Path(path).stem for path in (variant.config, variant.overlay) if path)
    key = _run_key(config, name, overrides, [train, dev, encoder])
    run_dir = runs_dir / key
    if (run_dir / "result.json").exists():
        msg.info(f"{variant.name}: same run as before, {run_dir}")
        result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
        return {**result, "variant": variant.name}
    config_path = run_dir / "config.cfg"
    run_dir.mkdir(parents=True, exist_ok=True)
    config.to_disk(config_path, interpolate=False)
    log_path = run_dir / "log.jsonl"
    command = [
        sys.executable,
        "-m",
        "spacy",
        "train",
        str(config_path),
        "--output",
        str(run_dir),
        "--gpu-id",
        str(settings.gpu_id),
    ]
    command += [f"--paths.training_log={log_path}"]
    command += [
        f"--{name}={json.dumps(value) if not isinstance(value, str) else value}" for name, value in overrides.items()
    ]
    msg.divider(f"{variant.name}: {' '.join(command[1:])}")
    subprocess.run(command, check=True)
    log = read_training_log(log_path)
    best = max(log, key=lambda record: record["score"])
    nlp = spacy.load(run_dir / "model-best")
    result = {
        "variant": variant.name,
        "config": variant.config,
        "overlay": variant.overlay,
        "encoder": variant.encoder,
        "layers": variant.layers,
        "overrides": variant.overrides,
        "run": str(run_dir),
        "log": str(log_path),
        "encoder_parameters": _parameter_count(encoder),
        "best_dev_f": best["scores"]["ents_f"],
        "best_dev_step": best["step"],
        "train_seconds": log[-1]["seconds"],
        # The report tells a comparison on other training data from one on its own run's.
        "train_sha256": sha256(Path(train)),
        "test_data": test,
        "test": evaluate_on(nlp, test),
    }
    (run_dir / "result.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def _encoder_for(variant: Variant, settings: ExperimentSettings, encoders_dir: Path) -> Path:
    """Build (once) the encoder a variant asks for, and return its directory."""
    layers = variant.layers or settings.shape.layers
    if variant.encoder == "pretrained":
        source = settings.pretrained.replace("/", "_")
        path = encoders_dir / f"pretrained-{source}-{variant.layers or 'all'}L"
        build = dict(shape=EncoderShape(layers=variant.layers), from_pretrained=settings.pretrained)
    else:
        shape = EncoderShape(
            layers=layers,
            hidden=settings.shape.hidden,
            heads=settings.shape.heads,
            intermediate=settings.shape.intermediate,
        )
        path = encoders_dir / f"{variant.encoder}-{layers}L-{shape.hidden}H"
        build = dict(shape=shape)
        if variant.encoder == "vectors":
            build["char_vectors"] = settings.char_vectors
    build.update(config_path=settings.encoder_config, vocab_path=settings.encoder_vocab)
    if not (path / "config.json").exists():
        build_encoder(path, **build)
    return path


def _run_key(config: Config, name: str, overrides: Dict[str, Any], inputs: List[PathLike]) -> str:
    """A name for a run that changes whenever anything that shapes the run changes.

    The key hashes the config as overridden, not the overrides, so that a
    variant which sets a value to its default is the same run as the baseline.
    """
    resolved = Config().from_str(config.to_str(), overrides=overrides, interpolate=False)
    digest = hashlib.sha1(resolved.to_str().encode())
    for path in map(Path, inputs):
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                digest.update(f"{file.name}:{file.stat().st_size}:{file.stat().st_mtime_ns}".encode())
    return f"{name}-{digest.hexdigest()[:10]}"


def _parameter_count(encoder: Path) -> int:
    return sum(parameter.numel() for parameter in AutoModel.from_pretrained(encoder).parameters())
