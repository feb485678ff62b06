"""A bidirectional LSTM on top of the encoder's layers (BERT-BiLSTM-CRF).

Why an LSTM on top of a transformer: the offline encoder is one layer deep,
and one layer of attention gives each character a single look at its
context. A recurrent layer reads the text in order, which is what
boundaries and the inside of long names depend on, at a small cost on the
CPU. With bert-base-chinese the twelve layers do that work, and the LSTM is
left out (`lstm_width = 0`).

It is the encoder's last layer (`char_encoder.CharBert`), as spaCy's own
Tok2Vec ends in an encoding layer, so it reads the same windows as the
attention does and travels in the same saved module.

Each window is read over its own length: the backward direction of a short
window must start at its last character, not in its padding, or a text's
entities would depend on which texts share its batch (thinc's `PyTorchLSTM`
runs over the padding). Packing the windows does that, but on the CPU
torch's packed LSTM is slow to train: the forward and backward pass of a
training batch (17 × 92 × 256) took 48.9 ms on one thread and 50.8 ms on two,
against 32.7 and 24.4 ms here (docs/BENCHMARKS.md). Here two one-way LSTMs
read padded rows, the backward one each row reversed within its length, so
that the padding comes last in both, where it cannot reach a real position.
"""

import torch
from torch import nn


class BiLSTM(nn.Module):
    """A one-layer bidirectional LSTM over padded rows, each read over its own length."""

    def __init__(self, width_in: int, width_out: int):
        super().__init__()
        if width_out % 2:
            raise ValueError(f"a bidirectional LSTM's width is two halves; got an odd {width_out}")
        self.width_out = width_out
        self.forward_lstm = nn.LSTM(width_in, width_out // 2, batch_first=True)
        self.backward_lstm = nn.LSTM(width_in, width_out // 2, batch_first=True)

    def forward(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(rows, positions, width_out) from (rows, positions, width_in); past a row's length, zeros."""
        positions = torch.arange(padded.shape[1], device=padded.device)
        lengths = lengths.to(padded.device).unsqueeze(1)
        inside = positions < lengths
        # Each row reversed within its length; this permutation is its own inverse.
        reversal = torch.where(inside, lengths - 1 - positions, positions).unsqueeze(-1)
        forward, _ = self.forward_lstm(padded)
        backward, _ = self.backward_lstm(padded.gather(1, reversal.expand(-1, -1, padded.shape[2])))
        backward = backward.gather(1, reversal.expand(-1, -1, backward.shape[2]))
        return torch.cat([forward, backward], dim=-1) * inside.unsqueeze(-1)
