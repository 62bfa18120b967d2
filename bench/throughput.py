"""Throughput: evaluation images/second of every model (batch 128, FER2013 test faces), and training
images/second of every backbone in fp32 and bf16 autocast, with channels_last off and on.

    python -m bench.throughput --steps 20 --json results/bench/throughput.json

Evaluation: `predict_proba` on the first --n test images (default: all 3,589), preprocessing included,
after one untimed batch. Models: every registry model that loads and any folders given with --models.
Training: forward + cross-entropy + backward + SGD step on random (B, 1, 48, 48) batches (speed does not
depend on the pixels), --warmup untimed steps then --steps timed ones. ResNets are measured with both
stems (`small`: 3x3 stride 1, `imagenet`: 7x7 stride 2, see fermm/models/cnn.py). torch on 2 threads.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Sequence

from bench import common
from fermm.models import list_models
from fermm.models.cnn import BACKBONES
from fermm.training.image import DEFAULT_DATASET

VARIANTS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))  # (precision, channels_last)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=list_models(), help="registry names or model folders")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("-n", "--n", type=int, default=0, help="test images for evaluation (0: all)")
    p.add_argument("--eval_batch_size", type=int, default=128)
    p.add_argument("--backbones", nargs="*", default=list(BACKBONES), choices=BACKBONES)
    p.add_argument("--stems", nargs="*", default=["small", "imagenet"], choices=("small", "imagenet"),
                   help="ResNet stems to measure (VGGs have one)")
    p.add_argument("--batch_size", type=int, default=64, help="training batch (the train/ scripts' default)")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps per variant")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip_eval", action="store_true")
    p.add_argument("--skip_train", action="store_true")
    p.add_argument("--json", help="also write the figures here")
    return p.parse_args(argv)


def eval_throughput(names: Sequence[str], dataset: str, n: int, batch: int) -> tuple[dict, dict]:
    from fermm import data
    from fermm.models import load_model

    models, unavailable = {}, {}
    for name in names:
        try:
            models[name] = load_model(name)
        except Exception as e:  # a model that does not load is reported, never fatal
            unavailable[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e) else type(e).__name__
    if not models:
        return {}, unavailable
    images, _ = data.to_arrays(data.load_fer(dataset)["test"])
    faces = list(images[:n] if n else images)
    out = {}
    for name, model in models.items():
        model.predict_proba(faces[:batch], batch_size=batch)  # warm-up: first-call allocations
        t0 = time.perf_counter()
        model.predict_proba(faces, batch_size=batch)
        out[name] = {"images": len(faces), "images_per_second": round(len(faces) / (time.perf_counter() - t0), 1)}
    return out, unavailable


def train_throughput(backbone: str, stem: str, bf16: bool, channels_last: bool, batch: int, steps: int,
                     warmup: int) -> float:
    """Images per second of full training steps (train mode, so batch norm and dropout do their work)."""
    import torch
    import torch.nn.functional as F

    from fermm.models.cnn import CNNClassifier

    torch.manual_seed(0)
    model = CNNClassifier(backbone=backbone, stem=stem).train()
    x = torch.randn(batch, 1, 48, 48)  # (B, 1, 48, 48)
    y = torch.randint(0, len(model.labels), (batch,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> None:
        with autocast:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def configs(backbones: Sequence[str], stems: Sequence[str]) -> list[tuple[str, str]]:
    """(backbone, stem) pairs: the stem only matters for ResNets."""
    return [(b, s) for b in backbones for s in (stems if b.startswith("resnet") else ["small"])]


def report(figures: dict) -> None:
    if "eval" in figures:
        print(f"{'eval (batch %d)' % figures['eval_batch_size']:<28} {'images':>7} {'img/s':>9}")
        for name, r in figures["eval"].items():
            print(f"{name:<28} {r['images']:>7} {r['images_per_second']:>9.1f}")
        for name, why in figures["unavailable"].items():
            print(f"{name:<28} unavailable: {common.short(why)}")
    if "train" in figures:
        heads = [f"{p}{' CL' if cl else ''}" for p, cl in VARIANTS]
        print(f"\n{'train img/s (batch %d)' % figures['train_batch_size']:<28} "
              + " ".join(f"{h:>9}" for h in heads) + f" {'best/fp32':>10}")
        for key, r in figures["train"].items():
            vals = [r.get(h.replace(" ", "_")) for h in heads]
            cells = " ".join(f"{v:>9.1f}" if isinstance(v, float) else f"{'n/a':>9}" for v in vals)
            ok = [v for v in vals if isinstance(v, float)]
            ratio = max(ok) / vals[0] if ok and isinstance(vals[0], float) else float("nan")
            print(f"{key:<28} {cells} {ratio:>9.2f}x")
            for h, v in zip(heads, vals):
                if isinstance(v, str):
                    print(f"  {h}: {v}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = common.start("-m bench.throughput", argv, args.threads)
    figures: dict = {}
    if not args.skip_eval:
        figures["eval_batch_size"] = args.eval_batch_size
        figures["eval"], figures["unavailable"] = eval_throughput(args.models, args.dataset, args.n,
                                                                  args.eval_batch_size)
    if not args.skip_train:
        figures.update(train_batch_size=args.batch_size, train_steps=args.steps, train={})
        for backbone, stem in configs(args.backbones, args.stems):
            key = backbone if backbone.startswith("vgg") else f"{backbone} ({stem} stem)"
            row = figures["train"][key] = {}
            for precision, cl in VARIANTS:
                name = f"{precision}{'_CL' if cl else ''}"
                try:
                    row[name] = round(train_throughput(backbone, stem, precision == "bf16", cl, args.batch_size,
                                                       args.steps, args.warmup), 1)
                except RuntimeError as e:  # e.g. no bf16 kernels on this CPU: report, keep going
                    row[name] = f"failed: {str(e).splitlines()[0][:200]}"
    report(figures)
    common.write_json(args.json, info, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
