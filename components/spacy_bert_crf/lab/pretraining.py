"""Masked-LM pretraining of the character encoder on raw text: resumable, time-budgeted.

The encoder reads text as the pipe does, one vocabulary id per character
(`CharVocab`), so what it learns here is what it sees in NER. Starting from
`init-encoder`'s directory (embeddings from the character vectors), this is
what makes the offline "pretrained" encoder; given any BERT directory it
continues that one's training on the user's text. The output is a Hugging Face
directory (BertForMaskedLM weights, config, tokenizer) that the pipe's
`CharBertEncoder` and `init-encoder` load; the MLM head is kept.

Where the compute goes: only the masked ~15% of positions have a label, so
the 21,128-way vocabulary projection runs on those positions only
(`masked_lm_loss`). Hugging Face's `BertForMaskedLM.forward` projects every
position (`full_vocabulary_loss`); for a small encoder that projection is most
of a step. `pretraining_speed` measures the two side by side.

Runs add up. A run spends its own budget (steps or minutes) and leaves a
checkpoint in the output directory: weights, optimizer, random state and its
position in the data. The next run on that directory continues from there
exactly, as if it had never stopped. The learning rate follows the global step
(warm-up, then inverse square root), not the budget, so how the steps are
split across runs makes no difference.
"""

import hashlib
import itertools
import json
import math
import os
import shutil
import time
from array import array
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy
import torch
from tqdm import tqdm
from transformers import AutoTokenizer, BertForMaskedLM

from ..char_encoder import encoder_vocab
from ..char_inputs import CharVocab
from ..formats import PathLike, open_text, split_tokens

CHECKPOINT = "checkpoint.pt"
# The settings a checkpoint's data position and masks depend on: a run that
# changes one of them cannot continue the previous one.
RESUME_KEYS = ("batch_size", "sequence_length", "mask_probability", "seed")


@dataclass
class PretrainingSettings:
    """The knobs of `[pretraining]` in configs/pretrain_encoder.cfg."""

    batch_size: int = 64
    sequence_length: int = 128
    learn_rate: float = 5e-4
    warmup_steps: int = 500
    weight_decay: float = 0.01
    mask_probability: float = 0.15
    dropout: float = 0.0
    max_steps: int = 0
    max_minutes: float = 0.0
    checkpoint_minutes: float = 10.0
    log_every: int = 50
    seed: int = 0

    def __post_init__(self):
        if self.max_steps <= 0 and self.max_minutes <= 0:
            raise ValueError("pretraining needs a budget: max_steps or max_minutes above 0")

    def spent(self, steps: int, seconds: float) -> bool:
        """Whether this run's budget is used up: whichever of steps and time runs out first."""
        return (self.max_steps > 0 and steps >= self.max_steps) or (
            self.max_minutes > 0 and seconds >= 60 * self.max_minutes
        )

    def learn_rate_at(self, step: int) -> float:
        """The learning rate of global step `step` (from 1): linear warm-up, then 1/sqrt decay."""
        warmup = max(1, self.warmup_steps)
        return self.learn_rate * min(step / warmup, math.sqrt(warmup / step))


def plain_line(line: str) -> str:
    """A line of text as prose: the two-file format's `中 国` becomes `中国`.

    The line end is dropped first: lines read from a file keep theirs, and the
    last character with its newline would otherwise be a two-character token.
    """
    tokens = split_tokens(line.rstrip("\r\n"))
    if len(tokens) > 1 and all(len(token) == 1 for token in tokens):
        return "".join(tokens)
    return line.strip()


def encode_texts(paths: Sequence[PathLike], vocab: CharVocab) -> numpy.ndarray:
    """All non-empty lines of the files as one stream of character ids, `[SEP]` after each line."""
    ids = array("l")
    for path in tqdm(paths, desc="Reading the text", unit="file"):
        with open_text(path) as lines:
            for line in map(plain_line, lines):
                if line:
                    ids.extend(map(vocab.token_id, line))
                    ids.append(vocab.sep_id)
    dtype = "uint16" if len(vocab) <= 2**16 else "int32"
    return numpy.frombuffer(ids, dtype="int64").astype(dtype)


def cached_corpus(paths: Sequence[PathLike], vocab: CharVocab, cache_dir: Path) -> numpy.ndarray:
    """`encode_texts`, kept in `cache_dir` for the next run on the same files and vocabulary."""
    key = corpus_key(paths, vocab)
    ids_path, key_path = cache_dir / "corpus.npy", cache_dir / "corpus.key"
    if ids_path.exists() and key_path.exists() and key_path.read_text(encoding="utf-8") == key:
        return numpy.load(ids_path)
    ids = encode_texts(paths, vocab)
    numpy.save(ids_path, ids)
    key_path.write_text(key, encoding="utf-8")
    return ids


def corpus_key(paths: Sequence[PathLike], vocab: CharVocab) -> str:
    """A digest of the files (name, size, modification time) and the vocabulary."""
    files = [(str(path), os.stat(path).st_size, os.stat(path).st_mtime_ns) for path in paths]
    return hashlib.sha256(json.dumps([files, vocab.tokens], ensure_ascii=False).encode("utf-8")).hexdigest()


class WindowStream:
    """The corpus cut into windows of `[CLS]` + body + `[SEP]`, read in a fresh seeded order each epoch.

    Window k of the stream is window `order(k // n)[k % n]`: any position in
    the stream is found again from its index alone, which is what a resumed
    run needs. Windows are never padded, so a batch spends no compute on
    padding and needs no attention mask.
    """

    def __init__(self, corpus: numpy.ndarray, vocab: CharVocab, sequence_length: int, seed: int):
        self.body = sequence_length - 2
        self.windows = corpus[: len(corpus) // self.body * self.body].reshape(-1, self.body)
        self.cls_id, self.sep_id = vocab.cls_id, vocab.sep_id
        self.seed = seed
        self._epoch, self._order = -1, None

    def __len__(self) -> int:
        return len(self.windows)

    def order(self, epoch: int) -> numpy.ndarray:
        if epoch != self._epoch:
            self._epoch, self._order = epoch, numpy.random.default_rng([self.seed, epoch]).permutation(len(self))
        return self._order

    def batch(self, start: int, size: int) -> torch.Tensor:
        """Windows `start` … `start + size - 1` of the stream, as a (size, sequence_length) id tensor."""
        rows = [self.order(k // len(self))[k % len(self)] for k in range(start, start + size)]
        body = torch.from_numpy(self.windows[rows].astype("int64"))
        ends = torch.full((size, 1), self.cls_id), torch.full((size, 1), self.sep_id)
        return torch.cat([ends[0], body, ends[1]], dim=1)


def mask_batch(
    ids: torch.Tensor, vocab: CharVocab, probability: float, generator: torch.Generator
) -> Tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: (inputs, labels), labels -100 where nothing is predicted.

    Of the chosen positions 80% become `[MASK]`, 10% another character and 10%
    stay. The other character is drawn from the batch itself, so it follows
    the text's character frequencies rather than the vocabulary's thousands of
    wordpieces that per-character input never produces.
    """
    if "[MASK]" not in vocab.index:
        raise ValueError("the encoder's vocabulary has no [MASK] entry")
    special = torch.tensor([vocab.cls_id, vocab.sep_id, vocab.pad_id])
    maskable = ~torch.isin(ids, special)
    chosen = (torch.rand(ids.shape, generator=generator) < probability) & maskable
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    draw = torch.rand(ids.shape, generator=generator)
    pool = ids[maskable]
    others = pool[torch.randint(len(pool), ids.shape, generator=generator)]
    inputs = torch.where(chosen & (draw < 0.8), torch.full_like(ids, vocab.index["[MASK]"]), ids)
    inputs = torch.where(chosen & (draw >= 0.8) & (draw < 0.9), others, inputs)
    return inputs, labels


def masked_lm_loss(
    model: BertForMaskedLM, input_ids: torch.Tensor, labels: torch.Tensor, output_ids: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """The MLM loss, with the vocabulary projection run on the masked positions only.

    output_ids: the sorted ids that can be labels (those the corpus holds).
    The softmax then runs over those alone: per-character input never
    produces bert-base-chinese's ~8,000 `##` pieces and English words, and a
    corpus holds fewer characters still, so this halves the projection again.
    The loss is the exact cross-entropy over that output vocabulary.
    """
    hidden = model.bert(input_ids=input_ids).last_hidden_state
    masked = labels != -100
    targets = labels[masked]
    head = model.cls.predictions
    transformed = head.transform(hidden[masked])
    if output_ids is None:
        logits = head.decoder(transformed)
    else:
        logits = transformed @ head.decoder.weight[output_ids].T + head.decoder.bias[output_ids]
        targets = torch.searchsorted(output_ids, targets)
    return torch.nn.functional.cross_entropy(logits.float(), targets)


def full_vocabulary_loss(
    model: BertForMaskedLM, input_ids: torch.Tensor, labels: torch.Tensor, output_ids: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """The loss as Hugging Face computes it, projecting every position onto the whole
    vocabulary (`output_ids` is ignored): the baseline of `pretraining_speed`."""
    return model(input_ids=input_ids, labels=labels).loss


LOSSES: Dict[str, Callable] = {"masked": masked_lm_loss, "full": full_vocabulary_loss}


class Pretrainer:
    """One model, its optimizer and its place in the data; `step` trains on the next batch."""

    def __init__(
        self,
        model: BertForMaskedLM,
        vocab: CharVocab,
        stream: WindowStream,
        settings: PretrainingSettings,
        device: str = "cpu",
        mixed_precision: bool = False,
        loss: str = "masked",
    ):
        self.model = model.to(device).train()
        # A short budget learns more without dropout (Geiping & Goldstein 2022, "Cramming"),
        # and on a CPU dropout's random masks cost about a tenth of a step. The saved config
        # keeps the encoder's own dropout for fine-tuning.
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = settings.dropout
        self.vocab, self.stream, self.settings = vocab, stream, settings
        self.device, self.mixed_precision = device, mixed_precision
        self.loss_function = LOSSES[loss]
        self.output_ids = torch.from_numpy(numpy.unique(stream.windows).astype("int64")).to(device)
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=settings.learn_rate, weight_decay=settings.weight_decay, fused=True
        )
        self.steps, self.windows, self.tokens = 0, 0, 0

    def step(self) -> float:
        """Train on the next batch; return its loss."""
        settings = self.settings
        self.steps += 1
        for group in self.optimizer.param_groups:
            group["lr"] = settings.learn_rate_at(self.steps)
        ids = self.stream.batch(self.windows, settings.batch_size)
        # Seeded by the global step, so that a resumed run draws the masks an uninterrupted one would.
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + self.steps)
        inputs, labels = mask_batch(ids, self.vocab, settings.mask_probability, generator)
        device_type = torch.device(self.device).type
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            loss = self.loss_function(self.model, inputs.to(self.device), labels.to(self.device), self.output_ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.windows += settings.batch_size
        self.tokens += ids.numel()
        return loss.item()

    def state(self, encoder: str, seconds: float) -> Dict:
        return {
            "encoder": encoder,
            "settings": {key: getattr(self.settings, key) for key in RESUME_KEYS},
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "steps": self.steps,
            "windows": self.windows,
            "tokens": self.tokens,
            "seconds": seconds,
        }

    def restore(self, state: Dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.steps, self.windows, self.tokens = state["steps"], state["windows"], state["tokens"]


def save_checkpoint(state: Dict, path: Path) -> None:
    """Write atomically: a run killed while saving leaves the previous checkpoint whole."""
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path, encoder: str, settings: PretrainingSettings) -> Dict:
    """The checkpoint at `path`, after checking that this run can continue it."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["encoder"] != encoder:
        raise ValueError(
            f"{path} continues the pretraining of {state['encoder']}, not {encoder}: "
            "pass that encoder, or --restart to start afresh"
        )
    changed = [key for key in RESUME_KEYS if state["settings"][key] != getattr(settings, key)]
    if changed:
        details = ", ".join(f"{key} {state['settings'][key]} → {getattr(settings, key)}" for key in changed)
        raise ValueError(f"{path} was made with other settings ({details}): keep them, or --restart")
    return state


def pretrain_encoder(
    encoder: str,
    text_paths: Sequence[PathLike],
    output_dir: PathLike,
    settings: PretrainingSettings,
    device: str = "cpu",
    mixed_precision: bool = False,
    restart: bool = False,
) -> Dict:
    """Train `encoder` (a hub name or a directory) with masked-LM on the text files.

    Continues the checkpoint in `output_dir` if there is one (unless
    `restart`), spends this run's budget, and leaves the checkpoint, the
    model and tokenizer, a JSONL log of the loss and a JSON summary of all
    runs so far in `output_dir`; returns the summary.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = output_dir / CHECKPOINT
    state = None if restart or not checkpoint_path.exists() else load_checkpoint(checkpoint_path, encoder, settings)
    vocab = encoder_vocab(encoder)
    stream = WindowStream(cached_corpus(text_paths, vocab, output_dir), vocab, settings.sequence_length, settings.seed)
    if len(stream) < settings.batch_size:
        raise ValueError(
            f"The text files hold less than one batch ({settings.batch_size} windows of "
            f"{settings.sequence_length} tokens): {', '.join(map(str, text_paths))}"
        )
    torch.manual_seed(settings.seed)
    trainer = Pretrainer(BertForMaskedLM.from_pretrained(encoder), vocab, stream, settings, device, mixed_precision)
    previous_seconds = 0.0
    if state is not None:
        trainer.restore(state)
        previous_seconds = state["seconds"]
    summary_path = output_dir / "pretraining.json"
    runs = (
        json.loads(summary_path.read_text(encoding="utf-8"))["runs"]
        if state is not None and summary_path.exists()
        else []
    )
    first_step, first_tokens = trainer.steps, trainer.tokens
    log = (output_dir / "pretraining_log.jsonl").open("a" if state is not None else "w", encoding="utf-8")
    started = last_checkpoint = time.perf_counter()
    recent_losses: List[float] = []
    total = settings.max_steps or None
    with tqdm(total=total, desc="MLM pretraining", unit="step") as progress_bar:
        while not settings.spent(trainer.steps - first_step, time.perf_counter() - started):
            recent_losses.append(trainer.step())
            progress_bar.update(1)
            if trainer.steps % settings.log_every == 0:
                mean_loss = sum(recent_losses) / len(recent_losses)
                recent_losses = []
                progress_bar.set_postfix(loss=f"{mean_loss:.3f}")
                seconds = previous_seconds + time.perf_counter() - started
                record = {
                    "step": trainer.steps,
                    "seconds": round(seconds, 3),
                    "tokens": trainer.tokens,
                    "loss": mean_loss,
                }
                log.write(json.dumps(record) + "\n")
                log.flush()
            if time.perf_counter() - last_checkpoint >= 60 * settings.checkpoint_minutes:
                save_checkpoint(
                    trainer.state(encoder, previous_seconds + time.perf_counter() - started), checkpoint_path
                )
                last_checkpoint = time.perf_counter()
    log.close()
    run_seconds = time.perf_counter() - started
    save_checkpoint(trainer.state(encoder, previous_seconds + run_seconds), checkpoint_path)
    trainer.model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(encoder).save_pretrained(output_dir)
    run_tokens = trainer.tokens - first_tokens
    runs.append(
        {
            "first_step": first_step + 1,
            "steps": trainer.steps - first_step,
            "tokens": run_tokens,
            "seconds": round(run_seconds, 3),
            "tokens_per_second": round(run_tokens / run_seconds, 1) if run_seconds > 0 else None,
            "device": device,
            "mixed_precision": mixed_precision,
        }
    )
    summary = {
        "encoder": str(encoder),
        "texts": [str(path) for path in text_paths],
        "corpus_tokens": int(len(stream) * stream.body),
        "epochs": round(trainer.windows / len(stream), 4),
        "steps": trainer.steps,
        "tokens": trainer.tokens,
        "seconds": round(previous_seconds + run_seconds, 3),
        "device": device,
        "settings": asdict(settings),
        "runs": runs,
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def pretraining_speed(
    encoder: str, text_paths: Sequence[PathLike], settings: PretrainingSettings, steps: int, warmup: int = 2
) -> Dict[str, float]:
    """Training tokens/s of the masked-only loss and of the full-vocabulary one, on the same batches.

    Both start from the same weights and skip `warmup` steps before timing,
    so that allocation and thread start-up are not counted.
    """
    vocab = encoder_vocab(encoder)
    stream = WindowStream(encode_texts(text_paths, vocab), vocab, settings.sequence_length, settings.seed)
    speeds = {}
    for loss in LOSSES:
        torch.manual_seed(settings.seed)
        trainer = Pretrainer(BertForMaskedLM.from_pretrained(encoder), vocab, stream, settings, loss=loss)
        for _ in range(warmup):
            trainer.step()
        started, first_tokens = time.perf_counter(), trainer.tokens
        for _ in range(steps):
            trainer.step()
        speeds[loss] = (trainer.tokens - first_tokens) / (time.perf_counter() - started)
    return speeds


def export_encoder(pretrained_dir: PathLike, output_dir: PathLike, half: bool = False) -> Path:
    """The pretrained encoder without its checkpoint and corpus cache, in fp16 if `half`: what `assets/` ships."""
    model = BertForMaskedLM.from_pretrained(pretrained_dir)
    if half:
        model = model.half()
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(pretrained_dir).save_pretrained(output_dir)
    # The summary and the loss curve say how it was made (the report reads both).
    for name in ("pretraining.json", "pretraining_log.jsonl"):
        if (Path(pretrained_dir) / name).exists():
            shutil.copyfile(Path(pretrained_dir) / name, output_dir / name)
    return output_dir


def sample_lines(paths: Sequence[PathLike], max_chars: int) -> Iterator[str]:
    """Every k-th non-empty line of every file, k chosen so the sample holds about `max_chars`.

    The same k for every file keeps each source's share of the whole.
    """
    total_chars = sum(len(plain_line(line)) for path in paths for line in open_text(path))
    every = max(1, math.ceil(total_chars / max_chars))
    for path in paths:
        lines = (line for line in map(plain_line, open_text(path)) if line)
        yield from itertools.islice(lines, 0, None, every)


def device_name(gpu_id: int) -> str:
    """The torch device of spaCy's `--gpu-id` convention (-1 is the CPU)."""
    return f"cuda:{gpu_id}" if gpu_id >= 0 else "cpu"
