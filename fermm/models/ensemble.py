"""An ensemble: the (weighted) mean of its members' FER-7 probabilities.

Members are registry names, folders or Hub ids, loaded with :func:`fermm.models.load_model`; the
ensemble's own folder holds only ``config.json`` (the member list, weights and each member's fingerprint,
checked on load) and its card. Members may preprocess differently (48 px grey CNNs, 224 px RGB CLIP): each
gets the face crops as they are.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from fermm.labels import FER7, to_fer7
from fermm.models.base import EmotionClassifier
from fermm.models.families import load_member
from fermm.models.registry import fingerprint, model_folder


class EnsembleClassifier(EmotionClassifier):
    family = "ensemble"

    def __init__(self, members: Sequence[str] = (), weights: Sequence[float] | None = None,
                 labels: Sequence[str] = FER7, member_sha256: Sequence[str] | None = None):
        super().__init__()

        if not members:
            raise ValueError("an ensemble needs at least one member")
        if weights is not None and len(weights) != len(members):
            raise ValueError(f"{len(members)} members but {len(weights)} weights")
        self.member_sources, self.labels = list(members), tuple(labels)
        folders = [model_folder(m) for m in members]
        self.member_sha256 = [fingerprint(f) for f in folders]
        if member_sha256 is not None:
            _check_members(members, member_sha256, self.member_sha256)
        if self._hub_mixin_config is not None:  # saved with the ensemble, checked when it loads
            self._hub_mixin_config["member_sha256"] = self.member_sha256
        self.models = nn.ModuleList(load_member(f) for f in folders)
        w = np.ones(len(members)) if weights is None else np.asarray(weights, dtype=np.float64)
        self.weights = (w / w.sum()).tolist()
        first = self.models[0]
        self.input_size, self.channels, self.mean, self.std = first.input_size, first.channels, first.mean, first.std

    def _save_pretrained(self, save_directory) -> None:
        pass  # nothing of its own is learned: config.json lists the members

    @classmethod
    def _from_pretrained(cls, *, model_id: str, **kwargs):
        hub_args = ("revision", "cache_dir", "force_download", "local_files_only", "token", "map_location", "strict")
        return cls(**{k: v for k, v in kwargs.items() if k not in hub_args})

    @torch.inference_mode()
    def predict_proba(self, faces: Sequence, texts: Sequence[str] | None = None, tta: str = "none",
                      batch_size: int = 64) -> torch.Tensor:

        if len(faces) == 0:
            return torch.empty(0, len(self.labels))
        total = np.zeros((len(faces), len(FER7)))
        for w, model in zip(self.weights, self.models):
            total += w * to_fer7(model.predict_proba(faces, tta=tta, batch_size=batch_size).numpy(), model.labels)
        probs = to_fer7(total, FER7)  # renormalised
        return torch.from_numpy(probs[:, [FER7.index(lab) for lab in self.labels]]).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("an ensemble combines probabilities: use predict_proba")


def _check_members(members: Sequence[str], recorded: Sequence[str], found: Sequence[str]) -> None:
    """Refuse an ensemble whose members are no longer the models it was selected with (a path now holding
    another model would silently change it)."""
    if len(recorded) != len(members):
        raise ValueError(f"the ensemble records {len(recorded)} member fingerprints for {len(members)} members")
    changed = [m for m, a, b in zip(members, recorded, found) if a != b]
    if changed:
        raise ValueError(f"ensemble member(s) {', '.join(changed)} no longer hold the model the ensemble was "
                         "selected with (their weights or config changed); re-run eval/ensemble.py on the "
                         "current members, or point the ensemble at the original ones")


def greedy_weights(probs: Sequence[np.ndarray], y: np.ndarray, rounds: int = 20) -> list[int]:
    """Ensemble selection (Caruana et al. 2004): add, with replacement, the member whose inclusion most
    raises accuracy on held-out data, ``rounds`` times, and keep the best prefix of those picks;
    returns how often each member was picked (so never worse there than the best single member).

    ``probs`` are the members' (N, 7) FER-7 probabilities on validation. Ties go to the earlier member,
    so the result is deterministic; members never picked get weight 0."""
    if not probs:
        raise ValueError("no member probabilities to select from")
    counts, total = [0] * len(probs), np.zeros_like(probs[0], dtype=np.float64)
    best_counts, best_acc = list(counts), -1.0
    for _ in range(rounds):
        scores = [((total + p).argmax(1) == y).mean() for p in probs]
        pick = int(np.argmax(scores))
        counts[pick] += 1
        total += probs[pick]
        if scores[pick] > best_acc:
            best_counts, best_acc = list(counts), scores[pick]
    return best_counts
