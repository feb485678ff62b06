"""The torch side of the pipe: per-Doc emissions in, a loss and its gradient or typed entities out.

The pipe speaks thinc: one (tokens, tags) array of emission scores per Doc.
The heads of `crf.py` speak torch: padded batches with masks. `HeadAdapter`
is the one place that converts between the two, so that `pipe.py` reads like
spaCy's tagger (predict → set_annotations, get_loss) and imports no torch.

Why the head's gradients go around thinc's backprop: the loss is a function
of the emissions, the gold tags and the head's own parameters (the CRF's
transitions), and a thinc layer's forward pass has no place for gold tags.
So `loss` computes it here and calls `backward()`: that leaves the
transitions' gradients on the head's torch parameters, where the head
layer's shim applies them in `finish_update` (at its own learning rate), and
returns the emissions' gradient, which the pipe backpropagates through the
encoder with thinc as usual.
"""

from contextlib import nullcontext
from typing import Callable, ContextManager, List, NamedTuple, Optional, Sequence, Tuple

import numpy
import torch
from thinc.api import Ops, torch2xp, xp2torch
from thinc.types import Floats1d, Floats2d, Ints1d

from .crf import SequenceHead, TransitionMasks, entity_spans, inside_tags


class DocEntities(NamedTuple):
    """What the head found in one Doc."""

    tag_ids: Ints1d  # the best valid tag sequence, one id per token
    starts: Ints1d  # each entity's first token
    ends: Ints1d  # one past each entity's last token
    begin_tags: Ints1d  # each entity's `B-X` tag id (its label)
    probabilities: Floats1d  # each entity's marginal probability (zeros if not computed)

    @classmethod
    def empty(cls) -> "DocEntities":
        nothing = numpy.zeros((0,), dtype="int64")
        return cls(nothing, nothing, nothing, nothing, numpy.zeros((0,), dtype="float32"))


# Called with a stage's name ("decode", "probabilities"), it returns a context
# manager that times the stage: the benchmarks' hook (lab/measuring.py's StageSeconds).
StageTimer = Callable[[str], ContextManager]


class HeadAdapter:
    """A sequence head (`crf.CRFHead` or `crf.SoftmaxHead`) over thinc arrays, for the tags `tags`.

    `stage_timer`, if given, times decoding's two stages: the best paths
    ("decode") and the entity probabilities ("probabilities").
    """

    def __init__(self, head: SequenceHead, tags: Sequence[str], ops: Ops, stage_timer: Optional[StageTimer] = None):
        self.head = head
        self.tags = tuple(tags)
        self.ops = ops
        self.stage_timer = stage_timer

    def _stage(self, name: str) -> ContextManager:
        return self.stage_timer(name) if self.stage_timer is not None else nullcontext()

    def loss(self, emissions: List[Floats2d], gold_tag_ids: List[Ints1d]) -> Tuple[float, List[Floats2d]]:
        """The head's loss per token over the batch, and its gradient for each Doc's emissions."""
        padded = xp2torch(self.ops.pad(emissions), requires_grad=True)
        lengths = [len(rows) for rows in emissions]
        mask = _mask(lengths, padded.device)
        gold = torch.nn.utils.rnn.pad_sequence(
            [torch.as_tensor(ids, device=padded.device) for ids in gold_tag_ids], batch_first=True
        )
        loss = self.head.loss(padded, gold, mask) / mask.sum()
        loss.backward()
        return loss.item(), self.ops.unpad(torch2xp(padded.grad), lengths)

    def decode(self, emissions: List[Floats2d], blanks: List[numpy.ndarray], probabilities: bool) -> List[DocEntities]:
        """The best valid tag sequence of each Doc and its entities, with their probabilities if asked.

        `blanks` marks each Doc's whitespace and control tokens, which no
        entity may start or end on.
        """
        padded = xp2torch(self.ops.pad(emissions))
        lengths = [len(rows) for rows in emissions]
        mask = _mask(lengths, padded.device)
        blank = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(row) for row in blanks], batch_first=True)
        blank = blank.to(padded.device)
        allowed = TransitionMasks.for_tags(self.tags, padded.device)
        with torch.no_grad():
            with self._stage("decode"):
                paths = self.head.decode(padded, mask, allowed, blank)
                spans = entity_spans(paths, mask, inside_tags(self.tags, padded.device))
            if probabilities:
                with self._stage("probabilities"):
                    scores = self.head.entity_probabilities(padded, mask, spans, allowed, blank).cpu().numpy()
            else:
                scores = numpy.zeros((len(spans),), dtype="float32")
        # spans: one row per entity of the batch, (doc, first token, last token, begin tag).
        spans = spans.cpu().numpy()
        splits = numpy.cumsum(numpy.bincount(spans[:, 0], minlength=len(lengths)))[:-1]
        paths = paths.cpu().numpy()
        return [
            DocEntities(path[:length], rows[:, 1], rows[:, 2] + 1, rows[:, 3], doc_scores)
            for path, length, rows, doc_scores in zip(
                paths, lengths, numpy.split(spans, splits), numpy.split(scores, splits)
            )
        ]


def _mask(lengths: Sequence[int], device: torch.device) -> torch.Tensor:
    lengths = torch.as_tensor(lengths, device=device)
    return torch.arange(int(lengths.max()), device=device) < lengths.unsqueeze(1)
