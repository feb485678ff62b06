"""Registered, versioned model architectures: encoder → emissions → sequence head.

The model maps Docs to per-token emission scores, `List[Floats2d]`, one row per
token and one column per tag. Its last layer, found by `model.get_ref("head")`,
is the sequence head (`crf.CRFHead` or `crf.SoftmaxHead`): an identity on the
emissions that owns the head's torch module, so that its parameters are
serialised, moved to the GPU and updated by the optimizer like any other. Its
shim saves the module's class and size with the weights and rebuilds it from
them on load (as spacy-transformers' `HFShim.from_bytes` does), so a pipe
loads without knowing its tag count first. The pipe calls the module for the
loss and for decoding.

The number of tags is not known when the model is built: the pipe reads the
labels from data at `initialize` (or from disk) and calls `set_num_tags`.
"""

import io
from typing import Callable, List, Optional, Tuple, Type

import srsly
import torch
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Linear, Model, Optimizer, PyTorchShim, chain, get_torch_default_device, with_array
from thinc.types import Floats2d
from torch import nn

from .crf import CRFHead, SoftmaxHead


@registry.architectures("spacy_bert_crf.CRFTagger.v1")
def build_crf_tagger(
    tok2vec: Model[List[Doc], List[Floats2d]],
    nO: Optional[int] = None,
    crf_learn_rate_scale: float = 10.0,
) -> Model[List[Doc], List[Floats2d]]:
    """Encoder → linear emissions → linear-chain CRF.

    crf_learn_rate_scale: the CRF's learning rate as a multiple of the rest of
    the model's. The transitions are few and start far from useful, so they
    learn faster than the encoder (the report used 10, and recommends up to
    100).
    """
    return _build_tagger(tok2vec, nO, CRFHead, crf_learn_rate_scale)


@registry.architectures("spacy_bert_crf.SoftmaxTagger.v1")
def build_softmax_tagger(
    tok2vec: Model[List[Doc], List[Floats2d]], nO: Optional[int] = None
) -> Model[List[Doc], List[Floats2d]]:
    """Encoder → linear emissions → independent softmax per token."""
    return _build_tagger(tok2vec, nO, SoftmaxHead, 1.0)


def _build_tagger(
    tok2vec: Model[List[Doc], List[Floats2d]],
    nO: Optional[int],
    head_class: Type[nn.Module],
    learn_rate_scale: float,
) -> Model[List[Doc], List[Floats2d]]:
    output = with_array(Linear(nO=nO))
    head = sequence_head(head_class, nO, learn_rate_scale)
    model = chain(tok2vec, output, head)
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("output", output.layers[0])
    model.set_ref("head", head)
    return model


def set_num_tags(model: Model, num_tags: int) -> None:
    """Size the emission layer and the head for `num_tags` tags."""
    for name in ("output", "head"):
        layer = model.get_ref(name)
        if layer.has_dim("nO") is not True or layer.get_dim("nO") != num_tags:
            layer.set_dim("nO", num_tags, force=True)


def head_module(model: Model) -> nn.Module:
    """The torch module (CRFHead or SoftmaxHead) of an initialised model."""
    if not has_head_module(model):
        raise ValueError("The sequence head has no module yet: initialize the model first.")
    return model.get_ref("head").shims[0]._model


def has_head_module(model: Model) -> bool:
    """Whether the model's sequence head has been initialised (or loaded)."""
    return model.get_ref("head").shims[0]._model is not None


def sequence_head(
    head_class: Type[nn.Module], nO: Optional[int], learn_rate_scale: float
) -> Model[List[Floats2d], List[Floats2d]]:
    """A thinc layer that passes emissions through and owns a head module."""
    shim = LearnRateScaledShim(
        None, learn_rate_scale, serialize_model=_serialize_head, deserialize_model=_deserialize_head
    )
    return Model(
        "sequence_head",
        _identity_forward,
        init=_init_sequence_head,
        dims={"nO": nO},
        shims=[shim],
        attrs={"head_class": head_class.__name__},
    )


_HEAD_CLASSES = {cls.__name__: cls for cls in (CRFHead, SoftmaxHead)}


def _identity_forward(model: Model, emissions: List[Floats2d], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    return emissions, lambda d_emissions: d_emissions


def _init_sequence_head(model: Model, X=None, Y=None) -> None:
    # Like any thinc init, this (re)creates the parameters, at the current size.
    module = _HEAD_CLASSES[model.attrs["head_class"]](model.get_dim("nO"))
    model.shims[0]._model = module.to(get_torch_default_device())


def _serialize_head(module: nn.Module) -> bytes:
    state = io.BytesIO()
    torch.save(module.state_dict(), state)
    return srsly.msgpack_dumps({"class": type(module).__name__, "num_tags": module.num_tags, "state": state.getvalue()})


def _deserialize_head(_module: Optional[nn.Module], data: bytes, device: torch.device) -> nn.Module:
    saved = srsly.msgpack_loads(data)
    module = _HEAD_CLASSES[saved["class"]](saved["num_tags"])
    module.load_state_dict(torch.load(io.BytesIO(saved["state"]), map_location=device))
    return module.to(device)


class LearnRateScaledShim(PyTorchShim):
    """A PyTorchShim whose parameters take `learn_rate_scale` times the learning rate.

    thinc gives every parameter the optimizer's one learning rate. Scaling the
    gradients instead would do nothing under Adam, which divides the gradient
    by its own running magnitude; `Optimizer.__call__` takes an `lr_scale`, so
    the update step here passes it for every parameter of this module.
    """

    def __init__(self, module: Optional[nn.Module], learn_rate_scale: float, **kwargs):
        super().__init__(module, **kwargs)
        self.learn_rate_scale = learn_rate_scale

    def finish_update(self, optimizer: Optimizer) -> None:
        super().finish_update(_LearnRateScaled(optimizer, self.learn_rate_scale))


class _LearnRateScaled:
    """Stands in for an Optimizer, multiplying the `lr_scale` of every call."""

    def __init__(self, optimizer: Optimizer, scale: float):
        self.optimizer = optimizer
        self.scale = scale

    def __call__(self, key, weights, gradient, *, lr_scale: float = 1.0):
        return self.optimizer(key, weights, gradient, lr_scale=lr_scale * self.scale)
