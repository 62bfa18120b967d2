"""Recipes for ``train/clip.py`` (zero-shot, linear probe, fine-tuning) and ``train/coop.py``.

Linear probe and CoOp train on cached image features (fermm.models.clip_features) with large batches;
fine-tuning runs the vision tower on every step. All use the one training loop (fermm.training.loop).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from fermm import data
from fermm.evaluation import cards
from fermm.labels import FER7
from fermm.models.clip import DEFAULT_CLIP, ClipClassifier, ClipFinetune, ClipLinear
from fermm.models.clip_features import DEFAULT_CACHE, cached_features, clip_input
from fermm.models.coop import POSITIONS, CoOp
from fermm.training.image import DEFAULT_DATASET, _save_best
from fermm.training import loop
from fermm.training.loop import TrainConfig, Trainer
from fermm.training.tasks import FeatureTask, ImageTask
from fermm.transforms import AugmentConfig

log = logging.getLogger(__name__)

# Seed 000's recipe for CLIP fine-tuning (AdamW, lr 1e-5, weight decay 1e-5, batch 32, 10 epochs).
SEED000_PRESET = {"optimizer": "adamw", "lr": 1e-5, "weight_decay": 1e-5, "batch_size": 32, "epochs": 10}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model_name_or_path", default=DEFAULT_CLIP, help="base CLIP: Hub id or local folder")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET), help="FER source: folder, fer2013.csv or Hub id")
    loop.add_run_args(p)  # epochs, batch size, optimiser, lr, weight decay: the method's preset unless given
    p.add_argument("--shots", type=int, default=0, help="K training images per class (0 = all)")
    p.add_argument("--precision", default="no", choices=("bf16", "no"))
    p.add_argument("--feature_cache", default=None, help="folder for cached image features")


def add_coop_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n_ctx", type=int, default=16)
    p.add_argument("--ctx_init", default="", help='e.g. "a photo of a" (then --n_ctx 4)')
    p.add_argument("--class_specific", action="store_true", help="one context per class")
    p.add_argument("--position", default="end", choices=POSITIONS, help="where the class token goes")


def few_shot(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of K examples per class (seeded); all indices when k == 0."""
    if k <= 0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c in np.unique(labels)]))


def load_arrays(args: argparse.Namespace) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    ds = data.load_fer(args.dataset)
    arrays = {s: data.to_arrays(ds[s]) for s in ("train", "validation")}
    keep = few_shot(arrays["train"][1], args.shots, args.seed)
    arrays["train"] = (arrays["train"][0][keep], arrays["train"][1][keep])
    return arrays


def config(args: argparse.Namespace, presets: dict, out: Path) -> TrainConfig:
    return loop.run_config(args, out, presets, mixed_precision=args.precision, channels_last=False)


def feature_task(model: ClipClassifier, arrays, args: argparse.Namespace) -> tuple[FeatureTask, dict]:
    """Cached features for train/validation and the time it took to get them."""
    cache = args.feature_cache or DEFAULT_CACHE
    t0 = time.perf_counter()
    feats = {s: cached_features(model, arrays[s][0], cache) for s in ("train", "validation")}
    timing = {"feature_seconds": time.perf_counter() - t0, "n_images": int(sum(len(arrays[s][0]) for s in feats))}
    task = FeatureTask((feats["train"], arrays["train"][1]), (feats["validation"], arrays["validation"][1]),
                       args.label_smoothing)
    return task, timing


def fit(model: ClipClassifier, task, cfg: TrainConfig) -> ClipClassifier:
    steps = task.steps_per_epoch(cfg.batch_size)
    trainer = Trainer(model, task, cfg, steps, save_best=_save_best)
    trainer.resume()
    result = trainer.fit()
    log.info("%s: best validation accuracy %.4f at epoch %d", cfg.output_dir, result.best_accuracy, result.best_epoch)
    best = type(model).from_pretrained(str(Path(cfg.output_dir) / "best"))
    return best


def train_linear(args: argparse.Namespace) -> ClipClassifier:
    model = ClipLinear(base_model=args.model_name_or_path, labels=FER7)
    task, timing = feature_task(model, load_arrays(args), args)
    defaults = {"epochs": 30, "batch_size": 512, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}
    _record(args, timing)
    return fit(model, task, config(args, defaults, Path(args.output_dir) / "stage_linear"))


def train_coop(args: argparse.Namespace) -> ClipClassifier:
    model = CoOp(base_model=args.model_name_or_path, labels=FER7, n_ctx=args.n_ctx, ctx_init=args.ctx_init,
                 class_specific=args.class_specific, position=args.position)
    task, timing = feature_task(model, load_arrays(args), args)
    # CoOp's defaults: SGD lr 0.002, cosine with warmup; large batches are fine on cached features
    defaults = {"epochs": 50, "batch_size": 256, "optimizer": "sgd", "lr": 0.002, "weight_decay": 5e-4}
    _record(args, timing)
    return fit(model, task, config(args, defaults, Path(args.output_dir) / "stage_coop"))


def train_finetune(args: argparse.Namespace) -> ClipClassifier:
    model = ClipFinetune(base_model=args.model_name_or_path, labels=FER7, mode="lora" if args.lora else "full",
                         lora_r=args.lora_r)
    arrays = load_arrays(args)
    task = ImageTask(arrays["train"], arrays["validation"], len(FER7), model.mean, model.std,
                     aug=AugmentConfig(rotation=10, translate=0.05, erasing=0.0), label_smoothing=args.label_smoothing,
                     eval_batch=64, input_fn=lambda x: clip_input(x, model.input_size, model.mean, model.std))
    return fit(model, task, config(args, SEED000_PRESET, Path(args.output_dir) / "stage_finetune"))


def _record(args: argparse.Namespace, timing: dict) -> None:
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "feature_cache_timing.json").write_text(json.dumps(timing, indent=2))


def finish(model: ClipClassifier, args: argparse.Namespace, name: str, history_stage: str | None) -> Path:
    """Save the learned part + config + card in ``output_dir``; push if asked."""
    about = (f"`{type(model).__name__}` on `{model.base_model}`: only what was learned is stored here; the base CLIP "
             f"loads from its own repo.")
    return loop.finish(model, args.output_dir, args.push_to_hub, vars(args), history_stage,
                       lambda history: cards.model_card(name, model, training=vars(args), history=history,
                                                        source=args.push_to_hub or args.output_dir, description=about))
