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

from functools import lru_cache
from typing import NamedTuple, Optional, Tuple

import numpy
import torch
from torch import nn
from torchcrf import CRF

from .schemes import AllowedTransitions, allowed_transitions, inside_of_begin

# Finite rather than -inf: a row of -inf turns max/argmax into NaN arithmetic.
FORBIDDEN = -1e4


class TransitionMasks(NamedTuple):
    """`schemes.AllowedTransitions` as bool tensors on the emissions' device."""

    start: torch.Tensor
    transitions: torch.Tensor
    end: torch.Tensor
    blank_tags: torch.Tensor
    blank_transitions: torch.Tensor
    blank_end: torch.Tensor

    @classmethod
    def from_allowed(cls, allowed: AllowedTransitions, device) -> "TransitionMasks":
        return cls(*(torch.as_tensor(mask, device=device) for mask in allowed))

    @classmethod
    @lru_cache(maxsize=16)
    def for_tags(cls, tags: Tuple[str, ...], device: torch.device) -> "TransitionMasks":
        """The masks of a valid BIO sequence over `tags`, built once per tag set and device."""
        return cls.from_allowed(allowed_transitions(tags), device)


@lru_cache(maxsize=16)
def inside_tags(tags: Tuple[str, ...], device: torch.device) -> torch.Tensor:
    """`schemes.inside_of_begin` as the tensor `entity_spans` takes, built once
    per tag set and device (read-only)."""
    return torch.as_tensor(inside_of_begin(tags), device=device)


class ChainScores(NamedTuple):
    """The scores of a linear chain: a path's score is the sum of its
    emissions, its transitions, and its start and end scores.

    Where `blank` marks a token (whitespace, control characters), the
    transitions out of it are `blank_transitions` and, if it is the last one,
    the end scores are `blank_end`: that is how an entity is kept from
    starting or ending on it (`constrained`).
    """

    emissions: torch.Tensor  # (batch, time, tags)
    start: torch.Tensor  # (tags,)
    transitions: torch.Tensor  # (previous tag, next tag)
    end: torch.Tensor  # (tags,)
    blank: Optional[torch.Tensor] = None  # (batch, time) bool
    blank_transitions: Optional[torch.Tensor] = None  # (previous tag, next tag)
    blank_end: Optional[torch.Tensor] = None  # (tags,)

    def constrained(self, allowed: Optional[TransitionMasks], blank: Optional[torch.Tensor] = None) -> "ChainScores":
        """The same chain, where a forbidden transition costs more than any path
        can make up; with `blank`, no entity starts or ends on a blank token."""
        if allowed is None:
            return self
        if blank is not None and not blank.any():
            # Most batches have no blank token: keep the scans' one-matrix steps.
            blank = None
        emissions, transitions = self.emissions, self.transitions.masked_fill(~allowed.transitions, FORBIDDEN)
        blank_transitions = blank_end = None
        if blank is not None:
            emissions = emissions.masked_fill(blank.unsqueeze(2) & ~allowed.blank_tags, FORBIDDEN)
            blank_transitions = self.transitions.masked_fill(~allowed.blank_transitions, FORBIDDEN)
            blank_end = self.end.masked_fill(~(allowed.end & allowed.blank_end), FORBIDDEN)
        return ChainScores(
            emissions,
            self.start.masked_fill(~allowed.start, FORBIDDEN),
            transitions,
            self.end.masked_fill(~allowed.end, FORBIDDEN),
            blank,
            blank_transitions,
            blank_end,
        )

    def transitions_after(self, step: int) -> torch.Tensor:
        """Transition scores from `step` to the next: (tags, tags), or (batch, tags, tags) with blanks."""
        if self.blank is None:
            return self.transitions
        return torch.where(self.blank[:, step, None, None], self.blank_transitions, self.transitions)

    def end_at(self, rows: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """End scores (n, tags) of sequences `rows` whose last step is `last`."""
        if self.blank is None:
            return self.end.expand(len(rows), -1)
        return torch.where(self.blank[rows, last].unsqueeze(1), self.blank_end, self.end)


def viterbi_decode(chain: ChainScores, mask: torch.Tensor, allowed: Optional[TransitionMasks] = None) -> torch.Tensor:
    """Best tag sequences for a padded batch, as a (batch, time) long tensor.

    mask: (batch, time) bool, each row a prefix of ones (and its first step
    on). Padding positions are returned as 0.

    The forward pass runs over the padding too and keeps every step's scores,
    so that each row's final scores are read at its own last step instead of
    masking every step; a step's emissions are added after the max over the
    previous tag, on which they do not depend. The traceback is numpy's:
    for small arrays an index costs a microsecond, against several for a
    torch op, and each Python-level step of either loop costs a few ops.
    """
    chain = chain.constrained(allowed, chain.blank)
    emissions = chain.emissions
    batch_size, n_steps, n_tags = emissions.shape
    if n_steps == 0:
        return torch.zeros((batch_size, 0), dtype=torch.long, device=emissions.device)
    scores = emissions.new_empty((n_steps, batch_size, n_tags))
    backpointers = emissions.new_empty((n_steps, batch_size, n_tags), dtype=torch.long)
    scores[0] = score = chain.start + emissions[:, 0]
    for step in range(1, n_steps):
        # (batch, previous tag, next tag)
        best, backpointers[step] = (score.unsqueeze(2) + chain.transitions_after(step - 1)).max(dim=1)
        scores[step] = score = best + emissions[:, step]
    rows = torch.arange(batch_size, device=emissions.device)
    last = mask.sum(dim=1) - 1
    final = scores[last, rows] + chain.end_at(rows, last)
    return torch.from_numpy(
        _trace_back(backpointers.cpu().numpy(), final.argmax(dim=1).cpu().numpy(), last.cpu().numpy())
    ).to(emissions.device)


def _trace_back(backpointers: numpy.ndarray, final_tags: numpy.ndarray, last: numpy.ndarray) -> numpy.ndarray:
    """The paths that end in `final_tags` at steps `last`, from backpointers (time, batch, tags); 0 past the end."""
    n_steps, batch_size, _ = backpointers.shape
    rows = numpy.arange(batch_size)
    path = numpy.zeros((batch_size, n_steps), dtype="int64")
    current = final_tags
    for step in range(n_steps - 1, 0, -1):
        path[:, step] = current
        # Rows that end before `step` hold their final tag until they reach their own last step.
        current = numpy.where(step <= last, backpointers[step, rows, current], current)
    path[:, 0] = current
    path[numpy.arange(n_steps) > last[:, None]] = 0
    return path


def forward_backward(chain: ChainScores, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-sum-exp scores of all paths, per step and tag: (alpha, beta, log Z).

    alpha[b, t, y]: all prefixes that end in tag y at step t, its emission included;
    beta[b, t, y]: all suffixes after tag y at step t, the end score included;
    log_z[b]: all paths. exp(alpha + beta - log Z) is the marginal of tag y at t.
    Values at padding positions are undefined.

    The backward pass is the forward pass over each row reversed within its
    own length (transitions transposed), so that neither pass needs masking;
    the two run as one scan over a stacked pair, so the loop's per-step cost
    is paid once.
    """
    emissions = chain.emissions
    batch_size, n_steps, n_tags = emissions.shape
    lengths = mask.sum(dim=1)
    rows = torch.arange(batch_size, device=emissions.device)
    end = chain.end_at(rows, lengths - 1)
    blank = chain.blank
    # reverse[b, s] = lengths[b] - 1 - s: step s of the reversed row (clamped in the padding).
    reverse = (lengths.unsqueeze(1) - 1 - torch.arange(n_steps, device=emissions.device)).clamp(min=0)
    reversed_emissions = emissions.gather(1, reverse.unsqueeze(2).expand(-1, -1, n_tags))
    # Reversed, alpha's recursion over (emission + beta) runs from the end
    # score, and step s crosses the transition that leaves reversed step s.
    first = torch.stack([chain.start + emissions[:, 0], end + reversed_emissions[:, 0]])
    transitions = torch.stack([chain.transitions, chain.transitions.t()])
    blank_transitions = use_blank = None
    if blank is not None:
        blank_transitions = torch.stack([chain.blank_transitions, chain.blank_transitions.t()])
        # Step t of the forward scan leaves step t - 1.
        use_blank = torch.stack([torch.nn.functional.pad(blank[:, :-1], (1, 0)), blank.gather(1, reverse)])
    alpha, reversed_sums = _log_scan(
        first, torch.stack([emissions, reversed_emissions]), transitions, blank_transitions, use_blank
    )
    beta = (reversed_sums - reversed_emissions).gather(1, reverse.unsqueeze(2).expand(-1, -1, n_tags))
    log_z = torch.logsumexp(alpha[rows, lengths - 1] + end, dim=1)
    return alpha, beta, log_z


def _log_scan(
    first: torch.Tensor,
    emissions: torch.Tensor,
    transitions: torch.Tensor,
    other_transitions: Optional[torch.Tensor] = None,
    use_other: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """out[..., 0, :] = first; out[..., t, j] = log Σ_i exp(out[..., t-1, i] + transitions[..., i, j]) + emissions[..., t, j].

    emissions (..., batch, time, tags), first (..., batch, tags), transitions
    (..., tags, tags): the leading dimensions, if any, are independent scans
    with transitions of their own. Where use_other (..., batch, time) is set,
    that step of that row takes `other_transitions` instead.

    The scaled forward algorithm: each step is a matrix product in
    probability space, normalised to sum to one, and the logs of the
    normalisers are summed after the loop. On the CPU that is several times
    faster for these small tensors than a log-sum-exp over (batch, tags,
    tags), and it leaves five small ops per step. The transitions and each
    step's emissions are shifted by their maximum, so nothing overflows; a
    tag whose share underflows gets -inf: probability zero.
    """
    top = transitions.amax(dim=(-2, -1), keepdim=True)
    weights = (transitions - top).exp()
    other_weights = None if use_other is None else (other_transitions - top).exp()
    peaks = emissions.amax(dim=-1, keepdim=True)
    scaled_emissions = (emissions - peaks).exp()
    first_peak = first.amax(dim=-1, keepdim=True)
    current = (first - first_peak).exp()
    shares = emissions.new_empty(emissions.shape)
    normalisers = emissions.new_empty(emissions.shape[:-1] + (1,))
    normalisers[..., 0, :] = current.sum(dim=-1, keepdim=True)
    shares[..., 0, :] = current = current / normalisers[..., 0, :]
    for step in range(1, emissions.shape[-2]):
        mixed = current @ weights
        if other_weights is not None:
            mixed = torch.where(use_other[..., step].unsqueeze(-1), current @ other_weights, mixed)
        mixed = mixed * scaled_emissions[..., step, :]
        normalisers[..., step, :] = total = mixed.sum(dim=-1, keepdim=True)
        shares[..., step, :] = current = mixed / total
    # out[..., t, :] = log shares + Σ_{s ≤ t} (log normaliser_s + shift_s), where step 0's shift is
    # first's peak and each later step's is the transitions' peak and its emissions'.
    shifts = torch.cat([first_peak.unsqueeze(-2), peaks[..., 1:, :] + top.unsqueeze(-3)], dim=-2)
    return shares.log() + (normalisers.log() + shifts).cumsum(dim=-2)


def span_probabilities(chain: ChainScores, mask: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """The exact marginal probability of each span as an entity, under the chain.

    spans: (n, 5) long, rows of (batch row, first step, last step, begin tag,
    inside tag). A span's probability is that of all paths that tag its first
    step `begin`, its other steps `inside`, and the step after it anything but
    `inside`: the probability that exactly this entity is there.
    """
    if not len(spans):
        return chain.emissions.new_zeros((0,))
    alpha, beta, log_z = forward_backward(chain, mask)
    emissions, transitions = chain.emissions, chain.transitions
    row, first, last, begin, inside = spans.unbind(1)
    # Emissions summed along the inside tag: a prefix sum, read at both ends.
    cumulative = torch.nn.functional.pad(emissions.cumsum(dim=1), (0, 0, 1, 0))
    inside_emissions = cumulative[row, last + 1, inside] - cumulative[row, first + 1, inside]
    n_inside = last - first
    inside_transitions = torch.where(
        n_inside > 0,
        transitions[begin, inside] + (n_inside - 1) * transitions[inside, inside],
        torch.zeros_like(inside_emissions),
    )
    final_tag = torch.where(n_inside > 0, inside, begin)
    is_last = last == mask.sum(dim=1)[row] - 1
    after = (last + 1).clamp(max=emissions.shape[1] - 1)
    leaving_transitions = transitions[final_tag]
    if chain.blank is not None:
        leaving_transitions = torch.where(
            chain.blank[row, last].unsqueeze(1), chain.blank_transitions[final_tag], leaving_transitions
        )
    following = leaving_transitions + emissions[row, after] + beta[row, after]
    following = following.scatter(1, inside.unsqueeze(1), float("-inf"))
    ending = chain.end_at(row, last).gather(1, final_tag.unsqueeze(1)).squeeze(1)
    leaving = torch.where(is_last, ending, torch.logsumexp(following, dim=1))
    log_probability = alpha[row, first, begin] + inside_emissions + inside_transitions + leaving - log_z[row]
    return log_probability.exp().clamp(max=1.0)


def entity_spans(paths: torch.Tensor, mask: torch.Tensor, inside_of: torch.Tensor) -> torch.Tensor:
    """The entities of valid BIO tag paths, as `span_probabilities` takes them.

    paths, mask: (batch, time); inside_of[tag]: the `I-X` of a `B-X`, else -1.
    Returns (n, 5) rows of (batch row, first, last, begin tag, inside tag),
    ordered by row, then by position. In a valid path an entity is its `B-X`
    and the `I-X` that follow it, so it ends before the next step that is not
    an inside tag.
    """
    batch_size, n_steps = paths.shape
    row, first = (inside_of[paths] >= 0).logical_and(mask).nonzero(as_tuple=True)
    is_inside = torch.isin(paths, inside_of[inside_of >= 0]).logical_and(mask)
    # One column of False after each row, so that every entity finds its end in its own row.
    flat = torch.nn.functional.pad(is_inside, (0, 1)).flatten()
    stops = (~flat).nonzero().squeeze(1)
    flat_first = row * (n_steps + 1) + first
    last = stops[torch.searchsorted(stops, flat_first, right=True)] - 1 - row * (n_steps + 1)
    begin = paths[row, first]
    return torch.stack([row, first, last, begin, inside_of[begin]], dim=1)


class LogPartition(torch.autograd.Function):
    """log Z of each row of a chain, with its gradient in closed form.

    The gradient of log Z is the chain's marginals: per step and tag for the
    emissions (and the first and last steps' for the start and end scores),
    per step and tag pair for the transitions. One forward-backward pass gives
    them all. Autograd through the forward scan instead records a graph node
    for every op of every step and replays them backwards, which took about
    twice as long on the CPU for a training batch (~1,600 characters, 9 tags).
    """

    @staticmethod
    def forward(ctx, emissions, start, transitions, end, mask):
        chain = ChainScores(emissions, start, transitions, end)
        alpha, beta, log_z = forward_backward(chain, mask)
        ctx.save_for_backward(emissions, transitions, mask, alpha, beta, log_z)
        return log_z

    @staticmethod
    def backward(ctx, d_log_z):
        emissions, transitions, mask, alpha, beta, log_z = ctx.saved_tensors
        rows = torch.arange(len(mask), device=mask.device)
        lengths = mask.sum(dim=1)
        # Padding positions of alpha and beta are undefined: give them no mass.
        log_marginals = (alpha + beta - log_z[:, None, None]).masked_fill(~mask.unsqueeze(2), float("-inf"))
        marginals = log_marginals.exp() * d_log_z[:, None, None]
        # (batch, step t - 1, tag i, tag j): the path crosses i → j into step t.
        log_pairs = (
            alpha[:, :-1, :, None] + transitions + (emissions + beta)[:, 1:, None, :] - log_z[:, None, None, None]
        ).masked_fill(~mask[:, 1:, None, None], float("-inf"))
        d_transitions = torch.einsum("btij,b->ij", log_pairs.exp(), d_log_z)
        return marginals, marginals[:, 0].sum(dim=0), d_transitions, marginals[rows, lengths - 1].sum(dim=0), None


def negative_log_likelihood(chain: ChainScores, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ over the batch of log Z − score(gold path), for padded `tags` (batch, time)."""
    emissions = chain.emissions
    batch_size = emissions.shape[0]
    rows = torch.arange(batch_size, device=emissions.device)
    lengths = mask.sum(dim=1)
    log_z = LogPartition.apply(emissions, chain.start, chain.transitions, chain.end, mask)
    on = mask.to(emissions.dtype)
    gold = (emissions.gather(2, tags.unsqueeze(2)).squeeze(2) * on).sum(dim=1)
    gold = gold + (chain.transitions[tags[:, :-1], tags[:, 1:]] * on[:, 1:]).sum(dim=1)
    gold = gold + chain.start[tags[:, 0]] + chain.end[tags[rows, lengths - 1]]
    return (log_z - gold).sum()


class SequenceHead(nn.Module):
    """What both heads share: decoding and entity probabilities, over the
    `ChainScores` each head makes of the emissions."""

    def chain(self, emissions: torch.Tensor) -> ChainScores:
        raise NotImplementedError

    def decode(
        self,
        emissions: torch.Tensor,
        mask: torch.Tensor,
        allowed: Optional[TransitionMasks] = None,
        blank: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The best tag sequences that obey `allowed`; with `blank` (batch,
        time), no entity starts or ends on a blank token."""
        return viterbi_decode(self.chain(emissions).constrained(allowed, blank), mask)

    def entity_probabilities(
        self,
        emissions: torch.Tensor,
        mask: torch.Tensor,
        spans: torch.Tensor,
        allowed: Optional[TransitionMasks] = None,
        blank: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """`span_probabilities` of `spans` under the head's (constrained) chain."""
        return span_probabilities(self.chain(emissions).constrained(allowed, blank), mask, spans)


class CRFHead(SequenceHead):
    """A linear-chain CRF: learned start, end and tag-to-tag transition scores."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags
        self.crf = CRF(num_tags, batch_first=True)

    def chain(self, emissions: torch.Tensor) -> ChainScores:
        crf = self.crf
        return ChainScores(emissions.float(), crf.start_transitions, crf.transitions, crf.end_transitions)

    def loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Summed negative log-likelihood of the gold tags: pytorch-crf's
        `CRF.forward`, with the partition function computed by `_log_scan`
        (a matrix product per step rather than a log-sum-exp over tags²)."""
        return negative_log_likelihood(self.chain(emissions), tags, mask)


class SoftmaxHead(SequenceHead):
    """Independent per-token softmax: the report's BERT+Softmax baseline.

    It has no parameters. Its chain is the log-probabilities with zero
    transition scores, so its decode is the same constrained Viterbi and it
    too never emits an invalid sequence: where the per-token argmax is valid,
    it is the argmax.
    """

    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags

    def chain(self, emissions: torch.Tensor) -> ChainScores:
        log_probs = emissions.float().log_softmax(dim=-1)
        zeros = log_probs.new_zeros(self.num_tags)
        return ChainScores(log_probs, zeros, log_probs.new_zeros((self.num_tags, self.num_tags)), zeros)

    def loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(emissions[mask].float(), tags[mask], reduction="sum")
