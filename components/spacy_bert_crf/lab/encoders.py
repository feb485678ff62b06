"""Build BERT encoders offline, as Hugging Face directories spacy-transformers loads.

Three ways, all ending in `save_pretrained` (weights, config and tokenizer):

- random initialisation from a config and vocabulary (by default
  bert-base-chinese's, shipped in `assets/`), with any size overridden;
- a pretrained checkpoint (a hub name or a local directory) cut to its first
  N layers;
- a pretrained checkpoint's embeddings only, on a randomly initialised
  encoder: the report's "pretrained embeddings" variant.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizerFast

from ..char_inputs import WHITESPACE_TOKEN, fold, load_vectors, lookup_rows
from ..formats import PathLike

CHAR_VECTOR_STD = 0.05


@dataclass
class EncoderShape:
    """Sizes to override; None keeps the source config's value."""

    layers: Optional[int] = None
    hidden: Optional[int] = None
    heads: Optional[int] = None
    intermediate: Optional[int] = None

    def apply(self, config: BertConfig) -> BertConfig:
        overrides = {
            "num_hidden_layers": self.layers,
            "hidden_size": self.hidden,
            "num_attention_heads": self.heads,
            "intermediate_size": self.intermediate,
        }
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, value)
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"hidden size {config.hidden_size} is not a multiple of {config.num_attention_heads} attention heads"
            )
        return config


def random_encoder(config_path: PathLike, shape: EncoderShape, seed: int = 0) -> BertModel:
    """A randomly initialised BERT with the config at `config_path`, resized by `shape`."""
    config = shape.apply(BertConfig.from_json_file(str(config_path)))
    torch.manual_seed(seed)
    return BertModel(config)


def truncated_encoder(name_or_path: str, layers: Optional[int] = None) -> BertModel:
    """A pretrained BERT, keeping only its first `layers` layers (all if None)."""
    model = AutoModel.from_pretrained(name_or_path)
    n_layers = model.config.num_hidden_layers
    if layers is not None:
        if not 1 <= layers <= n_layers:
            raise ValueError(f"{name_or_path} has {n_layers} layers; cannot keep {layers}")
        model.encoder.layer = model.encoder.layer[:layers]
        model.config.num_hidden_layers = layers
    return model


def embeddings_only_encoder(name_or_path: str, shape: EncoderShape, seed: int = 0) -> BertModel:
    """A randomly initialised BERT that takes the pretrained model's embeddings.

    The hidden size must stay the pretrained one, since the embeddings are
    copied as they are; layers, heads and intermediate size may change.
    """
    pretrained = AutoModel.from_pretrained(name_or_path)
    if shape.hidden not in (None, pretrained.config.hidden_size):
        raise ValueError(
            f"--embeddings-only keeps {name_or_path}'s hidden size "
            f"{pretrained.config.hidden_size}; cannot change it to {shape.hidden}"
        )
    config = shape.apply(BertConfig.from_dict(pretrained.config.to_dict()))
    torch.manual_seed(seed)
    model = BertModel(config)
    model.embeddings.load_state_dict(pretrained.embeddings.state_dict())
    return model


def load_char_vectors(
    model: BertModel, vocab: Sequence[str], vectors_path: PathLike, scale: float = CHAR_VECTOR_STD
) -> int:
    """Initialise the embedding of every single-character vocabulary entry from
    a character table (`scripts/train_vectors.py`); return how many were set.

    The table is keyed by folded characters (`char_inputs.fold`), as the
    encoder reads them; the whitespace entry gets the vector of a space. The
    vectors are rescaled to a standard deviation of `scale`: larger than
    BERT's random position embeddings (0.02), so that they are what the
    embedding layer norm sees at first.
    """
    keys, vectors = load_vectors(vectors_path)
    embeddings = model.get_input_embeddings().weight
    if vectors.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"{vectors_path} has {vectors.shape[1]}-dimensional vectors; the encoder's hidden size is {embeddings.shape[1]}"
        )
    folded = [" " if token == WHITESPACE_TOKEN else (fold(token) if len(token) == 1 else "") for token in vocab]
    vocab_rows, key_rows = lookup_rows(keys, folded)
    with torch.no_grad():
        embeddings[torch.from_numpy(vocab_rows)] = torch.from_numpy(vectors[key_rows] * (scale / vectors.std()))
    return len(vocab_rows)


def vocab_tokenizer(vocab_path: PathLike, do_lower_case: bool = False) -> BertTokenizerFast:
    """A BERT wordpiece tokenizer over the vocabulary file at `vocab_path`.

    bert-base-chinese's tokenizer keeps case (`do_lower_case: false`), so A–Z
    have no entries of their own and become [UNK]; that is kept, for encoders
    that match it.
    """
    return BertTokenizerFast(vocab_file=str(vocab_path), do_lower_case=do_lower_case)


def build_encoder(
    output_dir: PathLike,
    *,
    config_path: PathLike,
    vocab_path: PathLike,
    shape: EncoderShape = EncoderShape(),
    from_pretrained: Optional[str] = None,
    embeddings_only: bool = False,
    char_vectors: Optional[PathLike] = None,
    seed: int = 0,
) -> Path:
    """Write an encoder directory that `from_pretrained` and spacy-transformers load.

    char_vectors: a character table whose vectors initialise the embeddings
    (`load_char_vectors`).
    """
    if from_pretrained is None:
        if embeddings_only:
            raise ValueError("--embeddings-only needs --from-pretrained")
        model = random_encoder(config_path, shape, seed)
        tokenizer = vocab_tokenizer(vocab_path)
    else:
        if embeddings_only:
            model = embeddings_only_encoder(from_pretrained, shape, seed)
        else:
            if (shape.hidden, shape.heads, shape.intermediate) != (None, None, None):
                raise ValueError("a pretrained encoder keeps its sizes; only --layers may change")
            model = truncated_encoder(from_pretrained, shape.layers)
        tokenizer = AutoTokenizer.from_pretrained(from_pretrained)
    if char_vectors is not None:
        vocab = tokenizer.get_vocab()
        load_char_vectors(model, sorted(vocab, key=vocab.__getitem__), char_vectors)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
