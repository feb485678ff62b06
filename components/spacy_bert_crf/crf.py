"""Sequence heads on top of emission scores: a linear-chain CRF and a softmax.

Both heads are torch modules with one interface, so that the pipe and the
architectures treat them alike:

- `loss(emissions, tags, mask)`: summed negative log-likelihood of the gold tags;
- `decode(emissions, mask, allowed)`: the best tag sequence that obeys `allowed`.

The CRF's parameters are pytorch-crf's (`torchcrf.CRF`), which also serves as
the reference for the likelihood. Decoding is our own batched Viterbi: pytorch-crf's
`decode` walks each sequence back in Python with `.item()` (a device sync per
step) and cannot forbid transitions. Here the traceback is a `gather` over the
whole batch, and forbidden transitions get a score no path can afford, so the
result is the best *valid* sequence rather than a repaired invalid one.
"""
from typing import NamedTuple, Optional

import torch
from torch import nn
from torchcrf import CRF

from .schemes import AllowedTransitions

# Finite rather than -inf: a row of -inf turns max/argmax into NaN arithmetic.
FORBIDDEN = -1e4


class TransitionMasks(NamedTuple):
    """`schemes.AllowedTransitions` as bool tensors on the emissions' device."""

    start: torch.Tensor
    transitions: torch.Tensor
    end: torch.Tensor

    @classmethod
    def from_allowed(cls, allowed: AllowedTransitions, device) -> "TransitionMasks":
        return cls(*(torch.as_tensor(mask, device=device) for mask in allowed))


def viterbi_decode(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    start: torch.Tensor,
    transitions: torch.Tensor,
    end: torch.Tensor,
    allowed: Optional[TransitionMasks] = None,
) -> torch.Tensor:
    """Best tag sequences for a padded batch, as a (batch, time) long tensor.

    emissions: (batch, time, tags); mask: (batch, time) bool, each row a prefix
    of ones (and its first step on). Padding positions are returned as 0.
    """
    emissions = emissions.float()
    if allowed is not None:
        start = start.masked_fill(~allowed.start, FORBIDDEN)
        transitions = transitions.masked_fill(~allowed.transitions, FORBIDDEN)
        end = end.masked_fill(~allowed.end, FORBIDDEN)
    batch_size, n_steps, _ = emissions.shape
    if n_steps == 0:
        return torch.zeros((batch_size, 0), dtype=torch.long, device=emissions.device)
    score = start + emissions[:, 0]
    backpointers = []
    for step in range(1, n_steps):
        # (batch, previous tag, next tag)
        candidates = score.unsqueeze(2) + transitions + emissions[:, step].unsqueeze(1)
        best, best_previous = candidates.max(dim=1)
        score = torch.where(mask[:, step].unsqueeze(1), best, score)
        backpointers.append(best_previous)
    score = score + end
    lengths = mask.sum(dim=1)
    current = score.argmax(dim=1)
    path = torch.empty((batch_size, n_steps), dtype=torch.long, device=emissions.device)
    # Walk back from the last step; rows shorter than `step` keep their final
    # tag until their own last step is reached.
    for step in range(n_steps - 1, 0, -1):
        path[:, step] = current
        previous = backpointers[step - 1].gather(1, current.unsqueeze(1)).squeeze(1)
        current = torch.where(step < lengths, previous, current)
    path[:, 0] = current
    return path.masked_fill(~mask, 0)


class CRFHead(nn.Module):
    """A linear-chain CRF: learned start, end and tag-to-tag transition scores."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.crf = CRF(num_tags, batch_first=True)

    def loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return -self.crf(emissions.float(), tags, mask, reduction="sum")

    def decode(
        self,
        emissions: torch.Tensor,
        mask: torch.Tensor,
        allowed: Optional[TransitionMasks] = None,
    ) -> torch.Tensor:
        crf = self.crf
        return viterbi_decode(
            emissions, mask, crf.start_transitions, crf.transitions, crf.end_transitions, allowed
        )


class SoftmaxHead(nn.Module):
    """Independent per-token softmax: the report's BERT+Softmax baseline.

    It has no parameters. Its decode is the same constrained Viterbi over
    log-probabilities with zero transition scores, so it too never emits an
    invalid sequence: where the per-token argmax is valid, it is the argmax.
    """

    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags

    def loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(emissions[mask].float(), tags[mask], reduction="sum")

    def decode(
        self,
        emissions: torch.Tensor,
        mask: torch.Tensor,
        allowed: Optional[TransitionMasks] = None,
    ) -> torch.Tensor:
        log_probs = emissions.float().log_softmax(dim=-1)
        zeros = log_probs.new_zeros(self.num_tags)
        return viterbi_decode(
            log_probs, mask, zeros, log_probs.new_zeros((self.num_tags, self.num_tags)), zeros, allowed
        )
