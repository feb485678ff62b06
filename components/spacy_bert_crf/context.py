"""A bidirectional LSTM on top of the encoder's layers (BERT-BiLSTM-CRF).

Why an LSTM on top of a transformer: the offline encoder is one layer deep,
and one layer of attention gives each character a single look at its
context. A recurrent layer reads the text in order, which is what
boundaries and the inside of long names depend on, at a small cost on the
CPU. With bert-base-chinese the twelve layers do that work, and the LSTM is
left out (`lstm_width = 0`).

It is the encoder's last layer (`char_encoder.CharBert`), as spaCy's own
Tok2Vec ends in an encoding layer, so it reads the same windows as the
attention does and travels in the same saved module. thinc's `PyTorchLSTM`
runs over padded batches without packing them: the backward direction of a
short window would start in its padding, and a text's entities would depend
on which texts share its batch. Here the windows are packed, so each is read
over its own length only.
"""

import torch
from torch import nn


class PackedBiLSTM(nn.Module):
    """A one-layer bidirectional LSTM over padded rows, each read over its own length."""

    def __init__(self, width_in: int, width_out: int):
        super().__init__()
        if width_out % 2:
            raise ValueError(f"a bidirectional LSTM's width is two halves; got an odd {width_out}")
        self.width_out = width_out
        self.lstm = nn.LSTM(width_in, width_out // 2, batch_first=True, bidirectional=True)

    def forward(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(rows, positions, width_out) from (rows, positions, width_in); past a row's length, zeros."""
        packed = nn.utils.rnn.pack_padded_sequence(padded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        output, _ = self.lstm(packed)
        output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=padded.shape[1])
        return output
