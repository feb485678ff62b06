"""The `bert_crf_ner` pipe: a transformer encoder, emission scores and a CRF, setting `doc.ents`."""

import warnings
from itertools import islice
from typing import Callable, Iterable, List, Optional, Sequence, Sized, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline.trainable_pipe import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, set_dropout_rate
from thinc.types import Floats2d

from .architectures import has_head_module, head_module, set_num_tags
from .char_inputs import is_blank
from .gold import UnknownTagError, aligned_iob, tag_ids
from .heads import DocEntities, HeadAdapter, StageTimer
from .quantization import quantize_linear_layers
from .schemes import bio_tags, parse_tag
from .scoring import score_ner

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_bert_crf.CRFTagger.v1"
crf_learn_rate_scale = 10.0

[model.tok2vec]
@architectures = "spacy_bert_crf.CharBertEncoder.v3"
name = "bert-base-chinese"
bigram_vectors = null
lexicon = null
window = 256
stride = 192
mixed_precision = false
bigram_buckets = 0
lstm_width = 0
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]


@Language.factory(
    "bert_crf_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": DEFAULT_MODEL,
        "spans_key": "ents",
        "encoder_sub_batches": 4,
        "quantize": False,
        "scorer": {"@scorers": "spacy_bert_crf.ner_scorer.v1"},
    },
    default_score_weights={
        "ents_f": 1.0,
        "ents_p": 0.0,
        "ents_r": 0.0,
        "ents_tag_acc": 0.0,
        "ents_per_type": None,
    },
)
def make_bert_crf_ner(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats2d]],
    spans_key: Optional[str],
    encoder_sub_batches: int,
    quantize: bool,
    scorer: Optional[Callable],
) -> "BertCrfNer":
    """Create a `bert_crf_ner` pipe: BIO tagging with a CRF (or softmax) head.

    spans_key: where the entities also go with their probabilities, as
    `doc.spans[spans_key]` with `.attrs["scores"]` (spancat's layout); None
    skips computing them.
    encoder_sub_batches: at prediction, each batch is sorted by length and
    encoded in this many sub-batches, so that short texts are not padded to
    the longest (as spaCy's parser does); decoding takes the whole batch.
    quantize: when the pipe is loaded, quantise the encoder's linear layers to
    int8 (quantization.py), for CPU inference; set it at load time, e.g.
    `spacy.load(path, config={"components": {name: {"quantize": True}}})`.
    A quantised pipe predicts, and cannot be trained or saved.
    """
    return BertCrfNer(
        nlp.vocab,
        model,
        name,
        spans_key=spans_key,
        encoder_sub_batches=encoder_sub_batches,
        quantize=quantize,
        scorer=scorer,
    )


def blank_tokens(doc: Doc) -> numpy.ndarray:
    """Which tokens are whitespace or control characters: an entity may hold them, never start or end on them."""
    return numpy.fromiter((is_blank(token.text) for token in doc), dtype=bool, count=len(doc))


def length_sorted_splits(items: Sequence[Sized], indices: Sequence[int], n_splits: int) -> List[List[int]]:
    """`indices` sorted by the length of their item (Doc or text), in `n_splits` runs of near-equal size."""
    ordered = sorted(indices, key=lambda i: len(items[i]))
    return [[int(i) for i in split] for split in numpy.array_split(ordered, max(1, n_splits)) if len(split)]


class BertCrfNer(TrainablePipe):
    """Named-entity recognition as BIO tagging of every token.

    The model gives emission scores per token and tag; the sequence head
    (`model.get_ref("head")`) turns them into a loss and into the best valid
    BIO sequence. The labels are entity types (`PER`, `LOC`, …), read from the
    training data at `initialize`; the tags are `O` and `B-X`/`I-X` for each.

    Each entity's probability is its exact marginal under the head's chain
    (forward-backward): the probability that exactly this span, with this
    type, is an entity. With `spans_key` set, `doc.spans[spans_key]` holds the
    entities and `.attrs["scores"]` their probabilities, in the same order.
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], List[Floats2d]],
        name: str = "bert_crf_ner",
        *,
        spans_key: Optional[str] = "ents",
        encoder_sub_batches: int = 4,
        quantize: bool = False,
        scorer: Optional[Callable] = score_ner,
    ):
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        # Only the labels are saved with the pipe (cfg): the settings are the
        # config's, so a user's load-time override of them holds.
        self.cfg = {"labels": []}
        self.spans_key = spans_key
        self.encoder_sub_batches = encoder_sub_batches
        self.quantize = quantize
        # Whether the encoder's weights are int8 now: set once, by from_disk or from_bytes.
        self.quantized = False
        # Training tokens without a gold tag, trained as `O`: counted over the
        # run, and reported at its end by the training logger.
        self.tokens_without_gold = 0
        # Times the head's decoding stages when set (heads.StageTimer): the benchmarks' hook.
        self.stage_timer: Optional[StageTimer] = None

    @property
    def labels(self) -> Tuple[str, ...]:
        """The entity types this pipe predicts."""
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        """The labels, as saved by `spacy init labels`."""
        return list(self.labels)

    @property
    def tags(self) -> List[str]:
        """The BIO tags, in the order of the model's output columns."""
        return bio_tags(self.labels)

    def add_label(self, label: str) -> int:
        """Add an entity type before the model is initialised."""
        if label in self.labels:
            return 0
        if has_head_module(self.model):
            raise ValueError(f"Cannot add label {label!r} to '{self.name}': its model is already initialised.")
        self.cfg["labels"].append(label)
        return 1

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
    ) -> None:
        """Read the entity types from the data (or take `labels`) and size the model."""
        validate_get_examples(get_examples, "BertCrfNer.initialize")
        if self.quantize:
            raise ValueError(
                f"'{self.name}' has quantize = true, which is for loading a trained pipe for CPU "
                "inference; train with quantize = false."
            )
        if labels is None:
            labels = sorted({ent.label_ for example in get_examples() for ent in example.reference.ents})
        self.cfg["labels"] = list(dict.fromkeys(labels))
        if not self.labels:
            raise ValueError(
                f"'{self.name}' found no entities in its training data, so it has no labels "
                "to learn. Check that the training Docs have `doc.ents` set."
            )
        set_num_tags(self.model, len(self.tags))
        doc_sample = list(islice((eg.x for eg in get_examples() if len(eg.x)), 10))
        self.model.initialize(X=doc_sample)

    def predict(self, docs: Iterable[Doc]) -> List[DocEntities]:
        """For each Doc, the best valid BIO sequence of tag ids, its entities,
        and their probabilities (none without a `spans_key`). No side effects."""
        docs = list(docs)
        prediction = [DocEntities.empty() for _ in docs]
        # Empty Docs have no rows for the encoder to fill, so they skip the model.
        non_empty = [i for i, doc in enumerate(docs) if len(doc)]
        if non_empty:
            emissions = {}
            for sub_batch in length_sorted_splits(docs, non_empty, self.encoder_sub_batches):
                emissions.update(zip(sub_batch, self.model.predict([docs[i] for i in sub_batch])))
            decoded = self.head.decode(
                [emissions[i] for i in non_empty],
                [blank_tokens(docs[i]) for i in non_empty],
                probabilities=self.spans_key is not None,
            )
            for i, found in zip(non_empty, decoded):
                prediction[i] = found
        return prediction

    def set_annotations(self, docs: Iterable[Doc], prediction: List[DocEntities]) -> None:
        """Set `doc.ents` from the predicted entities, replacing earlier ones,
        and `doc.spans[spans_key]` with their probabilities."""
        labels = [parse_tag(tag)[0].label for tag in self.tags]
        for doc, found in zip(docs, prediction):
            spans = [
                Span(doc, start, end, label=labels[tag])
                for start, end, tag in zip(found.starts.tolist(), found.ends.tolist(), found.begin_tags.tolist())
            ]
            doc.ents = spans
            if self.spans_key is not None:
                doc.spans[self.spans_key] = SpanGroup(
                    doc, name=self.spans_key, spans=spans, attrs={"scores": found.probabilities}
                )

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd=None,
        losses=None,
    ):
        """Learn from a batch of examples; add the loss to `losses[self.name]`."""
        self._refuse_if_quantized("update")
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "BertCrfNer.update")
        examples = [eg for eg in examples if len(eg.predicted)]
        if not examples:
            return losses
        set_dropout_rate(self.model, drop)
        emissions, backprop = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_emissions = self.get_loss(examples, emissions)
        backprop(d_emissions)
        if sgd not in (None, False):
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], emissions: List[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """The head's loss per token, and its gradient for the emissions.

        For the CRF head the loss *is* the CRF: computing it also puts the
        gradients of the transition scores on the head's parameters, where
        `finish_update` applies them (with their own learning rate; see heads.py).
        """
        examples = list(examples)
        validate_examples(examples, "BertCrfNer.get_loss")
        tags = self.tags
        return self.head.loss(emissions, [self._gold_tag_ids(eg, tags) for eg in examples])

    def score(self, examples: Iterable[Example], **kwargs):
        """The scorer's entity P/R/F and token accuracy, with the calibration
        of the probabilities in `doc.spans[spans_key]` where they are kept."""
        return super().score(examples, **{"spans_key": self.spans_key, **kwargs})

    def to_bytes(self, *, exclude=tuple()):
        self._refuse_if_quantized("to_bytes")
        return super().to_bytes(exclude=exclude)

    def to_disk(self, path, *, exclude=tuple()):
        self._refuse_if_quantized("to_disk")
        return super().to_disk(path, exclude=exclude)

    def from_bytes(self, bytes_data, *, exclude=tuple()):
        super().from_bytes(bytes_data, exclude=exclude)
        self._quantize_if_set()
        return self

    def from_disk(self, path, *, exclude=tuple()):
        super().from_disk(path, exclude=exclude)
        self._quantize_if_set()
        return self

    def _quantize_if_set(self) -> None:
        if self.quantize and not self.quantized:
            quantize_linear_layers(self.model.get_ref("tok2vec"))
            self.quantized = True

    def _refuse_if_quantized(self, method: str) -> None:
        if self.quantized:
            raise ValueError(
                f"'{self.name}' was loaded with quantize = true: its encoder is int8, for inference only, "
                f"so {method} is not possible. Load the pipeline without quantize to train or save it."
            )

    @property
    def head(self) -> HeadAdapter:
        """The sequence head of the initialised model, over thinc arrays."""
        return HeadAdapter(head_module(self.model), self.tags, self.model.ops, self.stage_timer)

    def _gold_tag_ids(self, example: Example, tags: Sequence[str]) -> numpy.ndarray:
        """The reference's BIO tag ids, aligned to the predicted tokens (gold.py).

        Tokens without gold annotation (missing or misaligned) count as `O`:
        a CRF needs a complete sequence. The first Doc that has any says so,
        once per pipe, so that a long run does not repeat it every step;
        `tokens_without_gold` counts them all.
        """
        codes, types = aligned_iob(example)
        try:
            ids, missing = tag_ids(codes, types, tags, example.reference.vocab.strings)
        except UnknownTagError as error:
            raise ValueError(
                f"'{self.name}' has no label {error.label!r}: its labels are {list(self.labels)}. "
                "Initialise it on data that has every entity type."
            ) from None
        if missing and not self.tokens_without_gold:
            warnings.warn(
                f"'{self.name}': {missing} of {len(ids)} tokens of a training Doc have no gold entity tag; "
                "they are trained as 'O' (said once, for the first such Doc; the run's total comes at its end)."
            )
        self.tokens_without_gold += missing
        return ids
