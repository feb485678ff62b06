"""A bidirectional LSTM between the encoder and the emissions (BERT-BiLSTM-CRF).

Why an LSTM on top of a transformer: the offline encoder is one layer deep,
and one layer of attention gives each character a single look at its
context. A recurrent layer reads the sentence in order, which is what
boundaries and the inside of long names depend on, at a small cost on the
CPU. With bert-base-chinese the twelve layers do that work, and the layer is
left out (width 0).

thinc's `PyTorchLSTM` runs over padded batches without packing them, so the
backward direction of a short Doc would start in its padding, and a Doc's
entities would depend on which Docs share its batch. Here the sequences are
packed: each Doc is read over its own length only.

The module is built at `initialize`, when the encoder's width is known, and
its shim saves its sizes with the weights, so a saved pipe rebuilds it
without the encoder (as `architectures.sequence_head` does for the head).
"""

import io
from typing import Callable, List, Optional, Tuple

import srsly
import torch
from thinc.api import ArgsKwargs, Model, PyTorchShim, get_torch_default_device, torch2xp, xp2torch
from thinc.types import Floats2d
from torch import nn


class PackedBiLSTM(nn.Module):
    """A one-layer bidirectional LSTM over padded rows, each read over its own length."""

    def __init__(self, width_in: int, width_out: int):
        super().__init__()
        if width_out % 2:
            raise ValueError(f"a bidirectional LSTM's width is two halves; got an odd {width_out}")
        self.width_in = width_in
        self.width_out = width_out
        self.lstm = nn.LSTM(width_in, width_out // 2, batch_first=True, bidirectional=True)

    def forward(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
        output, _ = self.lstm(packed)
        output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=padded.shape[1])
        return output


def bilstm(width: int) -> Model[List[Floats2d], List[Floats2d]]:
    """A thinc layer: one `width`-wide vector per token from a packed BiLSTM over each Doc's vectors."""
    shim = PyTorchShim(None, serialize_model=_serialize, deserialize_model=_deserialize)
    return Model("bilstm", _forward, init=_init, dims={"nI": None, "nO": width}, shims=[shim])


def _init(model: Model, X: Optional[List[Floats2d]] = None, Y=None) -> None:
    if X is not None:
        model.set_dim("nI", X[0].shape[1], force=True)
    module = PackedBiLSTM(model.get_dim("nI"), model.get_dim("nO"))
    model.shims[0]._model = module.to(get_torch_default_device())


def _forward(model: Model, rows: List[Floats2d], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    shim = model.shims[0]
    lengths = [len(doc_rows) for doc_rows in rows]
    padded = xp2torch(model.ops.pad(rows), requires_grad=is_train, device=shim.device)
    inputs = ArgsKwargs(args=(padded, torch.as_tensor(lengths)), kwargs={})
    output, torch_backprop = shim(inputs, is_train)
    vectors = model.ops.unpad(torch2xp(output), lengths)

    def backprop(d_vectors: List[Floats2d]) -> List[Floats2d]:
        d_output = xp2torch(model.ops.pad(d_vectors), device=shim.device)
        torch_backprop(ArgsKwargs(args=(output,), kwargs={"grad_tensors": d_output}))
        return model.ops.unpad(torch2xp(padded.grad), lengths)

    return vectors, backprop


def _serialize(module: PackedBiLSTM) -> bytes:
    state = io.BytesIO()
    torch.save(module.state_dict(), state)
    return srsly.msgpack_dumps({"width_in": module.width_in, "width_out": module.width_out, "state": state.getvalue()})


def _deserialize(_module: Optional[PackedBiLSTM], data: bytes, device: torch.device) -> PackedBiLSTM:
    saved = srsly.msgpack_loads(data)
    module = PackedBiLSTM(saved["width_in"], saved["width_out"])
    module.load_state_dict(torch.load(io.BytesIO(saved["state"]), map_location=device))
    return module.to(device)
