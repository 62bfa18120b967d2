"""Where a model's per-face time goes: preprocessing vs the network, and the network's costliest operators.

    python bench/breakdown.py --models fast_cnn glove_cnn --batch 1 32 --json results/bench/breakdown.json

For each model: the median time of `preprocess` (face crop -> normalised tensor), of the forward pass that
`proba_from_tensor` runs (PyTorch or ONNX Runtime, as the app would) and of the whole `predict_proba`, at
--batch faces per call, on the bundled example's face crop; then torch.profiler's top operators of the
PyTorch forward (self CPU time, per face). Answers "what limits the fast model's latency" with figures.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import common  # noqa: E402
from fermm.models import load_model  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["fast_cnn", "glove_cnn"], help="registry names or folders")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="faces per call (each is measured)")
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--top", type=int, default=8, help="operators listed per model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the figures here")
    return p.parse_args(argv)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1e3, 4)


def top_operators(model: torch.nn.Module, x: torch.Tensor, calls: int, top: int) -> list[dict]:
    """torch.profiler's operators with the most self CPU time over ``calls`` forwards, in ms per face."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            model(x)
    per_face = calls * len(x)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    return [{"op": e.key, "ms_per_face": round(e.self_cpu_time_total / 1e3 / per_face, 4),
             "share": round(e.self_cpu_time_total / total, 3), "calls_per_forward": e.count // calls}
            for e in rows]


def forward_variants(model: torch.nn.Module, x: torch.Tensor, repeats: int, warmup: int) -> dict[str, float]:
    """ms per face of the bare PyTorch forward as served, with a channels_last input (which makes PyTorch pick
    oneDNN's convolutions at any batch) and in bf16 weights (a copy; native only on CPUs with AVX-512 BF16/AMX)."""
    import copy

    out = {}
    with torch.inference_mode():
        out["fp32"] = median_ms(lambda: model(x), repeats, warmup)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        out["fp32_channels_last_input"] = median_ms(lambda: model(x_cl), repeats, warmup)
        if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            half = copy.deepcopy(model).to(torch.bfloat16)
            xb = x.to(torch.bfloat16)
            out["bf16"] = median_ms(lambda: half(xb), repeats, warmup)
            out["bf16_max_prob_diff"] = round(float((half(xb).float().softmax(-1) - model(x).softmax(-1)).abs().max()), 5)
    return {k: (v if k.endswith("diff") else round(v / len(x), 4)) for k, v in out.items()}


def profile_model(model, batch: int, args: argparse.Namespace) -> dict:
    faces = [common.example_face()] * batch
    x = model.preprocess(faces)
    fast = model.fast_forward
    runtime = "onnxruntime" if fast is not None and fast.serves(model, x) else "pytorch"
    per_face = {
        "preprocess": median_ms(lambda: model.preprocess(faces), args.repeats, args.warmup),
        "forward": median_ms(lambda: model.proba_from_tensor(x), args.repeats, args.warmup),
        "predict_proba": median_ms(lambda: model.predict_proba(faces, batch_size=batch), args.repeats, args.warmup),
    }
    per_face = {k: round(v / batch, 4) for k, v in per_face.items()}
    ops = top_operators(model, x, max(20, args.repeats // 5), args.top)
    return {"runtime": runtime, "batch": batch, "ms_per_face": per_face, "top_operators_pytorch": ops,
            "pytorch_forward_variants_ms_per_face": forward_variants(model, x, args.repeats, args.warmup)}


def report(figures: dict) -> None:
    for name, fig in figures["models"].items():
        t = fig["ms_per_face"]
        print(f"{name} ({fig['runtime']}): predict_proba {t['predict_proba']:.3f} ms/face = "
              f"preprocess {t['preprocess']:.3f} + forward {t['forward']:.3f} (+ the rest)")
        print("    bare PyTorch forward: " + ", ".join(f"{k} {v}" for k, v in
                                                     fig["pytorch_forward_variants_ms_per_face"].items()))
        for op in fig["top_operators_pytorch"]:
            print(f"    {op['op']:<36} {op['ms_per_face']:>8.4f} ms/face  {op['share']:>6.1%}  "
                  f"x{op['calls_per_forward']}")
    for name, reason in figures["unavailable"].items():
        print(f"{name}: unavailable ({common.short(reason)})")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = common.provenance("bench/breakdown.py", argv)
    common.print_header(info)
    figures: dict = {"models": {}, "unavailable": {}}
    for name in args.models:
        try:
            model = load_model(name).eval()
        except Exception as e:  # a model that does not load is reported, never fatal
            figures["unavailable"][name] = f"{type(e).__name__}: {e}"
            continue
        for batch in args.batch:
            figures["models"][f"{name} b{batch}"] = profile_model(model, batch, args)
    report(figures)
    common.write_json(args.json, info, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
