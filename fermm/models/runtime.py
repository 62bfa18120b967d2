"""ONNX Runtime for the small CNNs' inference: same outputs as PyTorch, less per-call overhead.

At batch 1 a CNN's time in PyTorch eager is mostly per-operator dispatch; ONNX Runtime runs the same
graph with fused conv + batch-norm + ReLU kernels (``bench/latency.py`` records which runtime it timed).
Training and Grad-CAM keep using PyTorch, and so does any model whose weights changed after the graph was made.
``FERMM_RUNTIME`` chooses, when a model is loaded for inference:

- ``auto`` (the default): the int8 graph stored beside the weights (``model.int8.onnx``, fermm.models.quantize)
  when it was made from these weights and still gives its recorded outputs; otherwise PyTorch;
- ``torch``: always PyTorch fp32;
- ``onnx``: the fp32 graph, exported in memory at load (~215 MB more app memory: the exporter's imports).
"""
from __future__ import annotations

import io
import logging
import os
import warnings
import weakref

import numpy as np
import torch
from torch import nn

from fermm.onnx_session import inference_session

log = logging.getLogger(__name__)


CHOICES = ("auto", "torch", "onnx")
NUMPY_VIEWS = ("none", "flip")  # the TTA views OnnxForward.proba makes itself


def choice() -> str:
    """``FERMM_RUNTIME``: one of :data:`CHOICES` (default ``auto``)."""
    chosen = os.environ.get("FERMM_RUNTIME", "auto").lower()
    if chosen not in CHOICES:
        raise ValueError(f"FERMM_RUNTIME={chosen!r}: expected 'auto', 'torch' or 'onnx'")
    return chosen


def wanted() -> bool:
    """True when ``FERMM_RUNTIME=onnx``: export the fp32 graph at load."""
    return choice() == "onnx"


def _stores(module: nn.Module) -> tuple[dict, ...]:
    """The dicts that hold ``module``'s parameters and buffers, one pair per submodule."""
    return tuple(d for m in module.modules() for d in (m._parameters, m._buffers))


def _fingerprint(stores: tuple[dict, ...]) -> tuple:
    # storage and in-place version of every tensor: load_state_dict, optimiser steps and .to() all change it
    return tuple((t.data_ptr(), t._version, t.dtype) for d in stores for t in d.values() if t is not None)


# Walking a module's submodules costs ~0.15 ms per call at batch 1 (a third of `fast_cnn`'s graph), so a graph keeps
# the dicts holding its module's tensors and reads them afresh on each call; it walks again only when the module is
# another object or any module anywhere has registered a submodule, parameter or buffer since (PyTorch's global
# hooks). Not seen: a submodule written straight into another's ``_modules`` dict.
_registrations = 0


def _registered(*_: object) -> None:
    global _registrations
    _registrations += 1


for _hook in (nn.modules.module.register_module_parameter_registration_hook,
              nn.modules.module.register_module_buffer_registration_hook,
              nn.modules.module.register_module_module_registration_hook):
    _hook(_registered)


def export(module: nn.Module, example: torch.Tensor) -> bytes:
    """``module``'s forward as an ONNX model (batch, height and width left free)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("error", torch.jit.TracerWarning)  # a mis-traced forward: fall back instead
        torch.onnx.export(module, example.float().contiguous(), buf, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n"}}, dynamo=False)
    return buf.getvalue()


class OnnxForward:
    """A frozen copy of an eval-mode ``module``'s forward, (N, C, H, W) CPU tensor -> (N, K) logits.

    :meth:`serves` / :meth:`holds` tell whether it still matches the module's weights (else run the module itself);
    :meth:`proba` answers a preprocessed numpy batch in the face (+ mirror) views.
    Copies and pickles of a model do not carry it (``None``): they may change their weights.
    """

    def __init__(self, module: nn.Module, example: torch.Tensor, graph: bytes | None = None,
                 precision: str = "fp32"):
        """``graph``: an ONNX model of ``module`` made elsewhere (e.g. int8, fermm.models.quantize) in ``precision``;
        by default ``module`` is exported here."""
        if module.training:
            raise ValueError("export an eval-mode module: training-mode batch norm and dropout differ")
        self.session = inference_session(graph or export(module, example), torch.get_num_threads())
        self._walked = (weakref.ref(module), _stores(module), _registrations)
        self.fingerprint = _fingerprint(self._walked[1])
        self.precision = precision

    def serves(self, module: nn.Module, x: torch.Tensor) -> bool:
        """True while ``module`` (eval mode, CPU input) holds the tensors the graph was made from. A model must not
        be changed while it answers requests: a change during this call may go unseen until the next."""
        return x.device.type == "cpu" and self.holds(module)

    def holds(self, module: nn.Module) -> bool:
        """True while ``module`` is in eval mode and holds the tensors the graph was made from."""
        if module.training:
            return False
        ref, stores, seen = self._walked
        if ref() is not module or seen != _registrations:
            seen = _registrations  # before the walk: a registration during it makes the next call walk again
            stores = _stores(module)
            self._walked = (weakref.ref(module), stores, seen)
        return _fingerprint(stores) == self.fingerprint

    def __deepcopy__(self, memo: dict) -> None:
        return None

    def __reduce__(self):
        return (type(None), ())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(x.detach().float().numpy())
        return torch.from_numpy(self.session.run(None, {"x": x})[0])

    def proba(self, x: np.ndarray, tta: str) -> torch.Tensor:
        """Mean softmax over the ``none`` or ``flip`` (face + mirror, one run) views of a preprocessed
        (N, C, H, W) batch, in numpy: at batch 1 the torch operations around a run cost ~0.3 ms, more than half
        of the small graph's own time."""
        if tta not in NUMPY_VIEWS:
            raise ValueError(f"numpy views are {' and '.join(NUMPY_VIEWS)}, not {tta!r}")
        x, n = np.ascontiguousarray(x, dtype=np.float32), len(x)
        batch = np.concatenate([x, x[..., ::-1]]) if tta == "flip" else x
        logits = self.session.run(None, {"x": batch})[0]
        e = np.exp(logits - logits.max(-1, keepdims=True))
        p = e / e.sum(-1, keepdims=True)
        return torch.from_numpy(p if tta == "none" else p.reshape(2, n, -1).mean(0))


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


def precision_of(model) -> str:
    """What computes ``model``'s predictions: ``onnx int8``, ``onnx fp32`` or ``torch fp32``; for an ensemble, its
    members' (``mixed`` when they differ). Models that are not modules (e.g. word-vector zero-shot) run fp32."""
    if not isinstance(model, nn.Module):
        return "torch fp32"
    models = [m for m in model.modules() if hasattr(m, "fast_forward")]
    members = [m for m in models if not any(c is not m and hasattr(c, "fast_forward") for c in m.modules())]
    found = {_precision(m) for m in members} or {"torch fp32"}
    return found.pop() if len(found) == 1 else "mixed"


def _precision(module: nn.Module) -> str:
    fast = module.fast_forward
    return f"onnx {fast.precision}" if fast is not None else "torch fp32"
