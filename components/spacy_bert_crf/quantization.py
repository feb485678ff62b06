"""int8 dynamic quantisation of the encoder, for CPU inference (the pipe's `quantize` setting).

torch's dynamic quantisation keeps each `nn.Linear`'s weights as int8 and
quantises its inputs batch by batch, so the encoder's matrix products, which
are most of its CPU time, run in int8. The embeddings, the bigram table and the
CRF stay in fp32. The result is for inference only: a quantised module has no
gradients, and its packed int8 weights are not what the encoder's loader
reads, so the pipe refuses to train or save once quantised.

This is `torch.ao.quantization.quantize_dynamic`, which torch has deprecated
for torchao but still ships (and runs on x86 and ARM CPUs) in the pinned 2.13;
its deprecation warnings are silenced here, once, where we chose it.
"""

import warnings

import torch
from thinc.api import Model, PyTorchShim
from torch import nn


def quantize_linear_layers(model: Model) -> None:
    """Quantise, in place, the `nn.Linear` layers of every torch module in `model`."""
    for node in model.walk():
        for shim in node.shims:
            module = getattr(shim, "_model", None)
            if not isinstance(shim, PyTorchShim) or module is None:
                continue
            device = next(module.parameters(), torch.empty(0)).device
            if device.type != "cpu":
                raise ValueError(
                    f"quantize is int8 inference on the CPU; layer '{node.name}' is on {device}. "
                    "Load the pipeline on the CPU (no spacy.require_gpu) to quantise it."
                )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
                warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor.*deprecated")
                torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
