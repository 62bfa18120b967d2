"""Where a model's per-face time goes: preprocessing vs the network, the network's costliest operators, and
how the bare PyTorch forward changes with the input layout and in bf16.

    python -m bench.breakdown --models fast_cnn glove_cnn --batch 1 32 --json results/bench/breakdown.json

For each model and batch size, on the face crop `bench/latency.py` times (the example photo's detected face):
the median time of `preprocess_array` (crop -> normalised array), of the network as `predict_proba` runs it (an
ONNX Runtime graph on that array, or PyTorch's `proba_from_tensor`; with softmax) and of the whole
`predict_proba`; torch.profiler's top operators of the PyTorch forward (self CPU time); and the bare PyTorch
forward as served, with a channels_last input, and as a bf16 copy (where the CPU runs bf16 natively) with its
largest probability difference on that crop.
"""
from __future__ import annotations

import argparse
import copy
import sys
from typing import Callable, Sequence

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from bench import common
from fermm.faces import find_and_crop, load_image
from fermm.models import load_model
from fermm.models.base import EmotionClassifier
from fermm.models.runtime import OnnxForward, precision_of
from fermm.serve import threads


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["fast_cnn", "glove_cnn"], help="registry names or folders")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="faces per call (each is measured)")
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--top", type=int, default=8, help="operators listed per model")
    p.add_argument("--threads", type=int, default=None,
                   help="torch and ONNX Runtime threads per model call (default: the app's, FERMM_THREADS or 1)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    args.threads = threads.app_threads() if args.threads is None else args.threads
    if min(args.batch) < 1 or args.repeats < 1 or args.top < 1:
        p.error("--batch, --repeats and --top must be at least 1")
    return args


def median_ms(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    return float(np.median(common.timed(fn, repeats, warmup)))


def top_operators(model: torch.nn.Module, x: torch.Tensor, calls: int, top: int) -> list[dict]:
    """torch.profiler's operators with the most self CPU time over ``calls`` forwards, in ms per face."""
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            model(x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [{"op": e.key, "ms_per_face": round(e.self_cpu_time_total / 1e3 / (calls * len(x)), 4),
             "share": round(e.self_cpu_time_total / total, 3), "calls_per_forward": e.count // calls}
            for e in rows]


def forward_variants(model: torch.nn.Module, x: torch.Tensor, repeats: int, warmup: int) -> dict[str, float]:
    """ms per face of the bare PyTorch forward as served, with a channels_last input and as a bf16 copy."""
    n = len(x)
    out = {}
    with torch.inference_mode():
        out["fp32"] = median_ms(lambda: model(x), repeats, warmup) / n
        x_cl = x.contiguous(memory_format=torch.channels_last)
        out["fp32_channels_last_input"] = median_ms(lambda: model(x_cl), repeats, warmup) / n
        if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            half, xb = copy.deepcopy(model).to(torch.bfloat16), x.to(torch.bfloat16)
            out["bf16"] = median_ms(lambda: half(xb), repeats, warmup) / n
    return {k: round(v, 4) for k, v in out.items()}


def bf16_prob_diff(model: torch.nn.Module, x: torch.Tensor) -> float | None:
    """Largest |p_bf16 - p_fp32| over the batch (None where bf16 is not native)."""
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return None
    half = copy.deepcopy(model).to(torch.bfloat16)
    with torch.inference_mode():
        return round(float((half(x.to(torch.bfloat16)).float().softmax(-1) - model(x).softmax(-1)).abs().max()), 5)


def profile_model(model: EmotionClassifier, crop, batch: int, args: argparse.Namespace) -> dict:
    faces = [crop] * batch
    x, xa = model.preprocess(faces), model.preprocess_array(faces)
    fast = model.fast_forward
    runtime = precision_of(model) if fast is not None and fast.serves(model, x) else "torch fp32"
    # the network as predict_proba runs it: an ONNX graph from the numpy array, else PyTorch from the tensor
    network = (lambda: fast.proba(xa, "none")) if isinstance(fast, OnnxForward) and fast.holds(model) else (
        lambda: model.proba_from_tensor(x))
    total = {"preprocess": median_ms(lambda: model.preprocess_array(faces), args.repeats, args.warmup),
             "network": median_ms(network, args.repeats, args.warmup),
             "predict_proba": median_ms(lambda: model.predict_proba(faces, batch_size=batch), args.repeats,
                                        args.warmup)}
    per_face = {k: round(v / batch, 4) for k, v in total.items()}
    return {"runtime": runtime, "batch": batch, "ms_per_face": per_face,
            "top_operators_pytorch": top_operators(model, x, max(20, args.repeats // 5), args.top),
            "pytorch_forward_ms_per_face": forward_variants(model, x, args.repeats, args.warmup),
            "bf16_max_prob_diff": bf16_prob_diff(model, x)}


def report(figures: dict) -> None:
    for name, fig in figures["models"].items():
        t = fig["ms_per_face"]
        print(f"{name} ({fig['runtime']}): predict_proba {t['predict_proba']:.3f} ms/face = preprocess "
              f"{t['preprocess']:.3f} + network {t['network']:.3f} + the rest "
              f"{t['predict_proba'] - t['preprocess'] - t['network']:.3f} (separate medians)")
        print("    bare PyTorch forward, ms/face: " + ", ".join(
            f"{k} {v:.3f}" for k, v in fig["pytorch_forward_ms_per_face"].items())
            + f"; bf16 max probability difference {fig['bf16_max_prob_diff']}")
        for op in fig["top_operators_pytorch"]:
            print(f"    {op['op']:<36} {op['ms_per_face']:>8.4f} ms/face  {op['share']:>6.1%}  "
                  f"x{op['calls_per_forward']}")
    for name, reason in figures["unavailable"].items():
        print(f"{name}: unavailable ({common.short(reason)})")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = common.start("-m bench.breakdown", argv, args.threads)
    _, crops = find_and_crop(load_image(common.EXAMPLE))
    figures: dict = {"models": {}, "unavailable": {}}
    for name in args.models:
        try:
            model = load_model(name)
        except Exception as e:  # a model that does not load is reported, never fatal
            figures["unavailable"][name] = f"{type(e).__name__}: {e}"
            continue
        for batch in args.batch:
            figures["models"][f"{name} b{batch}"] = profile_model(model, crops[0], batch, args)
    report(figures)
    common.write_json(args.json, info, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
