"""The BiLSTM on top of the encoder: each window read over its own length, in both directions."""

import pytest
import torch

from spacy_bert_crf.context import BiLSTM


@pytest.fixture
def lstm():
    torch.manual_seed(0)
    return BiLSTM(6, 8).eval()


def padded(lengths, width=6):
    rows = torch.zeros(len(lengths), max(lengths), width)
    for k, length in enumerate(lengths):
        rows[k, :length] = torch.randn(length, width)
    return rows


@torch.no_grad()
def test_a_row_reads_the_same_alone_and_beside_longer_ones(lstm):
    """The backward direction starts at each row's own last position, not in its padding."""
    lengths = [2, 7, 5]
    rows = padded(lengths)
    together = lstm(rows, torch.tensor(lengths))
    assert together.shape == (3, 7, 8)
    for k, length in enumerate(lengths):
        alone = lstm(rows[k : k + 1, :length], torch.tensor([length]))
        torch.testing.assert_close(together[k, :length], alone[0], atol=1e-6, rtol=0)
        assert not together[k, length:].any()


@torch.no_grad()
def test_each_direction_sees_the_whole_row(lstm):
    rows = padded([6])
    changed_last, changed_first = rows.clone(), rows.clone()
    changed_last[0, -1] += 1.0
    changed_first[0, 0] += 1.0
    base, last, first = (lstm(x, torch.tensor([6]))[0] for x in (rows, changed_last, changed_first))
    # The first position's backward half hears of the last one, its forward half does not; and the other way round.
    assert not torch.allclose(base[0, 4:], last[0, 4:]) and torch.equal(base[0, :4], last[0, :4])
    assert not torch.allclose(base[-1, :4], first[-1, :4]) and torch.equal(base[-1, 4:], first[-1, 4:])


def test_an_odd_width_is_refused():
    with pytest.raises(ValueError, match="two halves"):
        BiLSTM(4, 5)
