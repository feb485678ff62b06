"""Speed and memory of the pipe against its peers: same sentences, encoder weights and batch size.

The systems (`SYSTEMS`):

- `pipeline` (a): our pipe with the CRF head, through `nlp.pipe`, entity
  probabilities included (their time is reported apart from the decoding's);
  `pipeline_without_probabilities` (a′): the same, loaded with `spans_key`
  null;
- `torch_loop` (b): plain PyTorch: the pipe's own BERT and linear layer, then
  our batched Viterbi; the encoder runs on the same length-sorted sub-batches
  as the pipe's (`encoder_sub_batches`), so that (a) against (b) measures
  spaCy's overhead alone;
- `torch_loop_pytorch_crf` (c): the same loop with pytorch-crf's `decode`;
- `softmax_pipeline` (d): our pipe with the softmax head;
- `spacy_ner` (e): spaCy's transition-based `ner` on the same encoder, trained
  a few steps so that its transition system has seen the labels;
- `hf_pipeline` (f): transformers' `pipeline("token-classification")` over a
  `BertForTokenClassification` with the same encoder and linear weights.

`set_up` saves every pipeline once into a work directory; each system then
runs in a fresh process (`run_benchmark`), so that its peak RSS is its own.
Inference is timed by `measuring.timed_passes`: the median of several passes
of at least `min_pass_seconds` each. The decode and probability shares come
from the pipe's stage timer (`BertCrfNer.stage_timer`).
The sentences are test sentences short enough for one transformer window (and
without whitespace), so every system sees exactly the same characters.

The tables and targets are `benchmark_report`'s; long single documents are
`long_documents`'.
"""

import copy
import json
import time
from dataclasses import asdict, dataclass
from itertools import cycle
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
import spacy
import torch
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import fix_random_seed
from tqdm import tqdm

from ..architectures import head_module
from ..crf import CRFHead, TransitionMasks
from ..formats import PathLike, read_docs
from ..gold import doc_iob, tag_ids
from ..pipe import BertCrfNer, length_sorted_splits
from ..schemes import bio_tags
from .measuring import StageSeconds, Timing, in_fresh_process, peak_rss_mib, timed_passes

SYSTEMS = (
    "pipeline",
    "pipeline_without_probabilities",
    "torch_loop",
    "torch_loop_pytorch_crf",
    "softmax_pipeline",
    "spacy_ner",
    "hf_pipeline",
)
PIPELINES = {
    "pipeline": "crf",
    "pipeline_without_probabilities": "crf",
    "softmax_pipeline": "softmax",
    "spacy_ner": "spacy_ner",
}
ARCHITECTURES = {"crf": "spacy_bert_crf.CRFTagger.v1", "softmax": "spacy_bert_crf.SoftmaxTagger.v1"}
# One transformer window (128 wordpieces) holds [CLS], 126 characters and [SEP].
MAX_CHARS = 126


@dataclass
class BenchmarkSettings:
    """What every system shares.

    Inference (and the decoder comparison) is timed over `inference_passes`
    passes of at least `min_pass_seconds` each; the median counts.
    `decode_shape` is (batch, time, tags) of the decoder comparison.
    """

    encoder: str
    batch_size: int = 64
    inference_passes: int = 5
    min_pass_seconds: float = 2.0
    train_steps: int = 10
    ner_train_steps: int = 20
    gpu_id: int = -1
    mixed_precision: bool = False
    decode_shape: Tuple[int, int, int] = (64, 128, 9)
    seed: int = 0


def benchmark_docs(path: PathLike, vocab, limit: Optional[int] = None, max_chars: int = MAX_CHARS) -> List[Doc]:
    """The gold Docs of a data file that fit one transformer window and hold no whitespace."""
    docs, _ = read_docs(path, vocab)
    fitting = [doc for doc in docs if 0 < len(doc.text) <= max_chars and not any(char.isspace() for char in doc.text)]
    return fitting[:limit] if limit else fitting


def set_up(workdir: PathLike, settings: BenchmarkSettings, gold_docs: Sequence[Doc]) -> Path:
    """Save the gold Docs and every pipeline the systems load into `workdir`.

    The CRF and softmax pipes are initialised (labels from the gold Docs) but
    not trained: speed does not depend on the weights, and (b), (c) and (f)
    then share the encoder and linear weights with (a) exactly. spaCy's `ner`
    is trained `ner_train_steps` steps, as its parser needs to have seen the
    actions to be timed on them.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    DocBin(docs=gold_docs).to_disk(workdir / "gold.spacy")
    for head in ARCHITECTURES:
        untrained_pipeline(workdir / head, settings, gold_docs, head)
    fix_random_seed(settings.seed)
    nlp = spacy.blank("zh")
    nlp.add_pipe("ner", config={"model": transition_parser_config(settings)})
    examples = _examples(nlp, gold_docs)
    optimizer = nlp.initialize(lambda: examples)
    batches = _batches(examples, settings.batch_size, settings.ner_train_steps)
    for batch in tqdm(batches, total=settings.ner_train_steps, desc="training spaCy's ner", leave=False):
        nlp.update(batch, sgd=optimizer)
    nlp.to_disk(workdir / "spacy_ner")
    (workdir / "settings.json").write_text(json.dumps(asdict(settings)), encoding="utf-8")
    return workdir


def encoder_config(settings: BenchmarkSettings) -> Dict[str, Any]:
    """spacy-transformers' Tok2VecTransformer on the benchmark's encoder directory."""
    return {
        "@architectures": "spacy-transformers.Tok2VecTransformer.v3",
        "name": settings.encoder,
        "tokenizer_config": {"use_fast": True},
        "mixed_precision": settings.mixed_precision,
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96},
        "pooling": {"@layers": "reduce_mean.v1"},
    }


def transition_parser_config(settings: BenchmarkSettings) -> Dict[str, Any]:
    """spaCy's transformer `ner` model (as in `spacy init config -G`), on the same encoder."""
    return {
        "@architectures": "spacy.TransitionBasedParser.v2",
        "state_type": "ner",
        "extra_state_tokens": False,
        "hidden_width": 64,
        "maxout_pieces": 2,
        "use_upper": False,
        "tok2vec": encoder_config(settings),
    }


def run_benchmark(
    workdir: PathLike,
    systems: Iterable[str] = SYSTEMS,
    on_result: Optional[Callable[[str, Dict[str, Any]], None]] = None,
) -> Dict[str, Dict[str, Any]]:
    """Measure each system, and the decoders, each in a fresh process."""
    results = {}
    for name in [*systems, "decoders"]:
        results[name] = in_fresh_process(measure_system, name, str(workdir))
        if on_result is not None:
            on_result(name, results[name])
    return results


def measure_system(name: str, workdir: str) -> Dict[str, Any]:
    """One system's figures, in this process: inference (and training) speed, peak RSS."""
    workdir = Path(workdir)
    settings = BenchmarkSettings(**json.loads((workdir / "settings.json").read_text(encoding="utf-8")))
    settings.decode_shape = tuple(settings.decode_shape)
    torch.manual_seed(settings.seed)
    if name == "decoders":
        result = compare_decoders(settings)
    else:
        gold = list(DocBin().from_disk(workdir / "gold.spacy").get_docs(spacy.blank("zh").vocab))
        if name in PIPELINES:
            overrides = (
                {"components": {"bert_crf_ner": {"spans_key": None}}}
                if name == "pipeline_without_probabilities"
                else {}
            )
            result = _measure_pipeline(
                workdir / PIPELINES[name], gold, settings, train=name == "pipeline", config=overrides
            )
        elif name == "hf_pipeline":
            result = _measure_hf_pipeline(workdir / "crf", gold, settings)
        else:
            decoder = "pytorch_crf" if name == "torch_loop_pytorch_crf" else "ours"
            result = _measure_torch_loop(workdir / "crf", gold, settings, decoder, train=name == "torch_loop")
    return {**result, "peak_rss_mib": round(peak_rss_mib(), 1), "torch_threads": torch.get_num_threads()}


def _device(gpu_id: int) -> torch.device:
    return torch.device(f"cuda:{gpu_id}") if gpu_id >= 0 else torch.device("cpu")


def _synchronize(device: torch.device) -> None:
    # CUDA runs asynchronously: a timer must wait for the queued work.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(items: Sequence, batch_size: int, n_batches: int) -> Iterable[List]:
    """`n_batches` batches, cycling through `items`."""
    source = cycle(items)
    for _ in range(n_batches):
        yield [next(source) for _ in range(batch_size)]


def _texts(gold: Sequence[Doc]) -> List[str]:
    return [doc.text for doc in gold]


def _inference_result(texts: Sequence[str], timing: Timing) -> Dict[str, Any]:
    """The figures every system reports for one inference run over `texts`."""
    chars = sum(map(len, texts))
    return {
        "chars": chars,
        "sentences": len(texts),
        "inference_seconds": round(timing.seconds, 4),
        "chars_per_s": round(chars / timing.seconds, 1),
        "passes": timing.passes,
        "runs_per_pass": timing.runs_per_pass,
        "pass_spread": round(timing.spread, 4),
    }


def _timed_inference(
    run: Callable[[], Any], settings: BenchmarkSettings, device: torch.device, stages: Optional[StageSeconds] = None
) -> Timing:
    return timed_passes(run, settings.inference_passes, settings.min_pass_seconds, lambda: _synchronize(device), stages)


def _measure_pipeline(
    path: Path, gold: Sequence[Doc], settings: BenchmarkSettings, train: bool, config: Dict[str, Any]
) -> Dict[str, Any]:
    """(a), (a′), (d), (e): `nlp.pipe` chars/s; for ours also the shares of
    decoding and probabilities, from the pipe's stage timer; for (a) training chars/s."""
    if settings.gpu_id >= 0:
        spacy.require_gpu(settings.gpu_id)
    device = _device(settings.gpu_id)
    nlp = spacy.load(path, config=config)
    texts = _texts(gold)
    ours = [pipe for _, pipe in nlp.pipeline if isinstance(pipe, BertCrfNer)]
    stages = StageSeconds(lambda: _synchronize(device)) if ours else None
    for pipe in ours:
        pipe.stage_timer = stages
    timing = _timed_inference(lambda: list(nlp.pipe(texts, batch_size=settings.batch_size)), settings, device, stages)
    result = _inference_result(texts, timing)
    if ours:
        for stage, key in (("decode", "crf"), ("probabilities", "probability")):
            spent = timing.stage_seconds.get(stage, 0.0)
            result[f"{key}_seconds"] = round(spent, 4)
            result[f"{key}_share"] = round(spent / timing.seconds, 4)
        for pipe in ours:
            pipe.stage_timer = None
    if train:
        optimizer = nlp.resume_training()
        batches = list(_batches(_examples(nlp, gold), settings.batch_size, settings.train_steps + 1))
        nlp.update(batches[0], sgd=optimizer)
        train_chars = sum(len(eg.reference.text) for batch in batches[1:] for eg in batch)
        start = time.perf_counter()
        for batch in batches[1:]:
            nlp.update(batch, sgd=optimizer)
        _synchronize(device)
        result["train_chars_per_s"] = round(train_chars / (time.perf_counter() - start), 1)
    return result


class _PlainTagger:
    """(b) and (c): the pipe's BERT, tokenizer, linear layer and head, called by hand."""

    def __init__(self, path: Path, settings: BenchmarkSettings):
        self.device = _device(settings.gpu_id)
        self.mixed_precision = settings.mixed_precision
        ner = spacy.load(path).get_pipe("bert_crf_ner")
        transformer = next(layer for layer in ner.model.walk() if layer.name == "transformer")
        self.tokenizer = transformer.tokenizer
        self.bert = transformer.transformer.to(self.device)
        output = ner.model.get_ref("output")
        self.linear = torch.nn.Linear(output.get_dim("nI"), output.get_dim("nO")).to(self.device)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(output.ops.to_numpy(output.get_param("W"))))
            self.linear.bias.copy_(torch.as_tensor(output.ops.to_numpy(output.get_param("b"))))
        self.head = head_module(ner.model).to(self.device)
        self.sub_batches = ner.encoder_sub_batches
        self.tags = tuple(ner.tags)
        self.allowed = TransitionMasks.for_tags(self.tags, self.device)

    def emissions(self, texts: Sequence[str], sub_batches: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
        """(batch, chars, tags) emissions and the mask.

        As in the pipe, the encoder runs on `sub_batches` length-sorted
        sub-batches, the tokenizer sees the raw text, and each character takes
        the vector of the wordpiece that covers it (a run of digits such as
        "2013" is one wordpiece, shared by its characters).
        """
        rows = [None] * len(texts)
        for split in length_sorted_splits(texts, range(len(texts)), sub_batches):
            encoded = self._encode([texts[i] for i in split])
            for row, i in enumerate(split):
                rows[i] = encoded[row, : len(texts[i])]
        lengths = torch.tensor([len(text) for text in texts], device=self.device)
        emissions = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
        return emissions, torch.arange(emissions.shape[1], device=self.device) < lengths.unsqueeze(1)

    def _encode(self, texts: Sequence[str]) -> torch.Tensor:
        encoding = self.tokenizer(list(texts), padding=True, return_offsets_mapping=True, return_tensors="pt")
        offsets = encoding.pop("offset_mapping")
        piece_of_char = torch.zeros((len(texts), max(map(len, texts))), dtype=torch.long)
        for row, row_offsets in enumerate(offsets.tolist()):
            for piece, (start, end) in enumerate(row_offsets):
                piece_of_char[row, start:end] = piece
        inputs = {key: value.to(self.device) for key, value in encoding.items()}
        with torch.autocast(self.device.type, enabled=self.mixed_precision):
            hidden = self.bert(**inputs).last_hidden_state
            index = piece_of_char.to(self.device).unsqueeze(2).expand(-1, -1, hidden.shape[2])
            return self.linear(hidden.gather(1, index)).float()

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor, decoder: str) -> List[numpy.ndarray]:
        if decoder == "pytorch_crf":
            return [numpy.asarray(path) for path in self.head.crf.decode(emissions, mask)]
        paths = self.head.decode(emissions, mask, self.allowed).cpu().numpy()
        return [path[:length] for path, length in zip(paths, mask.sum(dim=1).tolist())]


def _measure_torch_loop(
    path: Path, gold: Sequence[Doc], settings: BenchmarkSettings, decoder: str, train: bool
) -> Dict[str, Any]:
    tagger = _PlainTagger(path, settings)
    tagger.bert.eval()
    texts = _texts(gold)
    batches = [texts[i : i + settings.batch_size] for i in range(0, len(texts), settings.batch_size)]
    stages = StageSeconds(lambda: _synchronize(tagger.device))

    def run_once():
        with torch.no_grad():
            for batch in batches:
                emissions, mask = tagger.emissions(batch, tagger.sub_batches)
                with stages("decode"):
                    tagger.decode(emissions, mask, decoder)

    timing = _timed_inference(run_once, settings, tagger.device, stages)
    result = _inference_result(texts, timing)
    result["crf_seconds"] = round(timing.stage_seconds["decode"], 4)
    result["crf_share"] = round(timing.stage_seconds["decode"] / timing.seconds, 4)
    if train:
        result["train_chars_per_s"] = round(_train_torch_loop(tagger, gold, settings), 1)
    return result


def _train_torch_loop(tagger: _PlainTagger, gold: Sequence[Doc], settings: BenchmarkSettings) -> float:
    """Training chars/s of (b): BERT, linear layer and CRF loss, with AdamW."""
    gold_ids = [tag_ids(*doc_iob(doc), tagger.tags, doc.vocab.strings)[0].tolist() for doc in gold]
    samples = list(zip(_texts(gold), gold_ids))
    parameters = [*tagger.bert.parameters(), *tagger.linear.parameters(), *tagger.head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=5e-5)
    scaler = torch.amp.GradScaler(tagger.device.type, enabled=tagger.mixed_precision)
    tagger.bert.train()
    batches = list(_batches(samples, settings.batch_size, settings.train_steps + 1))
    chars = 0
    for step, batch in enumerate(batches):
        if step == 1:  # the first step is a warm-up
            _synchronize(tagger.device)
            start = time.perf_counter()
        texts, ids = zip(*batch)
        emissions, mask = tagger.emissions(texts)
        gold_tags = torch.nn.utils.rnn.pad_sequence([torch.tensor(row) for row in ids], batch_first=True).to(
            tagger.device
        )
        loss = tagger.head.loss(emissions, gold_tags, mask) / mask.sum()
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        chars += sum(map(len, texts)) if step else 0
    _synchronize(tagger.device)
    return chars / (time.perf_counter() - start)


def token_classifier(tagger: _PlainTagger):
    """A `BertForTokenClassification` with the tagger's encoder and linear weights."""
    from transformers import BertForTokenClassification

    config = copy.deepcopy(tagger.bert.config)
    config.num_labels = len(tagger.tags)
    model = BertForTokenClassification(config).to(tagger.device)
    # BertForTokenClassification has no pooler: the only weights it leaves out.
    missing, unexpected = model.bert.load_state_dict(tagger.bert.state_dict(), strict=False)
    if missing or any(not key.startswith("pooler.") for key in unexpected):
        raise ValueError(f"encoder weights do not match: missing {missing}, unexpected {unexpected}")
    model.classifier.load_state_dict(tagger.linear.state_dict())
    return model.eval()


def _measure_hf_pipeline(path: Path, gold: Sequence[Doc], settings: BenchmarkSettings) -> Dict[str, Any]:
    """(f): transformers' token-classification pipeline, weights copied from (a)."""
    from transformers import pipeline

    tagger = _PlainTagger(path, settings)
    model = token_classifier(tagger)
    dtype = torch.float16 if settings.mixed_precision else torch.float32
    classify = pipeline("token-classification", model=model.to(dtype), tokenizer=tagger.tokenizer, device=tagger.device)
    texts = _texts(gold)
    timing = _timed_inference(lambda: classify(texts, batch_size=settings.batch_size), settings, tagger.device)
    return _inference_result(texts, timing)


def compare_decoders(settings: BenchmarkSettings) -> Dict[str, Any]:
    """Seconds of our Viterbi (BIO-constrained, and not) and pytorch-crf's
    `decode` (median passes, as inference), on random emissions of `decode_shape` with every step unmasked.
    Unconstrained, ours must give pytorch-crf's paths; `paths_equal` says so."""
    batch_size, n_steps, n_tags = settings.decode_shape
    device = _device(settings.gpu_id)
    head = CRFHead(n_tags).to(device)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.normal_(0, 1)
    emissions = torch.randn(batch_size, n_steps, n_tags, device=device) * 3
    mask = torch.ones(batch_size, n_steps, dtype=torch.bool, device=device)
    labels = [f"L{i}" for i in range((n_tags - 1) // 2)]
    allowed = TransitionMasks.for_tags(tuple(bio_tags(labels)), device) if len(bio_tags(labels)) == n_tags else None

    def median_seconds(decode: Callable[[], Any]) -> float:
        return _timed_inference(decode, settings, device).seconds

    with torch.no_grad():
        ours = head.decode(emissions, mask).tolist()
        reference = head.crf.decode(emissions, mask)
        result = {
            "shape": list(settings.decode_shape),
            "our_decode_s": median_seconds(lambda: head.decode(emissions, mask, allowed).cpu()),
            "our_unconstrained_decode_s": median_seconds(lambda: head.decode(emissions, mask).cpu()),
            "pytorch_crf_decode_s": median_seconds(lambda: head.crf.decode(emissions, mask)),
            "paths_equal": ours == reference,
        }
    result["our_to_pytorch_crf"] = round(result["our_decode_s"] / result["pytorch_crf_decode_s"], 4)
    return result


def untrained_pipeline(
    output_dir: PathLike, settings: BenchmarkSettings, gold_docs: Sequence[Doc], head: str = "crf"
) -> Path:
    """Save our pipe with `head` on the settings' encoder, labels from `gold_docs`, untrained.

    Its predictions mean nothing; its time and memory are those of any
    pipeline of that shape.
    """
    fix_random_seed(settings.seed)
    nlp = spacy.blank("zh")
    nlp.add_pipe(
        "bert_crf_ner", config={"model": {"@architectures": ARCHITECTURES[head], "tok2vec": encoder_config(settings)}}
    )
    examples = _examples(nlp, gold_docs)
    nlp.initialize(lambda: examples)
    nlp.to_disk(output_dir)
    return Path(output_dir)


def _examples(nlp: Language, gold_docs: Sequence[Doc]) -> List[Example]:
    return [Example(nlp.make_doc(doc.text), doc) for doc in gold_docs]
