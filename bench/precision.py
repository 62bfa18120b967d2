"""Precision: each CNN's accuracy and batch-1 latency in every precision it could be served in, so that the
accuracy counted is the one of the precision timed (issue 39):

- ``torch fp32``: PyTorch, as the app serves today;
- ``torch bf16``: PyTorch under CPU autocast to bfloat16 (native on CPUs with AVX512-BF16 / AMX);
- ``onnx fp32``: ONNX Runtime on the exported graph (``FERMM_RUNTIME=onnx``);
- ``onnx int8``: ONNX Runtime on the graph quantised statically (QDQ, per-channel int8 weights, activations
  calibrated on FER2013 train images, never on validation or test): the one ``train/quantize.py`` stored beside
  the weights for the app (fermm.models.quantize) when there is one, else one calibrated here on --calibration.

    python -m bench.precision --models fast_cnn glove_cnn --json results/bench/precision.json

Accuracy is on FER2013 validation (which chooses) and test (which reports), test also on the images whose
pixels do not occur in train; latency is ms per face at batch 1 on the example's face crop, on the app's threads per
call (FERMM_THREADS, default one).
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

import numpy as np
import torch

from bench import common
from fermm.serve import threads


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["fast_cnn", "glove_cnn"], help="registry names or model folders")
    p.add_argument("--dataset", default=str(common.REPO.parent / "shared" / "data" / "fer2013"))
    p.add_argument("--calibration", type=int, default=512, help="train images that calibrate the int8 activations")
    p.add_argument("--repeats", type=int, default=200, help="timed batch-1 calls per figure")
    p.add_argument("--threads", type=int, default=None,
                   help="torch and ONNX Runtime threads per model call (default: the app's, FERMM_THREADS or 1)")
    p.add_argument("--seed", type=int, default=0, help="which train images calibrate")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    args.threads = threads.app_threads() if args.threads is None else args.threads
    if args.calibration < 1:
        p.error("--calibration must be at least 1")
    return args


class Bf16Forward:
    """``module``'s forward under CPU autocast to bfloat16 (a ``fast_forward``, see fermm.models.base)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def serves(self, module: torch.nn.Module, x: torch.Tensor) -> bool:
        return module is self.module and x.device.type == "cpu"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.module(x)


def forwards(model, calibration: np.ndarray, stored=None) -> dict[str, Callable[[], object]]:
    """{precision: a builder of the ``fast_forward`` that serves it (None: PyTorch fp32 itself)}; int8 is the
    ``stored`` graph the app serves (train/quantize.py) when the model has one, else one calibrated here."""
    from fermm.models.quantize import int8_graph
    from fermm.models.runtime import OnnxForward

    example = torch.zeros(1, model.channels, model.input_size, model.input_size)
    int8 = (lambda: stored) if stored is not None else \
        (lambda: OnnxForward(model, example, int8_graph(model, calibration), "int8"))
    return {"torch fp32": lambda: None, "torch bf16": lambda: Bf16Forward(model),
            "onnx fp32": lambda: OnnxForward(model, example), "onnx int8": int8}


def accuracy(model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) bool: which faces the model's top FER-7 label gets right."""
    from fermm.labels import to_fer7

    probs = to_fer7(model.predict_proba(list(images), batch_size=256).numpy(), model.labels)
    return probs.argmax(1) == labels


def measure(name: str, splits: dict, calibration: np.ndarray, repeats: int) -> dict:
    """Every precision of one model: validation and test accuracy, and ms per face at batch 1."""
    from fermm.faces import find_and_crop, load_image
    from fermm.models import load_model

    model = load_model(name)  # eval mode, channels_last weights (for_inference); each precision sets fast_forward
    crop = find_and_crop(load_image(common.EXAMPLE))[1][:1]
    (val_x, val_y), (test_x, test_y, seen) = splits["validation"], splits["test"]
    stored = model.fast_forward if getattr(model.fast_forward, "precision", None) == "int8" else None
    out = {}
    for precision, build in forwards(model, calibration, stored).items():
        model.fast_forward = build()
        right_test = accuracy(model, test_x, test_y)
        ms = common.timed(lambda: model.predict_proba(crop, batch_size=1), repeats, 10)
        out[precision] = {"validation": round(float(accuracy(model, val_x, val_y).mean()), 4),
                          "test": round(float(right_test.mean()), 4),
                          "test_not_in_train": round(float(right_test[~seen].mean()), 4),
                          "batch1_ms": common.percentiles(ms)}
        if precision == "onnx int8":
            out[precision]["graph"] = "stored (model.int8.onnx)" if stored is not None else "calibrated here"
        m = out[precision]
        print(f"{name:<12} {precision:<11} val {m['validation']:.2%}  test {m['test']:.2%} "
              f"(not in train {m['test_not_in_train']:.2%})  b1 p50 {m['batch1_ms']['p50']:.2f} ms")
    return out


def load_splits(dataset: str, n_calibration: int, seed: int) -> tuple[dict, np.ndarray]:
    from fermm.data import load_fer, seen_in, to_arrays

    ds = load_fer(dataset)
    train_x, _ = to_arrays(ds["train"])
    val_x, val_y = to_arrays(ds["validation"])
    test_x, test_y = to_arrays(ds["test"])
    pick = np.random.default_rng(seed).choice(len(train_x), min(n_calibration, len(train_x)), replace=False)
    return {"validation": (val_x, val_y), "test": (test_x, test_y, seen_in(test_x, train_x))}, train_x[np.sort(pick)]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = common.start("-m bench.precision", argv, args.threads)
    splits, calibration = load_splits(args.dataset, args.calibration, args.seed)
    figures = {"seed": args.seed, "calibration_images": len(calibration),
               "models": {name: measure(name, splits, calibration, args.repeats) for name in args.models}}
    common.write_json(args.json, info, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
