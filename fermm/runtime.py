"""ONNX Runtime for the small CNNs' inference: same outputs as PyTorch, less per-call overhead.

At batch 1 a CNN's time in PyTorch eager is mostly per-operator dispatch; ONNX Runtime runs the same
graph with fused conv + batch-norm + ReLU kernels (``bench/latency.py`` measures both). The graph is
exported in memory when a model is loaded for inference; training and Grad-CAM keep using PyTorch.
Set ``FERMM_RUNTIME=torch`` to turn it off.
"""
from __future__ import annotations

import io
import logging
import os
import warnings

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


def wanted() -> bool:
    """True unless ``FERMM_RUNTIME=torch`` (the only other value, ``onnx``, is the default)."""
    choice = os.environ.get("FERMM_RUNTIME", "onnx").lower()
    if choice not in ("onnx", "torch"):
        raise ValueError(f"FERMM_RUNTIME={choice!r}: expected 'onnx' or 'torch'")
    return choice == "onnx"


class OnnxForward:
    """A frozen copy of ``module``'s forward pass, (N, C, H, W) float tensor -> (N, K) logits tensor.

    The copy does not follow later changes of the module's weights; re-create it after training.
    """

    def __init__(self, module: nn.Module, example: torch.Tensor, threads: int | None = None):
        import onnxruntime as ort

        buf = io.BytesIO()
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice, not actionable here
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), example.float().contiguous(), buf, input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
                              dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])

    def __deepcopy__(self, memo: dict) -> "OnnxForward":
        return self  # read-only session: copies of a model (e.g. for EMA) may share it

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(x.detach().float().numpy())
        return torch.from_numpy(self.session.run(None, {"x": x})[0])


def try_onnx(module: nn.Module, example: torch.Tensor) -> OnnxForward | None:
    """An :class:`OnnxForward` for ``module``, or None (PyTorch then runs it) when turned off or failing."""
    if not wanted():
        return None
    try:
        return OnnxForward(module, example)
    except Exception as e:  # missing onnxruntime or an unexportable layer: slower, never broken
        log.warning("ONNX Runtime not used for %s (%s: %s); running in PyTorch", type(module).__name__,
                    type(e).__name__, e)
        return None
