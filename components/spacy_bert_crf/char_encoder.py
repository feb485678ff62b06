"""`spacy_bert_crf.CharBertEncoder.v3`: a BERT that reads one character per position.

Why a layer of our own rather than spacy-transformers' `TransformerModel`
with a per-character tokenizer: the input is not only characters. Each
character also brings its left and right bigram, whose vectors are added to
its embedding through a small projection, and spacy-transformers hands the
Hugging Face model a tokenizer's output with no room for that. Feeding ids
straight from the tokens also removes the wordpiece alignment (spaCy tokens ↔
pieces), which cost about a twelfth of inference time, and gives whitespace
and control characters an id of their own where the wordpiece tokenizer
deleted them. The encoder is still any Hugging Face BERT directory or hub
name (`BertModel.from_pretrained`), bert-base-chinese's real weights included.

Long texts are read in windows of `window` characters, `stride` apart; each
character takes its vector from the window in which it sits furthest from an
edge (the overlap is split at its middle).

v3 adds two things the offline encoder, one layer deep and trained from
vectors, lacked (both off by default, and off for bert-base-chinese): a small
hashed table of learnt corrections to the frozen bigram vectors
(`bigram_buckets`), and a BiLSTM over the last layer (`lstm_width`,
spacy_bert_crf/context.py). v2 is v3 without them; v2 added the lexicon flags
(spacy_bert_crf/lexicon.py), one more input added to the embeddings as the
bigrams are, and v1 is v2 without those.

The shim owns its module: it saves the BERT config, the vocabulary, the
bigram keys, the lexicon and the weights, and `from_bytes` rebuilds the module from them,
so a saved pipeline needs neither the encoder directory nor `assets/`.
"""

import io
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy
import srsly
import torch
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, PyTorchShim, get_torch_default_device, torch2xp, xp2torch
from thinc.types import Floats2d
from torch import nn
from transformers import AutoTokenizer, BertConfig, BertModel
from transformers.utils import logging as transformers_logging

from .char_inputs import BigramVocab, CharVocab, folded_chars, hashed_rows, load_vectors
from .context import BiLSTM
from .lexicon import Lexicon, read_lexicon


class CharBert(nn.Module):
    """BERT over character ids, plus (optionally) a projection of each character's bigram vectors."""

    def __init__(
        self,
        config: BertConfig,
        vocab: CharVocab,
        bigram_vocab: Optional[BigramVocab],
        bigram_width: int,
        train_bigram_vectors: bool = True,
        lexicon: Optional[Lexicon] = None,
        bigram_buckets: int = 0,
        lstm_width: int = 0,
    ):
        super().__init__()
        self.bert = BertModel(config, add_pooling_layer=False)
        self.vocab = vocab
        self.bigram_vocab = bigram_vocab
        self.lexicon = lexicon
        self.train_bigram_vectors = train_bigram_vectors
        self.bigram_buckets = bigram_buckets
        if bigram_buckets and bigram_vocab is None:
            raise ValueError(
                f"bigram_buckets ({bigram_buckets}) learn corrections to the bigram vectors, and there are none "
                "(bigram_vectors is null): set bigram_vectors, or bigram_buckets = 0"
            )
        if bigram_vocab is not None:
            self.bigrams = nn.Embedding(len(bigram_vocab), bigram_width)
            # Frozen, the table's ~10M numbers get no dense gradient and no
            # optimizer step each batch; the projection still learns.
            self.bigrams.weight.requires_grad_(train_bigram_vectors)
            if bigram_buckets:
                # What the training data says of each bigram, on top of its
                # pretrained vector: a small hashed table that learns, so that
                # bigrams the raw text lacks (a sixth of MSRA's) get a vector too.
                # Zero: training starts from the pretrained vectors alone.
                self.bigram_corrections = nn.Embedding(bigram_buckets, bigram_width)
                nn.init.zeros_(self.bigram_corrections.weight)
            self.bigram_projection = nn.Linear(2 * bigram_width, config.hidden_size, bias=False)
        if lexicon is not None:
            self.lexicon_projection = nn.Linear(lexicon.width, config.hidden_size, bias=False)
            # Zero: training starts from the encoder without the lexicon, and learns what its flags are worth.
            nn.init.zeros_(self.lexicon_projection.weight)
        self.lstm = BiLSTM(config.hidden_size, lstm_width) if lstm_width else None

    @property
    def hidden_size(self) -> int:
        """The width of the character vectors: the BiLSTM's if there is one, else the encoder's."""
        return self.lstm.width_out if self.lstm is not None else self.bert.config.hidden_size

    def forward(
        self,
        ids: torch.Tensor,
        left: torch.Tensor,
        right: torch.Tensor,
        left_hashed: torch.Tensor,
        right_hashed: torch.Tensor,
        lexicon_flags: torch.Tensor,
        attention_mask: torch.Tensor,
        rows: torch.Tensor,
    ) -> torch.Tensor:
        """Vectors of the characters at the flat positions `rows` of the padded windows."""
        embeddings = self.bert.embeddings.word_embeddings(ids)
        if self.bigram_vocab is not None:
            left_vectors, right_vectors = self.bigrams(left), self.bigrams(right)
            if self.bigram_buckets:
                left_vectors = left_vectors + self.bigram_corrections(left_hashed).sum(dim=-2)
                right_vectors = right_vectors + self.bigram_corrections(right_hashed).sum(dim=-2)
            embeddings = embeddings + self.bigram_projection(torch.cat([left_vectors, right_vectors], dim=-1))
        if self.lexicon is not None:
            embeddings = embeddings + self.lexicon_projection(lexicon_flags)
        hidden = self.bert(inputs_embeds=embeddings, attention_mask=attention_mask).last_hidden_state
        if self.lstm is not None:
            hidden = self.lstm(hidden, attention_mask.sum(dim=1))
        return hidden.reshape(-1, hidden.shape[-1])[rows]

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        bigram_vectors: Optional[str] = None,
        train_bigram_vectors: bool = True,
        lexicon: Optional[str] = None,
        bigram_buckets: int = 0,
        lstm_width: int = 0,
    ) -> "CharBert":
        """An encoder directory or hub name, with the bigram table at `bigram_vectors` (None: no bigrams),
        `bigram_buckets` rows of learnt corrections to it, the lexicon file at `lexicon` (None: no
        lexicon flags), and a BiLSTM `lstm_width` wide on top (0: none)."""
        # A checkpoint's pooler (which NER has no use for) is left out: say nothing of it.
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()
        try:
            bert = BertModel.from_pretrained(name, add_pooling_layer=False)
        finally:
            transformers_logging.set_verbosity(verbosity)
        vocab = encoder_vocab(name)
        bigram_vocab, table = None, None
        if bigram_vectors:
            keys, vectors = load_vectors(bigram_vectors)
            bigram_vocab = BigramVocab(keys)
            # Unit scale, and a zero row for unknown bigrams.
            table = numpy.concatenate([numpy.zeros((1, vectors.shape[1]), "float32"), vectors / vectors.std()])
        module = cls(
            bert.config,
            vocab,
            bigram_vocab,
            0 if table is None else table.shape[1],
            train_bigram_vectors,
            read_lexicon(lexicon) if lexicon else None,
            bigram_buckets,
            lstm_width,
        )
        module.bert.load_state_dict(bert.state_dict())
        if table is not None:
            module.bigrams.weight.data.copy_(torch.from_numpy(table))
        return module


def encoder_vocab(name: str) -> CharVocab:
    """The vocabulary of an encoder directory or hub name, in id order."""
    tokenizer_vocab = AutoTokenizer.from_pretrained(name).get_vocab()
    return CharVocab(sorted(tokenizer_vocab, key=tokenizer_vocab.__getitem__))


def serialize_char_bert(module: CharBert) -> bytes:
    """Everything `deserialize_char_bert` needs to rebuild the module: config, vocabularies, weights."""
    state = io.BytesIO()
    torch.save(module.state_dict(), state)
    bigram_vocab = module.bigram_vocab
    return srsly.msgpack_dumps(
        {
            "config": module.bert.config.to_dict(),
            "vocab": module.vocab.tokens,
            "bigram_keys": None if bigram_vocab is None else bigram_vocab.keys,
            "bigram_width": module.bigrams.embedding_dim if bigram_vocab is not None else 0,
            "train_bigram_vectors": module.train_bigram_vectors,
            "lexicon": None if module.lexicon is None else module.lexicon.to_dict(),
            "bigram_buckets": module.bigram_buckets,
            "lstm_width": 0 if module.lstm is None else module.lstm.width_out,
            "state": state.getvalue(),
        }
    )


def deserialize_char_bert(_module: Optional[CharBert], data: bytes, device: torch.device) -> CharBert:
    saved = srsly.msgpack_loads(data)
    keys = saved["bigram_keys"]
    module = CharBert(
        BertConfig.from_dict(saved["config"]),
        CharVocab(saved["vocab"]),
        None if keys is None else BigramVocab(keys),
        saved["bigram_width"],
        # Pipelines saved before the setting existed trained their table.
        saved.get("train_bigram_vectors", True),
        None if saved.get("lexicon") is None else Lexicon.from_dict(saved["lexicon"]),
        saved.get("bigram_buckets", 0),
        saved.get("lstm_width", 0),
    )
    module.load_state_dict(torch.load(io.BytesIO(saved["state"]), map_location=device))
    return module.to(device)


class Windows(NamedTuple):
    """A batch of Docs cut into padded windows of character ids, as `CharBert.forward` takes them."""

    ids: numpy.ndarray  # (windows, positions), [CLS] and [SEP] included
    left: numpy.ndarray  # (windows, positions): each character's left bigram row (0 elsewhere)
    right: numpy.ndarray  # (windows, positions): its right bigram row
    left_hashed: numpy.ndarray  # (windows, positions, 2): its left bigram's rows of the hashed corrections
    right_hashed: numpy.ndarray  # (windows, positions, 2): its right bigram's
    lexicon_flags: numpy.ndarray  # (windows, positions, lexicon width; 0 without a lexicon)
    attention_mask: numpy.ndarray  # (windows, positions)
    rows: numpy.ndarray  # (characters,): each character's flat position in the windows
    lengths: List[int]  # characters per Doc


def window_starts(length: int, window: int, stride: int) -> List[int]:
    """Starts of the windows covering `length` characters; the last one ends at the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def owners(length: int, window: int, starts: Sequence[int]) -> numpy.ndarray:
    """For each character, the window it takes its vector from: the overlap of
    two windows is split at its middle."""
    owner = numpy.zeros((length,), dtype="int64")
    for k in range(1, len(starts)):
        middle = (starts[k] + starts[k - 1] + window) // 2
        owner[middle:] = k
    return owner


def doc_windows(
    docs: Sequence[Doc],
    vocab: CharVocab,
    bigram_vocab: Optional[BigramVocab],
    window: int,
    stride: int,
    lexicon: Optional[Lexicon] = None,
    bigram_buckets: int = 0,
) -> Windows:
    """Cut `docs` into windows and note where each character's vector is to be read."""
    pieces = []  # (ids, left, right, left hashed, right hashed, lexicon flags) per window
    rows = []
    lexicon_width = 0 if lexicon is None else lexicon.width
    for doc in docs:
        texts = [token.text for token in doc]
        ids = vocab.ids(texts)
        # Folded once, for both the bigrams and the lexicon.
        folded = folded_chars(texts) if bigram_vocab is not None or lexicon is not None else []
        bigram_rows = bigram_vocab.rows(folded) if bigram_vocab is not None else numpy.zeros((len(texts) + 1,), "int64")
        hashed = hashed_rows(folded, bigram_buckets) if bigram_buckets else numpy.zeros((len(texts) + 1, 0), "int64")
        flags = lexicon.features(folded) if lexicon is not None else numpy.zeros((len(texts), 0), "float32")
        starts = window_starts(len(texts), window, stride)
        first_window = len(pieces)
        for start in starts:
            end = min(start + window, len(texts))
            pieces.append(
                (
                    ids[start:end],
                    bigram_rows[start:end],
                    bigram_rows[start + 1 : end + 1],
                    hashed[start:end],
                    hashed[start + 1 : end + 1],
                    flags[start:end],
                )
            )
        owner = owners(len(texts), window, starts)
        positions = numpy.arange(len(texts)) - numpy.asarray(starts)[owner] + 1
        rows.append((first_window + owner, positions))
    width = max((len(piece[0]) for piece in pieces), default=0) + 2
    n_windows = len(pieces)
    ids = numpy.full((n_windows, width), vocab.pad_id, dtype="int64")
    left = numpy.zeros((n_windows, width), dtype="int64")
    right = numpy.zeros((n_windows, width), dtype="int64")
    n_hashes = 2 if bigram_buckets else 0
    left_hashed = numpy.zeros((n_windows, width, n_hashes), dtype="int64")
    right_hashed = numpy.zeros((n_windows, width, n_hashes), dtype="int64")
    lexicon_flags = numpy.zeros((n_windows, width, lexicon_width), dtype="float32")
    attention_mask = numpy.zeros((n_windows, width), dtype="int64")
    for k, (piece_ids, piece_left, piece_right, piece_left_hashed, piece_right_hashed, piece_flags) in enumerate(
        pieces
    ):
        n = len(piece_ids)
        ids[k, 0] = vocab.cls_id
        ids[k, 1 : n + 1] = piece_ids
        ids[k, n + 1] = vocab.sep_id
        left[k, 1 : n + 1] = piece_left
        right[k, 1 : n + 1] = piece_right
        left_hashed[k, 1 : n + 1] = piece_left_hashed
        right_hashed[k, 1 : n + 1] = piece_right_hashed
        lexicon_flags[k, 1 : n + 1] = piece_flags
        attention_mask[k, : n + 2] = 1
    flat_rows = (
        numpy.concatenate([window_index * width + position for window_index, position in rows])
        if rows
        else numpy.zeros((0,), "int64")
    )
    return Windows(
        ids,
        left,
        right,
        left_hashed,
        right_hashed,
        lexicon_flags,
        attention_mask,
        flat_rows,
        [len(doc) for doc in docs],
    )


@registry.architectures("spacy_bert_crf.CharBertEncoder.v3")
def build_char_bert_encoder(
    name: str,
    bigram_vectors: Optional[str] = None,
    window: int = 256,
    stride: int = 192,
    mixed_precision: bool = False,
    train_bigram_vectors: bool = True,
    lexicon: Optional[str] = None,
    bigram_buckets: int = 0,
    lstm_width: int = 0,
) -> Model[List[Doc], List[Floats2d]]:
    """One vector per token from a BERT that reads one character per position.

    name: an encoder directory or hub name (`BertModel.from_pretrained`).
    bigram_vectors: a `.npz` bigram table (`scripts/train_vectors.py`) whose
    vectors are added to the character embeddings through a learned
    projection; null or "" leaves the bigram input out (as for
    bert-base-chinese, whose embeddings were pretrained without it).
    window, stride: characters per window, and the step between windows, for
    texts longer than one window; window + 2 ([CLS], [SEP]) must fit the
    encoder's position embeddings.
    train_bigram_vectors: whether training updates the bigram table itself
    (false: only its projection learns, and each step is about a fifth faster
    on the CPU with the shipped 148k-row table).
    lexicon: a `word<TAB>class` file (`scripts/build_lexicon.py`) whose
    B/M/E/S flags (spacy_bert_crf/lexicon.py) are added to the character
    embeddings through a learned projection; null or "" leaves them out.
    bigram_buckets: rows of a hashed table of corrections to the bigram
    vectors, learnt from the training data (each bigram takes two rows); 0
    leaves it out, and the bigram input is the pretrained table's alone.
    lstm_width: the width of a bidirectional LSTM over the encoder's last
    layer (context.py), which then gives the vectors; 0 leaves it out.
    """
    if not 0 < stride <= window:
        raise ValueError(f"stride must be in 1..window ({window}); got {stride}")
    shim = PyTorchShim(
        None,
        mixed_precision=mixed_precision,
        serialize_model=serialize_char_bert,
        deserialize_model=deserialize_char_bert,
    )
    return Model(
        "char_bert",
        _forward,
        init=_init,
        shims=[shim],
        attrs={
            "name": name,
            "bigram_vectors": bigram_vectors or None,
            "window": window,
            "stride": stride,
            "train_bigram_vectors": train_bigram_vectors,
            "lexicon": lexicon or None,
            "bigram_buckets": bigram_buckets,
            "lstm_width": lstm_width,
            # Set by the pipe's update (thinc's set_dropout_rate): spaCy's `[training] dropout`.
            "dropout_rate": None,
        },
    )


@registry.architectures("spacy_bert_crf.CharBertEncoder.v2")
def build_char_bert_encoder_v2(
    name: str,
    bigram_vectors: Optional[str] = None,
    window: int = 256,
    stride: int = 192,
    mixed_precision: bool = False,
    train_bigram_vectors: bool = True,
    lexicon: Optional[str] = None,
) -> Model[List[Doc], List[Floats2d]]:
    """CharBertEncoder.v3 without the hashed bigram corrections, for the configs written before them."""
    return build_char_bert_encoder(name, bigram_vectors, window, stride, mixed_precision, train_bigram_vectors, lexicon)


@registry.architectures("spacy_bert_crf.CharBertEncoder.v1")
def build_char_bert_encoder_v1(
    name: str,
    bigram_vectors: Optional[str] = None,
    window: int = 256,
    stride: int = 192,
    mixed_precision: bool = False,
    train_bigram_vectors: bool = True,
) -> Model[List[Doc], List[Floats2d]]:
    """CharBertEncoder.v2 without lexicon flags, for the configs written before them."""
    return build_char_bert_encoder(name, bigram_vectors, window, stride, mixed_precision, train_bigram_vectors)


def char_bert_module(model: Model) -> CharBert:
    """The torch module of an initialised (or loaded) CharBertEncoder."""
    module = model.shims[0]._model
    if module is None:
        raise ValueError("The character encoder has no module yet: initialize the model or load it first.")
    return module


def _init(model: Model, X=None, Y=None) -> None:
    attrs = model.attrs
    module = CharBert.from_pretrained(
        attrs["name"],
        attrs["bigram_vectors"],
        attrs["train_bigram_vectors"],
        attrs["lexicon"],
        attrs["bigram_buckets"],
        attrs["lstm_width"],
    )
    max_positions = module.bert.config.max_position_embeddings
    if model.attrs["window"] + 2 > max_positions:
        raise ValueError(f"window {model.attrs['window']} + 2 exceeds the encoder's {max_positions} positions")
    model.shims[0]._model = module.to(get_torch_default_device())


def set_encoder_dropout(module: nn.Module, rate: float) -> None:
    """One dropout rate for every dropout of the encoder, the attention probabilities' included."""
    for layer in module.modules():
        if isinstance(layer, nn.Dropout):
            layer.p = rate
        # The SDPA attention of transformers' BERT drops out inside the kernel, at this rate.
        if hasattr(layer, "dropout_prob"):
            layer.dropout_prob = rate


def _forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    shim = model.shims[0]
    module = char_bert_module(model)
    if is_train and model.attrs["dropout_rate"] is not None:
        set_encoder_dropout(module, model.attrs["dropout_rate"])
    windows = doc_windows(
        docs,
        module.vocab,
        module.bigram_vocab,
        model.attrs["window"],
        model.attrs["stride"],
        module.lexicon,
        module.bigram_buckets,
    )
    device = shim.device
    inputs = ArgsKwargs(
        args=tuple(
            torch.as_tensor(array, device=device)
            for array in (
                windows.ids,
                windows.left,
                windows.right,
                windows.left_hashed,
                windows.right_hashed,
                windows.lexicon_flags,
                windows.attention_mask,
                windows.rows,
            )
        ),
        kwargs={},
    )
    output, torch_backprop = shim(inputs, is_train)
    flat = torch2xp(output.float())
    vectors = model.ops.unflatten(flat, model.ops.asarray1i(windows.lengths))

    def backprop(d_vectors: List[Floats2d]) -> List[Doc]:
        d_flat = xp2torch(model.ops.flatten(d_vectors), device=device).to(output.dtype)
        torch_backprop(ArgsKwargs(args=(output,), kwargs={"grad_tensors": d_flat}))
        return []

    return vectors, backprop
