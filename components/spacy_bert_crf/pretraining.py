"""Masked-LM pretraining of a BERT encoder on raw text.

Offline, this is what makes a "pretrained" encoder: it starts from the random
encoder `init-encoder` writes. Given a real checkpoint (bert-base-chinese or any
local BERT directory) the same code continues its training on the user's text:
domain-adaptive pretraining. Either way the output is a Hugging Face directory
(BertForMaskedLM weights, config, tokenizer) that spacy-transformers and
`init-encoder` load like any other BERT; the MLM head is kept so that a later
run continues where this one stopped.
"""
import itertools
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Sequence, Union

import torch
from tqdm import tqdm
from transformers import AutoTokenizer, BertForMaskedLM, DataCollatorForLanguageModeling

from .formats import open_text, split_tokens

PathLike = Union[str, Path]


@dataclass
class PretrainingSettings:
    """The knobs of `[pretraining]` in configs/pretrain_encoder.cfg."""

    batch_size: int = 32
    sequence_length: int = 128
    learn_rate: float = 5e-4
    warmup_share: float = 0.05
    weight_decay: float = 0.01
    mask_probability: float = 0.15
    max_steps: int = 0
    max_minutes: float = 0.0
    shuffle_windows: int = 4096
    log_every: int = 50
    seed: int = 0

    def __post_init__(self):
        if self.max_steps <= 0 and self.max_minutes <= 0:
            raise ValueError("pretraining needs a budget: max_steps or max_minutes above 0")

    def progress(self, step: int, seconds: float) -> float:
        """How much of the budget is spent, 0 to 1: the larger of steps and time."""
        shares = []
        if self.max_steps > 0:
            shares.append(step / self.max_steps)
        if self.max_minutes > 0:
            shares.append(seconds / (60 * self.max_minutes))
        return min(1.0, max(shares))


def plain_line(line: str) -> str:
    """A line of text as prose: the two-file format's `中 国` becomes `中国`.

    The line end is dropped first: lines read from a file keep theirs, and the
    last character with its newline would otherwise be a two-character token.
    """
    tokens = split_tokens(line.rstrip("\r\n"))
    if len(tokens) > 1 and all(len(token) == 1 for token in tokens):
        return "".join(tokens)
    return line.strip()


def read_text_lines(paths: Sequence[PathLike]) -> Iterator[str]:
    """Non-empty lines of all files, taking one line from each file in turn.

    Interleaving the files mixes their genres within every stretch of the
    stream, so that a short budget does not see only the first file.
    """
    streams = [(plain_line(line) for line in open_text(path)) for path in paths]
    for lines in itertools.zip_longest(*streams):
        yield from (line for line in lines if line)


def token_windows(
    lines: Iterable[str], tokenizer, sequence_length: int, chunk_lines: int = 1000
) -> Iterator[List[int]]:
    """Pack the lines' token ids, `[SEP]` between lines, into full-length windows.

    Every window is `[CLS] … [SEP]` of exactly `sequence_length` ids, so a batch
    needs no padding and no compute is spent on it.
    """
    body = sequence_length - 2
    buffer: List[int] = []
    lines = iter(lines)
    while True:
        chunk = list(itertools.islice(lines, chunk_lines))
        if not chunk:
            return
        for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"]:
            buffer.extend(ids)
            buffer.append(tokenizer.sep_token_id)
        while len(buffer) >= body:
            yield [tokenizer.cls_token_id] + buffer[:body] + [tokenizer.sep_token_id]
            del buffer[:body]


def shuffled(items: Iterable, buffer_size: int, rng: random.Random) -> Iterator:
    """Items in an order shuffled within a sliding buffer of `buffer_size`."""
    buffer = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= buffer_size:
            yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


def training_batches(paths: Sequence[PathLike], tokenizer, settings: PretrainingSettings) -> Iterator[List[List[int]]]:
    """Batches of token windows, passing over the files again and again."""
    rng = random.Random(settings.seed)
    for _ in itertools.count():
        windows = shuffled(
            token_windows(read_text_lines(paths), tokenizer, settings.sequence_length),
            settings.shuffle_windows,
            rng,
        )
        batch = []
        produced = False
        for window in windows:
            batch.append(window)
            if len(batch) == settings.batch_size:
                produced = True
                yield batch
                batch = []
        if not produced:
            raise ValueError(
                f"The text files hold less than one batch ({settings.batch_size} windows of "
                f"{settings.sequence_length} tokens): {', '.join(map(str, paths))}"
            )


def pretrain_encoder(
    encoder: str,
    text_paths: Sequence[PathLike],
    output_dir: PathLike,
    settings: PretrainingSettings,
    device: str = "cpu",
    mixed_precision: bool = False,
) -> Dict:
    """Train `encoder` (a hub name or a directory) with masked-LM on the text files.

    Stops when the step or time budget is spent, saves the model and tokenizer
    to `output_dir` with a JSONL log of the loss and a JSON summary, and
    returns the summary.
    """
    torch.manual_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = BertForMaskedLM.from_pretrained(encoder).to(device)
    model.train()
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=settings.mask_probability)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learn_rate, weight_decay=settings.weight_decay)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    log = (output_dir / "pretraining_log.jsonl").open("w", encoding="utf-8")
    started = time.perf_counter()
    step, tokens, recent_losses = 0, 0, []
    progress_bar = tqdm(total=settings.max_steps or None, desc="MLM pretraining", unit="step")
    for batch in training_batches(text_paths, tokenizer, settings):
        seconds = time.perf_counter() - started
        spent = settings.progress(step, seconds)
        if spent >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = settings.learn_rate * learn_rate_factor(spent, settings.warmup_share)
        inputs = collator([{"input_ids": ids} for ids in batch])
        inputs = {key: value.to(device) for key, value in inputs.items()}
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=mixed_precision):
            loss = masked_lm_loss(model, inputs["input_ids"], inputs["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens += sum(len(ids) for ids in batch)
        recent_losses.append(loss.item())
        progress_bar.update(1)
        if step % settings.log_every == 0:
            mean_loss = sum(recent_losses) / len(recent_losses)
            recent_losses = []
            progress_bar.set_postfix(loss=f"{mean_loss:.3f}")
            record = {"step": step, "seconds": round(time.perf_counter() - started, 3), "tokens": tokens, "loss": mean_loss}
            log.write(json.dumps(record) + "\n")
            log.flush()
    progress_bar.close()
    log.close()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    summary = {
        "encoder": str(encoder),
        "texts": [str(path) for path in text_paths],
        "device": device,
        "mixed_precision": mixed_precision,
        "steps": step,
        "tokens": tokens,
        "seconds": round(time.perf_counter() - started, 3),
        "settings": asdict(settings),
    }
    (output_dir / "pretraining.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def masked_lm_loss(model: BertForMaskedLM, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The MLM loss, with the vocabulary projection run on the masked positions only.

    `BertForMaskedLM.forward` projects every position onto the 21,128-word
    vocabulary, though only the ~15% masked ones have a label: for a small
    encoder that projection is about half the compute of a step. Windows are
    never padded (see `token_windows`), so no attention mask is needed.
    """
    hidden = model.bert(input_ids=input_ids).last_hidden_state
    masked = labels != -100
    logits = model.cls(hidden[masked])
    return torch.nn.functional.cross_entropy(logits.float(), labels[masked])


def learn_rate_factor(progress: float, warmup_share: float) -> float:
    """Linear warm-up over the first `warmup_share` of the budget, then linear decay to 0."""
    if progress < warmup_share:
        return progress / warmup_share
    return max(0.0, (1.0 - progress) / (1.0 - warmup_share))


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
