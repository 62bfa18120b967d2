"""Training tasks for image models: what the loop trains on and how the loss is computed.

Images stay in memory as (N, 48, 48) uint8 (FER2013 train is 66 MB); each batch is converted,
augmented and mixed on the fly with the epoch's generator, so runs are reproducible and resumable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fermm.transforms import AugmentConfig, augment, normalize, uint8_batch


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """Cross-entropy against (N, C) target distributions, optionally class-weighted (weights: (C,))."""
    per_sample = -(targets * logits.float().log_softmax(-1)).sum(-1)  # (N,)
    if weights is None:
        return per_sample.mean()
    w = targets @ weights  # (N,) weight of each sample's target mass
    return (w * per_sample).sum() / w.sum()


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (rare "disgust" counts ~10x more)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = counts.sum() / (n_classes * np.maximum(counts, 1))
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def blend_targets(labels: np.ndarray, soft: np.ndarray, weight: float, n_classes: int) -> np.ndarray:
    """(N, C) training targets: ``(1 - weight) * one_hot(labels) + weight * soft``.

    ``soft`` rows that are all zero (no annotation) keep the one-hot label. With FER+ votes as ``soft``
    this is label smoothing informed by ten annotators instead of spread evenly.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"soft-target weight must be in [0, 1], got {weight}")
    if soft.shape != (len(labels), n_classes):
        raise ValueError(f"soft targets have shape {soft.shape}, expected {(len(labels), n_classes)}")
    hard = np.eye(n_classes, dtype=np.float32)[labels]
    has = soft.sum(1, keepdims=True) > 0
    return np.where(has, (1 - weight) * hard + weight * soft, hard).astype(np.float32)


@dataclass
class MixConfig:
    """Mixup (Zhang et al. 2018) / CutMix (Yun et al. 2019), one of them per batch with ``prob``."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 0.5


def mix_batch(x: torch.Tensor, t: torch.Tensor, cfg: MixConfig, gen: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix a batch with its own permutation; returns mixed images and mixed (N, C) targets."""
    modes = [m for m, a in (("mixup", cfg.mixup_alpha), ("cutmix", cfg.cutmix_alpha)) if a > 0]
    if not modes or torch.rand(1, generator=gen).item() >= cfg.prob:
        return x, t
    mode = modes[int(torch.randint(len(modes), (1,), generator=gen))]
    alpha = cfg.mixup_alpha if mode == "mixup" else cfg.cutmix_alpha
    lam = _beta(alpha, gen)
    perm = torch.randperm(len(x), generator=gen)
    if mode == "mixup":
        return lam * x + (1 - lam) * x[perm], lam * t + (1 - lam) * t[perm]
    h, w = x.shape[-2:]
    ch, cw = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
    cy, cx = int(torch.randint(h, (1,), generator=gen)), int(torch.randint(w, (1,), generator=gen))
    y0, y1, x0, x1 = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
    x = x.clone()
    x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted
    return x, lam * t + (1 - lam) * t[perm]


def _beta(alpha: float, gen: torch.Generator) -> float:
    """Beta(alpha, alpha) from the generator (torch.distributions cannot take one)."""
    a = torch._standard_gamma(torch.full((1,), alpha), generator=gen)
    b = torch._standard_gamma(torch.full((1,), alpha), generator=gen)
    return float(a / (a + b))


class ImageTask:
    """Supervised classification of (N, H, W) uint8 faces with augmentation, smoothing and mixing."""

    def __init__(self, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                 n_classes: int, mean, std, aug: AugmentConfig | None = None, mix: MixConfig | None = None,
                 label_smoothing: float = 0.0, weighted: bool = False, eval_batch: int = 512,
                 input_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 targets: np.ndarray | None = None):
        self.x, self.y = train
        self.targets = targets  # (N, C) training distributions (e.g. blend_targets); None: one-hot labels
        self.val_x, self.val_y = val
        self.n_classes, self.mean, self.std = n_classes, mean, std
        self.aug, self.mix, self.smoothing = aug, mix or MixConfig(), label_smoothing
        self.weights = class_weights(self.y, n_classes) if weighted else None
        self.eval_batch = eval_batch
        # (B, 1, H, W) in [0, 1] -> model input; default: normalise for the CNNs
        self.input_fn = input_fn or (lambda x: normalize(x, self.mean, self.std))

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(self.y) // batch_size  # drop the last partial batch (BN needs >1 sample)

    def sample(self, epoch: int, batch_size: int, gen: torch.Generator) -> Iterator[tuple]:
        """(clean, augmented, targets) batches before mixing; images (B, 1, H, W) in [0, 1]."""
        order = torch.randperm(len(self.y), generator=gen).numpy()
        for i in range(self.steps_per_epoch(batch_size)):
            idx = order[i * batch_size:(i + 1) * batch_size]
            clean = uint8_batch(self.x[idx])
            x = augment(clean, self.aug, gen) if self.aug is not None else clean
            t = (torch.from_numpy(self.targets[idx]) if self.targets is not None
                 else F.one_hot(torch.from_numpy(self.y[idx]), self.n_classes).float())
            yield clean, x, t

    def batches(self, epoch: int, batch_size: int, gen: torch.Generator) -> Iterator[tuple]:
        for _, x, t in self.sample(epoch, batch_size, gen):
            x, t = mix_batch(x, t, self.mix, gen)
            yield self.input_fn(x), t

    def loss(self, model: nn.Module, batch: tuple) -> tuple[torch.Tensor, int]:
        x, t = batch
        logits = model(x)
        return self.label_loss(logits, t), int((logits.argmax(-1) == t.argmax(-1)).sum())

    def label_loss(self, logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against (N, C) targets with this task's label smoothing and class weights."""
        smoothed = t * (1 - self.smoothing) + self.smoothing / self.n_classes
        return soft_cross_entropy(logits, smoothed, self.weights)

    @torch.no_grad()
    def predict_logits(self, model: nn.Module, images: np.ndarray) -> torch.Tensor:
        model.eval()
        out = []
        for i in range(0, len(images), self.eval_batch):
            x = self.input_fn(uint8_batch(images[i:i + self.eval_batch]))
            out.append(model(x.contiguous(memory_format=torch.channels_last)).float())
        return torch.cat(out)

    def validate(self, model: nn.Module) -> dict[str, float]:
        logits = self.predict_logits(model, self.val_x)
        y = torch.from_numpy(self.val_y)
        return {"accuracy": float((logits.argmax(-1) == y).float().mean()),
                "loss": float(F.cross_entropy(logits, y))}


def contrastive_loss(v: torch.Tensor, u: torch.Tensor, tau: float, lam: float,
                     targets: torch.Tensor | None = None) -> torch.Tensor:
    """Seed 003, eqs. 4.1-4.2: L = mean_i(lam * l_i(v->u) + (1 - lam) * l_i(u->v)).

    ``v``: (N, d) unit image embeddings; ``u``: (N, d) unit embeddings of each image's label words.
    ``l_i(v->u) = -log softmax_k(<v_i, u_k> / tau)[i]`` and symmetrically for u->v. With ``targets``
    (N, N) (rows summing to 1) the positives are soft, e.g. every pair sharing a label.
    """
    # in fp32 even under bf16 autocast: a cosine's bf16 rounding (~0.004) becomes ~0.04 of logit after / tau
    with torch.autocast(v.device.type, enabled=False):
        logits = (v.float() @ u.float().T) / tau  # (N, N): image i vs label-embedding k
    if targets is None:
        targets = torch.eye(len(v), device=v.device)
    v2u = -(targets * logits.log_softmax(1)).sum(1)  # (N,)
    u2v = -(targets.T * logits.T.log_softmax(1)).sum(1)
    return (lam * v2u + (1 - lam) * u2v).mean()


class ContrastiveTask(ImageTask):
    """Seed 003's pre-training: image features vs frozen label word vectors in a shared 64-d space.

    ``positives="paper"`` uses eq. 4.1 literally (only pair i is positive for image i, although other
    images of the same class carry the same label vector); ``"class"`` makes every same-label pair a
    positive (soft targets), which removes those false negatives.
    """

    def __init__(self, *args, lam: float = 0.75, positives: str = "paper", **kwargs):
        super().__init__(*args, **kwargs)
        if positives not in ("paper", "class"):
            raise ValueError(f"positives must be 'paper' or 'class', not {positives!r}")
        self.lam, self.positives = lam, positives

    def loss(self, model: nn.Module, batch: tuple) -> tuple[torch.Tensor, int]:
        x, t = batch
        m = getattr(model, "module", model)
        v = m.embed_images(m.features(x))  # (N, 64)
        labels_u = m.embed_labels()  # (C, 64)
        u = t.to(labels_u.dtype) @ labels_u  # (N, 64): each image's (possibly mixed) label embedding
        u = F.normalize(u, dim=-1)
        targets = None
        if self.positives == "class":
            same = (t @ t.T > 0).float()
            targets = same / same.sum(1, keepdim=True)
        loss = contrastive_loss(v, u, m.tau, self.lam, targets)
        pred = (v @ labels_u.T).argmax(-1)
        return loss, int((pred == t.argmax(-1)).sum())

    @torch.no_grad()
    def predict_logits(self, model: nn.Module, images: np.ndarray) -> torch.Tensor:
        model.eval()
        m = getattr(model, "module", model)
        out = []
        for i in range(0, len(images), self.eval_batch):
            x = normalize(uint8_batch(images[i:i + self.eval_batch]), self.mean, self.std)
            out.append(m.zero_shot_logits(x.contiguous(memory_format=torch.channels_last)).float())
        return torch.cat(out)


class FeatureTask:
    """Training on cached (N, D) image features: CLIP linear probe and CoOp. The model maps features to
    logits with ``logits_from_features``; there is no augmentation (the features are fixed)."""

    def __init__(self, train: tuple[torch.Tensor, np.ndarray], val: tuple[torch.Tensor, np.ndarray],
                 label_smoothing: float = 0.0):
        self.x, self.y = train[0], torch.as_tensor(train[1])
        self.val_x, self.val_y = val[0], torch.as_tensor(val[1])
        self.smoothing = label_smoothing

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self.y) // batch_size)

    def batches(self, epoch: int, batch_size: int, gen: torch.Generator) -> Iterator[tuple]:
        order = torch.randperm(len(self.y), generator=gen)
        for i in range(self.steps_per_epoch(batch_size)):
            idx = order[i * batch_size:(i + 1) * batch_size]
            yield self.x[idx], self.y[idx]

    def loss(self, model: nn.Module, batch: tuple) -> tuple[torch.Tensor, int]:
        feats, y = batch
        logits = getattr(model, "module", model).logits_from_features(feats)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.smoothing)
        return loss, int((logits.argmax(-1) == y).sum())

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        logits = getattr(model, "module", model).logits_from_features(self.val_x).float()
        return {"accuracy": float((logits.argmax(-1) == self.val_y).float().mean()),
                "loss": float(F.cross_entropy(logits, self.val_y))}


class DistillTask(ImageTask):
    """Knowledge distillation (Hinton et al. 2015): the student matches the teacher's softened
    probabilities on the same augmented batch, plus cross-entropy on the labels.

    loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels), the CE term with the
    task's label smoothing and class weights.
    The teacher is any model with ``predict_proba``-style probabilities on the batch (an ensemble too).
    With ``teacher_view="clean"`` the teacher sees each image un-augmented while the student sees the
    augmented view, so the student learns to answer as the teacher does on the canonical frame
    (framing invariance); that needs mixup and cutmix off.
    """

    def __init__(self, *args, teacher_probs, alpha: float = 0.7, temperature: float = 4.0,
                 teacher_view: str = "same", **kwargs):
        super().__init__(*args, **kwargs)
        if teacher_view not in ("same", "clean"):
            raise ValueError(f"teacher_view must be 'same' or 'clean', not {teacher_view!r}")
        if teacher_view == "clean" and (self.mix.mixup_alpha or self.mix.cutmix_alpha):
            raise ValueError("a clean teacher view needs mixup and cutmix off (a mixed image has no clean view)")
        self.teacher_probs = teacher_probs  # (B, 1, H, W) in [0, 1] -> (B, C) probabilities
        self.alpha, self.temperature, self.teacher_view = alpha, temperature, teacher_view

    def batches(self, epoch: int, batch_size: int, gen: torch.Generator) -> Iterator[tuple]:
        if self.teacher_view == "clean":
            for clean, x, t in self.sample(epoch, batch_size, gen):
                with torch.no_grad():
                    teacher = self.teacher_probs(clean).float()
                yield self.input_fn(x), teacher, t
            return
        for x, t in super().batches(epoch, batch_size, gen):
            raw = x * torch.tensor(self.std).view(1, -1, 1, 1) + torch.tensor(self.mean).view(1, -1, 1, 1)
            with torch.no_grad():
                teacher = self.teacher_probs(raw.clamp(0, 1)).float()
            yield x, teacher, t

    def loss(self, model: nn.Module, batch: tuple) -> tuple[torch.Tensor, int]:
        x, teacher, t = batch
        logits = model(x).float()
        tau = self.temperature
        soft_teacher = F.softmax(torch.log(teacher.clamp(min=1e-8)) / tau, -1)
        kd = F.kl_div(F.log_softmax(logits / tau, -1), soft_teacher, reduction="batchmean") * tau * tau
        ce = self.label_loss(logits, t)
        return self.alpha * kd + (1 - self.alpha) * ce, int((logits.argmax(-1) == t.argmax(-1)).sum())
