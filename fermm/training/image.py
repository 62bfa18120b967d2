"""Recipes that train the from-scratch CNNs (``train/resnet50.py``, ``train/glove_cnn.py``).

Plain models: one cross-entropy stage. GloVe-CNN (Bülbül): stage 1 contrastive pre-training of the
backbone + projections against frozen label word vectors, stage 2 classifier fine-tuning (backbone
frozen or not). Each stage is a :class:`fermm.training.loop.Trainer` run in its own sub-folder, so an
interrupted run resumes where it stopped; the final model goes to ``output_dir`` itself.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fermm import data, framing
from fermm.data.report import drop_cross_split_duplicates
from fermm.evaluation import cards
from fermm.labels import FER7, to_fer7
from fermm.models import load_model
from fermm.models.base import EmotionClassifier
from fermm.models.cnn import BACKBONES, CNNClassifier
from fermm.models.wordvec import WordVectors, default_vectors, label_vectors
from fermm.paths import SHARED_DATA
from fermm.training import loop
from fermm.training.loop import TrainConfig, Trainer
from fermm.training.tasks import (
    ContrastiveTask,
    DistillTask,
    ImageTask,
    MixConfig,
    blend_targets,
)
from fermm.transforms import AugmentConfig

log = logging.getLogger(__name__)
DEFAULT_DATASET = SHARED_DATA / "fer2013"


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Arguments every CNN script shares (data, optimisation, augmentation, output)."""
    p.add_argument("--dataset", default=str(DEFAULT_DATASET), help="FER source: folder, fer2013.csv or Hub id")
    loop.add_run_args(p, epochs=40, batch_size=64, optimizer="sgd", lr=0.01, weight_decay=5e-4)
    p.add_argument("--backbone", default="vgg11", choices=BACKBONES)
    p.add_argument("--stem", default="small", choices=("small", "imagenet"),
                   help="ResNet stem (fermm.models.cnn; the study: train/recipes/studies/resnet18_stem_imagenet.yaml)")
    p.add_argument("--class_weighted", action="store_true", help="inverse-frequency class weights in the loss")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0 = off)")
    p.add_argument("--cutmix", type=float, default=0.0, help="cutmix alpha (0 = off)")
    p.add_argument("--rotation", type=float, default=15.0)
    p.add_argument("--translate", type=float, default=0.1)
    p.add_argument("--erasing", type=float, default=0.25)
    p.add_argument("--no_flip", action="store_true")
    p.add_argument("--framing_jitter", action="store_true",
                   help="scale and shift faces as much as FER2013's framing varies (fermm/assets/framing.json, "
                        "5-95%% range), edge-padded like the served crop; replaces --translate")
    p.add_argument("--ferplus_soft", type=float, default=0.0, metavar="W",
                   help="train on (1-W) * FER2013 label + W * that image's FER+ vote distribution (0 = off)")
    p.add_argument("--drop_cross_split_duplicates", action="store_true")
    p.add_argument("--precision", default="bf16", choices=("bf16", "no"))
    p.add_argument("--no_channels_last", action="store_true")
    p.add_argument("--init_from", metavar="FOLDER", default=None,
                   help="start from this saved model's weights (a further training cycle); the GloVe recipe then "
                        "skips its contrastive stage, which that model already had")


def add_glove_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", action="store_true", help="the plain cross-entropy twin (no word vectors)")
    p.add_argument("--word_vectors", default=None,
                   help="GloVe/word2vec .txt or .npz (default: the 300-d label-word vectors fermm ships)")
    p.add_argument("--lambda", dest="lam", type=float, default=0.75, help="weight of image->label loss")
    p.add_argument("--tau", type=float, default=0.1, help="contrastive temperature")
    p.add_argument("--pretrain_epochs", type=int, default=30, help="contrastive stage epochs")
    p.add_argument("--freeze_backbone", action="store_true", help="stage 2 trains only the classifier")
    p.add_argument("--finetune_lr", type=float, default=None, help="stage 2 lr (default: --lr / 10)")


def load_arrays(args: argparse.Namespace) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """uint8 (N, 48, 48) images and labels per split, from any FER source."""
    ds = data.load_fer(args.dataset)
    if args.drop_cross_split_duplicates:
        ds, n = drop_cross_split_duplicates(ds)
        log.info("dropped %d train images that also occur in validation/test", n)
    arrays = {s: data.to_arrays(ds[s]) for s in ("train", "validation")}
    if getattr(args, "ferplus_soft", 0.0):
        soft = data.ferplus_fer7_targets(ds["train"])
        log.info("FER+ soft targets (weight %.2f) for %d of %d train images", args.ferplus_soft,
                 int((soft.sum(1) > 0).sum()), len(soft))
        arrays["train_targets"] = blend_targets(arrays["train"][1], soft, args.ferplus_soft, len(FER7))
    return arrays


def train_config(args: argparse.Namespace, output_dir: Path, epochs: int, lr: float) -> TrainConfig:
    return loop.run_config(args, output_dir, epochs=epochs, lr=lr, class_weighted=args.class_weighted,
                           mixed_precision=args.precision, channels_last=not args.no_channels_last)


def augment_config(args: argparse.Namespace) -> AugmentConfig:
    aug = AugmentConfig(rotation=args.rotation, translate=args.translate, erasing=args.erasing,
                        flip=not args.no_flip)
    return framing_jitter(aug) if getattr(args, "framing_jitter", False) else aug


def framing_jitter(aug: AugmentConfig) -> AugmentConfig:
    """``aug`` with scale and shift ranges spanning the 5-95% range of FER2013's measured framing, so a
    model sees faces framed as loosely or tightly as FER2013 itself frames them (and as serving may)."""
    scale_min, scale_max, shift = framing.spread()
    return dataclasses.replace(aug, scale_min=scale_min, scale_max=scale_max, translate=shift, padding_mode="border")


def _save_best(model: CNNClassifier, folder: Path, row: dict) -> None:
    model.save_pretrained(folder)


def run_stage(model: CNNClassifier, task: ImageTask, cfg: TrainConfig) -> CNNClassifier:
    """Train (resuming if a previous run stopped) and return the model with its best weights."""
    trainer = Trainer(model, task, cfg, task.steps_per_epoch(cfg.batch_size), save_best=_save_best)
    trainer.resume()
    result = trainer.fit()
    log.info("%s: best validation accuracy %.4f at epoch %d", cfg.output_dir, result.best_accuracy,
             result.best_epoch)
    best = type(model).from_pretrained(str(Path(cfg.output_dir) / "best"), strict=True)
    return best


def image_task(cls, arrays, args: argparse.Namespace, **kwargs) -> ImageTask:
    """``cls`` on the train/validation arrays; FER+ soft targets (``--ferplus_soft``) reach the supervised
    stages only: the contrastive stage pairs each image with one label's word vector."""
    if cls is not ContrastiveTask:
        kwargs.setdefault("targets", arrays.get("train_targets"))
    return cls(arrays["train"], arrays["validation"], len(FER7), (0.5,), (0.25,), aug=augment_config(args),
               mix=MixConfig(args.mixup, args.cutmix), label_smoothing=args.label_smoothing,
               weighted=args.class_weighted, **kwargs)


def warm_start(args: argparse.Namespace) -> CNNClassifier:
    """The ``--init_from`` folder's model, refused unless it is the FER-7, 48 px grayscale net asked for; its
    weights go into a ``--backbone`` of another shape when every tensor fits (``fast`` -> ``fast2``)."""
    if not (Path(args.init_from) / "config.json").exists():
        raise FileNotFoundError(f"--init_from {args.init_from}: not a saved model folder (no config.json)")
    source = CNNClassifier.from_pretrained(args.init_from, strict=True)
    got = (source.backbone_name, source.stem, source.labels, source.channels, source.input_size)
    if got[1:] != (args.stem, FER7, 1, 48):
        raise ValueError(f"--init_from {args.init_from} is a {got[0]} ({got[1]} stem, labels {', '.join(got[2])}, "
                         f"{got[3]}x{got[4]}px input) but this run asks for --backbone {args.backbone} --stem "
                         f"{args.stem} on FER-7 48px grayscale")
    if source.backbone_name == args.backbone:
        return source  # its own dropout (config.json) is kept: --dropout only shapes new models
    model = CNNClassifier(**{**source._hub_mixin_config, "backbone": args.backbone})  # its config, known keys only
    mine, theirs = model.state_dict(), source.state_dict()
    misfit = sorted(k for k in mine.keys() | theirs.keys()
                    if k not in mine or k not in theirs or mine[k].shape != theirs[k].shape)
    if misfit:
        raise ValueError(f"--init_from {args.init_from} is a {source.backbone_name}, whose weights do not fit "
                         f"--backbone {args.backbone}: {len(misfit)} tensors differ in name or shape "
                         f"({misfit[0]}, ...)")
    model.load_state_dict(theirs)
    return model


def new_model(args: argparse.Namespace, **extra) -> CNNClassifier:
    """A freshly initialised CNN whose initial weights follow ``--seed``. The trainer seeds only once the
    model exists: before this function every run started from torch's default seed, whatever --seed said."""
    torch.manual_seed(args.seed)
    return CNNClassifier(backbone=args.backbone, stem=args.stem, dropout=args.dropout, **extra)


def train_plain(args: argparse.Namespace, arrays=None) -> CNNClassifier:
    """One cross-entropy stage (ResNet50, and GloVe-CNN's ``--base`` twin)."""
    arrays = arrays or load_arrays(args)
    model = warm_start(args) if args.init_from else new_model(args)
    task = image_task(ImageTask, arrays, args)
    return run_stage(model, task, train_config(args, Path(args.output_dir) / "stage_ce", args.epochs, args.lr))


def pretrain_contrastive(args: argparse.Namespace, arrays) -> CNNClassifier:
    """Seed 003's stage 1: backbone + projections against the frozen label word vectors."""
    table = WordVectors.load(args.word_vectors) if args.word_vectors else default_vectors()
    model = new_model(args, word_dim=table.dim, tau=args.tau)
    model.label_vectors.copy_(torch.from_numpy(label_vectors(FER7, table)))
    task = image_task(ContrastiveTask, arrays, args, lam=args.lam)  # the paper's positives (eq. 4.1)
    return run_stage(model, task, train_config(args, Path(args.output_dir) / "stage_contrastive",
                                               args.pretrain_epochs, args.lr))


def train_glove(args: argparse.Namespace, arrays=None) -> CNNClassifier:
    """Seed 003: contrastive pre-training (skipped with ``--init_from``), then classifier fine-tuning."""
    arrays = arrays or load_arrays(args)
    if args.init_from:
        model = warm_start(args)
        if not model.word_dim:
            raise ValueError(f"--init_from {args.init_from} has no word-vector head: not a GloVe-CNN "
                             "(use --base to continue a plain model)")
    else:
        model = pretrain_contrastive(args, arrays)
    if args.freeze_backbone:
        model.freeze_backbone()
    ft_lr = args.finetune_lr if args.finetune_lr is not None else args.lr / 10
    return run_stage(model, image_task(ImageTask, arrays, args),
                     train_config(args, Path(args.output_dir) / "stage_finetune", args.epochs, ft_lr))


def finish(model: CNNClassifier, args: argparse.Namespace, name: str) -> Path:
    """Save the final model (fp32 + card + training args) to ``output_dir`` and push if asked."""
    training = training_record(args)
    return loop.finish(model, args.output_dir, args.push_to_hub, training, _last_stage,
                       lambda history: cards.model_card(name, model, training=training, history=history,
                                                        source=args.push_to_hub or args.output_dir))


def training_record(args: argparse.Namespace) -> dict:
    """The run's arguments; a warm-started run nests its starting model's record (the full recipe, not a path)."""
    record = dict(vars(args))
    start = Path(args.init_from) / "training_args.json" if args.init_from else None
    if start is not None and start.exists():
        record["init_from_training_args"] = json.loads(start.read_text())
    return record


# stage folders of a run, in the order they train (GloVe-CNN: contrastive, then fine-tuning)
STAGES = ("stage_contrastive", "stage_ce", "stage_distill", "stage_finetune")


def _last_stage(out: Path) -> str:
    for stage in reversed(STAGES):
        if (out / stage / "history.json").exists():
            return stage
    raise FileNotFoundError(f"{out}: no training history found")


def teacher_fn(teacher: EmotionClassifier, tta: str = "none") -> Callable[[torch.Tensor], torch.Tensor]:
    """(B, 1, 48, 48) faces in [0, 1] -> the teacher's (B, 7) FER-7 probabilities, averaged over ``tta``'s views
    (an ensemble chosen with its mirror views teaches best with them: eval/ensemble.py --tta)."""
    def probs(x: torch.Tensor) -> torch.Tensor:
        faces = list((x[:, 0] * 255).round().to(torch.uint8).numpy())
        p = teacher.predict_proba(faces, tta=tta, batch_size=len(faces)).numpy()
        return torch.from_numpy(to_fer7(p, teacher.labels)).float()
    return probs


def train_distilled(args: argparse.Namespace, arrays=None) -> CNNClassifier:
    """A small student trained to match a teacher (e.g. the ensemble) on augmented batches."""
    arrays = arrays or load_arrays(args)
    if args.threads:  # before the teacher loads: its ONNX Runtime session takes the thread count then
        torch.set_num_threads(args.threads)
    teacher = load_model(args.teacher).eval()
    model = warm_start(args) if args.init_from else new_model(args)
    teach = teacher_fn(teacher, getattr(args, "teacher_tta", "none"))
    task = image_task(DistillTask, arrays, args, teacher_probs=teach, alpha=args.alpha,
                      temperature=args.temperature, teacher_view=getattr(args, "teacher_view", "same"))
    return run_stage(model, task, train_config(args, Path(args.output_dir) / "stage_distill", args.epochs, args.lr))
