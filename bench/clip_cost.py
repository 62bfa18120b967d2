"""What each CLIP method costs on this machine: trainable parameters, seconds per training step, peak
memory, and the speed-up of training on cached image features over re-encoding images every step.

    python -m bench.clip_cost --json results/bench/clip_cost.json

Pretrained CLIP weights cannot be downloaded here, so this builds the exact ViT-B/32 architecture
(transformers' ``CLIPConfig()`` defaults = openai/clip-vit-base-patch32) with random weights and the real
CLIP tokenizer (from open_clip's vocabulary, a test dependency). Costs do not depend on the weights'
values; accuracy does, and is not measured here.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent

METHODS = ("linear_cached", "linear_reencode", "coop_cached", "coop_reencode", "lora", "full")


def build_vit_b32(folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    from tests.helpers import clip_bpe_vocab

    if not (folder / "config.json").exists():
        CLIPModel(CLIPConfig()).save_pretrained(folder)
        vocab, merges = clip_bpe_vocab()
        CLIPTokenizer(vocab=vocab, merges=merges).save_pretrained(folder)
    return folder


def make_model(method: str, base: str):
    from fermm.models.clip import ClipFinetune, ClipLinear
    from fermm.models.coop import CoOp

    if method.startswith("linear"):
        return ClipLinear(base_model=base)
    if method.startswith("coop"):
        return CoOp(base_model=base, n_ctx=16)
    return ClipFinetune(base_model=base, mode="lora" if method == "lora" else "full")


def one_method(method: str, base: str, batch: int, steps: int) -> dict:
    """Seconds per training step and peak RSS of one method (run in its own process)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    model = make_model(method, base)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3)
    pixels = torch.randn(batch, 3, model.input_size, model.input_size)
    feats = F.normalize(torch.randn(batch, model.clip.config.projection_dim), dim=-1)
    y = torch.randint(0, 7, (batch,))

    def step():
        logits = model.logits_from_features(feats) if method.endswith("cached") else model(pixels)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return {"method": method, "trainable_params": sum(p.numel() for p in params), "batch": batch,
            "seconds_per_step": (time.perf_counter() - t0) / steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--base", default=None, help="a CLIP folder (default: a random ViT-B/32 built in a temp dir)")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--_one", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from fermm.evaluation.metrics import command_line, git_commit, hardware

    args = parse_args(argv)
    if args._one:  # child process: one method, one JSON line
        print(json.dumps(one_method(args._one, args.base, args.batch, args.steps)))
        return 0
    base = args.base or str(build_vit_b32(Path(tempfile.gettempdir()) / "fermm-vit-b32-random"))
    rows = []
    for method in args.methods:  # a process each, so peak memory is per method
        out = subprocess.run([sys.executable, __file__, "--_one", method, "--base", base, "--batch", str(args.batch),
                              "--steps", str(args.steps)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    by = {r["method"]: r for r in rows}
    command = command_line("-m bench.clip_cost", argv)
    print(f"# {command}\n# commit {git_commit()}, {time.strftime('%Y-%m-%d')}, {hardware()}")
    print(f"{'method':<15} {'trainable':>12} {'s/step':>8} {'peak MB':>8}   (batch {args.batch}, ViT-B/32)")
    for r in rows:
        print(f"{r['method']:<15} {r['trainable_params']:>12,} {r['seconds_per_step']:>8.3f} {r['peak_rss_mb']:>8.0f}")
    for name in ("linear", "coop"):
        if f"{name}_cached" in by and f"{name}_reencode" in by:
            ratio = by[f"{name}_reencode"]["seconds_per_step"] / by[f"{name}_cached"]["seconds_per_step"]
            print(f"{name} on cached features is {ratio:,.0f}x faster per step than re-encoding the images")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": command, "commit": git_commit(), "hardware": hardware(),
                                               "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
