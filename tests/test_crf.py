import itertools
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.training.iob_utils import iob_to_biluo

from spacy_bert_crf.crf import CRFHead, SoftmaxHead, TransitionMasks, entity_spans
from spacy_bert_crf.schemes import allowed_transitions, bio_tags, inside_of_begin, is_valid_bio

TAGS = bio_tags(["A"])  # O, B-A, I-A: small enough to enumerate every sequence
ALLOWED = TransitionMasks.from_allowed(allowed_transitions(tuple(TAGS)), "cpu")


def random_batch(seed, batch_size, n_steps, n_tags):
    generator = torch.Generator().manual_seed(seed)
    emissions = torch.randn(batch_size, n_steps, n_tags, generator=generator) * 3
    lengths = torch.randint(1, n_steps + 1, (batch_size,), generator=generator)
    mask = torch.arange(n_steps) < lengths.unsqueeze(1)
    return emissions, mask, lengths


def random_head(seed, n_tags):
    torch.manual_seed(seed)
    head = CRFHead(n_tags)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.normal_(0, 2)
    return head


def path_score(head, emissions, path):
    crf = head.crf
    score = crf.start_transitions[path[0]] + crf.end_transitions[path[-1]]
    score = score + sum(emissions[t, tag] for t, tag in enumerate(path))
    score = score + sum(crf.transitions[i, j] for i, j in zip(path[:-1], path[1:]))
    return float(score.detach())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_tags=st.integers(2, 4), n_steps=st.integers(1, 6))
def test_unconstrained_viterbi_equals_pytorch_crf(seed, n_tags, n_steps):
    emissions, mask, lengths = random_batch(seed, 5, n_steps, n_tags)
    head = random_head(seed, n_tags)
    ours = head.decode(emissions, mask)
    reference = head.crf.decode(emissions, mask)
    for row, length, expected in zip(ours, lengths, reference):
        assert row[:length].tolist() == expected
        assert not row[length:].any()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_steps=st.integers(1, 6))
def test_constrained_viterbi_is_the_best_valid_sequence(seed, n_steps):
    emissions, mask, lengths = random_batch(seed, 4, n_steps, len(TAGS))
    head = random_head(seed, len(TAGS))
    paths = head.decode(emissions, mask, ALLOWED)
    for row, length, scores in zip(paths, lengths, emissions):
        path = row[:length].tolist()
        assert is_valid_bio([TAGS[i] for i in path])
        valid = [
            candidate
            for candidate in itertools.product(range(len(TAGS)), repeat=int(length))
            if is_valid_bio([TAGS[i] for i in candidate])
        ]
        best = max(path_score(head, scores, candidate) for candidate in valid)
        assert abs(path_score(head, scores, path) - best) < 1e-4


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_tags=st.integers(2, 4), n_steps=st.integers(1, 6))
def test_loss_is_pytorch_crf_negative_log_likelihood(seed, n_tags, n_steps):
    emissions, mask, lengths = random_batch(seed, 3, n_steps, n_tags)
    head = random_head(seed, n_tags)
    tags = torch.randint(0, n_tags, mask.shape, generator=torch.Generator().manual_seed(seed))
    expected = -head.crf(emissions, tags, mask, reduction="sum")
    # The loss is a difference of float32 terms of size ~10 (log Z and the gold score),
    # summed in another order than pytorch-crf's: where it is near 0 (seed 283, 2 tags,
    # 1 step: 0.0318) only an absolute tolerance holds.
    assert torch.allclose(head.loss(emissions, tags, mask), expected, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_tags=st.integers(2, 4), n_steps=st.integers(1, 6))
def test_loss_gradients_are_pytorch_crf_autograd_gradients(seed, n_tags, n_steps):
    emissions, mask, _ = random_batch(seed, 3, n_steps, n_tags)
    head = random_head(seed, n_tags)
    tags = torch.randint(0, n_tags, mask.shape, generator=torch.Generator().manual_seed(seed))
    inputs = [emissions.requires_grad_(), *head.parameters()]
    ours = torch.autograd.grad(head.loss(emissions, tags, mask), inputs)
    # With one step no transition is crossed: autograd then gives None.
    expected = torch.autograd.grad(-head.crf(emissions, tags, mask, reduction="sum"), inputs, allow_unused=True)
    for gradient, reference, tensor in zip(ours, expected, inputs):
        reference = torch.zeros_like(tensor) if reference is None else reference
        assert torch.allclose(gradient, reference, atol=1e-4)


def test_constrained_decode_never_puts_inside_after_outside():
    # Emissions that scream O then I-A: unconstrained decoding follows them.
    emissions = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 0.0, 5.0]]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    head = CRFHead(3)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.zero_()
    assert head.decode(emissions, mask).tolist() == [[0, 2, 2]]
    constrained = head.decode(emissions, mask, ALLOWED).tolist()[0]
    assert is_valid_bio([TAGS[i] for i in constrained])
    assert constrained == [0, 1, 2]


def test_softmax_head_decodes_valid_argmax():
    emissions = torch.tensor([[[0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0], [0.0, 1.0, 2.0]]])
    mask = torch.tensor([[True, True, True, True]])
    head = SoftmaxHead(3)
    # The argmax is B-A I-A O I-A; its last I-A follows O, so B-A is the best valid tag there.
    assert head.decode(emissions, mask).tolist() == [[1, 2, 0, 2]]
    assert head.decode(emissions, mask, ALLOWED).tolist() == [[1, 2, 0, 1]]
    loss = head.loss(emissions, torch.tensor([[1, 2, 0, 2]]), mask)
    expected = torch.nn.functional.cross_entropy(emissions[0], torch.tensor([1, 2, 0, 2]), reduction="sum")
    assert torch.allclose(loss, expected)


def test_empty_batch_and_padding():
    head = CRFHead(3)
    assert head.decode(torch.zeros(2, 0, 3), torch.zeros(2, 0, dtype=torch.bool)).shape == (2, 0)


TWO_TYPES = bio_tags(["A", "B"])  # O, B-A, I-A, B-B, I-B


def has_entity(path, first, last, begin, inside):
    """Whether a tag path has exactly the entity begin inside… over [first, last]."""
    body = path[first] == begin and all(tag == inside for tag in path[first + 1 : last + 1])
    return body and (last + 1 == len(path) or path[last + 1] != inside)


def every_span(length, n_types):
    return [
        (first, last, 1 + 2 * kind, 2 + 2 * kind)
        for first in range(length)
        for last in range(first, length)
        for kind in range(n_types)
    ]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_steps=st.integers(1, 5), constrained=st.booleans(), crf=st.booleans())
def test_entity_probabilities_equal_brute_force(seed, n_steps, constrained, crf):
    n_tags = len(TWO_TYPES)
    emissions, mask, lengths = random_batch(seed, 3, n_steps, n_tags)
    head = random_head(seed, n_tags) if crf else SoftmaxHead(n_tags)
    allowed = TransitionMasks.for_tags(tuple(TWO_TYPES), torch.device("cpu")) if constrained else None
    spans = [(row, *span) for row, length in enumerate(lengths.tolist()) for span in every_span(length, 2)]
    ours = head.entity_probabilities(emissions, mask, torch.tensor(spans), allowed)
    chain = [part.detach().double().numpy() for part in head.chain(emissions).constrained(allowed)[:4]]
    weights = [path_weights(chain, row, int(length)) for row, length in enumerate(lengths)]
    for (row, first, last, begin, inside), probability in zip(spans, ours.tolist()):
        entity = sum(w for path, w in weights[row].items() if has_entity(path, first, last, begin, inside))
        assert abs(probability - entity / sum(weights[row].values())) < 1e-4


def path_weights(chain, row, length):
    """exp(score) of every tag path of one row of the chain."""
    emissions, start, transitions, end = chain
    weights = {}
    for path in itertools.product(range(len(start)), repeat=length):
        score = start[path[0]] + end[path[-1]] + sum(emissions[row, t, tag] for t, tag in enumerate(path))
        weights[path] = math.exp(score + sum(transitions[i, j] for i, j in zip(path[:-1], path[1:])))
    return weights


def test_entity_probabilities_of_a_confident_chain():
    # Emissions that all but spell B-A I-A O: that entity is near certain, a shorter one near impossible.
    emissions = torch.tensor([[[0.0, 9.0, 0.0], [0.0, 0.0, 9.0], [9.0, 0.0, 0.0]]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    head = SoftmaxHead(3)
    spans = torch.tensor([[0, 0, 1, 1, 2], [0, 0, 0, 1, 2]])
    probabilities = head.entity_probabilities(emissions, mask, spans, ALLOWED).tolist()
    assert probabilities[0] > 0.99 and probabilities[1] < 0.01
    assert head.entity_probabilities(emissions, mask, torch.zeros((0, 5), dtype=torch.long)).shape == (0,)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_steps=st.integers(1, 8))
def test_entity_spans_are_the_entities_of_the_paths(seed, n_steps):
    emissions, mask, lengths = random_batch(seed, 4, n_steps, len(TWO_TYPES))
    allowed = TransitionMasks.for_tags(tuple(TWO_TYPES), torch.device("cpu"))
    paths = random_head(seed, len(TWO_TYPES)).decode(emissions, mask, allowed)
    inside_of = torch.tensor(inside_of_begin(tuple(TWO_TYPES)))
    spans = entity_spans(paths, mask, inside_of).tolist()
    expected = []
    for row, path in enumerate(paths.tolist()):
        tags = [TWO_TYPES[i] for i in path[: int(mask[row].sum())]]
        biluo = iob_to_biluo(tags)
        for first, tag in enumerate(biluo):
            if tag[0] in "BU":
                last = first if tag[0] == "U" else next(i for i in range(first, len(biluo)) if biluo[i][0] == "L")
                begin = TWO_TYPES.index("B-" + tag[2:])
                expected.append([row, first, last, begin, begin + 1])
    assert spans == expected


def obeys_blanks(path, blank):
    """Valid BIO, and no entity that starts or ends on a blank step."""
    tags = [TWO_TYPES[i] for i in path] + ["O"]
    if not is_valid_bio(tags):
        return False
    starts = [t for t, tag in enumerate(tags) if tag.startswith("B")]
    ends = [t for t, tag in enumerate(tags[:-1]) if tag != "O" and not tags[t + 1].startswith("I")]
    return not any(blank[t] for t in starts + ends)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_steps=st.integers(1, 5), crf=st.booleans(), blank_bits=st.integers(0, 2**15))
def test_no_entity_starts_or_ends_on_a_blank(seed, n_steps, crf, blank_bits):
    """Decoding and entity probabilities with blank steps equal enumeration over
    the paths that obey BIO and keep every entity's edges off the blanks."""
    n_tags = len(TWO_TYPES)
    emissions, mask, lengths = random_batch(seed, 3, n_steps, n_tags)
    blank = torch.tensor([[bool(blank_bits >> (row * n_steps + t) & 1) for t in range(n_steps)] for row in range(3)])
    head = random_head(seed, n_tags) if crf else SoftmaxHead(n_tags)
    allowed = TransitionMasks.for_tags(tuple(TWO_TYPES), torch.device("cpu"))
    paths = head.decode(emissions, mask, allowed, blank)
    spans = [(row, *span) for row, length in enumerate(lengths.tolist()) for span in every_span(length, 2)]
    ours = head.entity_probabilities(emissions, mask, torch.tensor(spans), allowed, blank)
    chain = [part.detach().double().numpy() for part in head.chain(emissions)[:4]]
    weights = []
    for row, length in enumerate(lengths.tolist()):
        row_blank = blank[row, :length].tolist()
        weights.append(
            {path: w for path, w in path_weights(chain, row, length).items() if obeys_blanks(path, row_blank)}
        )
        best = max(weights[row], key=weights[row].get)
        assert paths[row, :length].tolist() == list(best)
    for (row, first, last, begin, inside), probability in zip(spans, ours.tolist()):
        entity = sum(w for path, w in weights[row].items() if has_entity(path, first, last, begin, inside))
        assert abs(probability - entity / sum(weights[row].values())) < 1e-4


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_tags=st.integers(2, 5), n_steps=st.integers(1, 12))
def test_crf_loss_and_its_gradients_equal_pytorch_crf(seed, n_tags, n_steps):
    emissions, mask, lengths = random_batch(seed, 4, n_steps, n_tags)
    tags = torch.randint(0, n_tags, mask.shape, generator=torch.Generator().manual_seed(seed)).masked_fill(~mask, 0)
    head = random_head(seed, n_tags)
    ours_input = emissions.clone().requires_grad_(True)
    reference_input = emissions.clone().requires_grad_(True)
    ours = head.loss(ours_input, tags, mask)
    ours.backward()
    ours_grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in head.parameters()]
    head.zero_grad()
    reference = -head.crf(reference_input, tags, mask, reduction="sum")
    reference.backward()
    assert torch.allclose(ours, reference, atol=1e-3, rtol=1e-5)
    assert torch.allclose(ours_input.grad, reference_input.grad, atol=1e-4)
    for got, want in zip(ours_grads, head.parameters()):
        assert torch.allclose(got, torch.zeros_like(want) if want.grad is None else want.grad, atol=1e-4)
