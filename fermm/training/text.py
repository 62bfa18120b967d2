"""Recipes for ``train/text.py``: the GRU baseline and MiniLM (LoRA or full) on GoEmotions (Ekman = FER-7
labels, multi-label), GoEmotions + DAIR-AI (DAIR's rows as partial labels), or DAIR-AI alone (its 6 labels)."""
from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fermm import data
from fermm.data.goemotions import dair_as_fer7, load_goemotions, multi_hot
from fermm.evaluation import cards
from fermm.evaluation.calibration import fit_temperature, fit_thresholds, multilabel_macro_f1
from fermm.evaluation.text_scores import PAPER_THRESHOLD  # the best epoch: macro-F1 at the paper's threshold
from fermm.labels import FER7, TEXT6
from fermm.models.text import TextCLIP, TextGRU, TextMiniLM
from fermm.models.textprep import words
from fermm.models.wordvec import WordVectors
from fermm.paths import SHARED_DATA
from fermm.training.image import _save_best
from fermm.training import loop
from fermm.training.loop import Trainer

log = logging.getLogger(__name__)
DEFAULT_TEXT = SHARED_DATA / "emotion_text"
DEFAULT_GO = SHARED_DATA / "goemotions_ekman"
DEFAULT_VECTORS = SHARED_DATA.parent / "weights" / "word2vec-gnews-subset" / "word2vec_gnews_subset_300d.npz"


class TextTask:
    """Sentence classification; batches are (model inputs, labels)."""

    def __init__(self, model, train: tuple[list[str], np.ndarray], val: tuple[list[str], np.ndarray],
                 label_smoothing: float = 0.0, eval_batch: int = 128):
        self.encode = model.encode_batch
        self.texts, self.y = train[0], torch.as_tensor(train[1])
        self.val_texts, self.val_y = val[0], torch.as_tensor(val[1])
        self.smoothing, self.eval_batch = label_smoothing, eval_batch
        self.lengths = np.array([len(t) for t in self.texts])

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self.texts) // batch_size)

    def batches(self, epoch: int, batch_size: int, gen: torch.Generator) -> Iterator[tuple]:
        for idx in bucketed_batches(self.lengths, batch_size, gen, self.steps_per_epoch(batch_size)):
            yield self.encode([self.texts[j] for j in idx]), self.y[idx]

    def loss(self, model, batch: tuple) -> tuple[torch.Tensor, int]:
        inputs, y = batch
        logits = model(**inputs)
        return F.cross_entropy(logits.float(), y, label_smoothing=self.smoothing), int((logits.argmax(-1) == y).sum())

    @torch.no_grad()
    def validate(self, model) -> dict[str, float]:
        model.eval()
        logits = torch.cat([model(**self.encode(self.val_texts[i:i + self.eval_batch])).float()
                            for i in range(0, len(self.val_texts), self.eval_batch)])
        return {"accuracy": float((logits.argmax(-1) == self.val_y).float().mean()),
                "loss": float(F.cross_entropy(logits, self.val_y))}


class MultiLabelTextTask(TextTask):
    """One sigmoid per label (binary cross-entropy), as in the GoEmotions paper; ``mask`` zero where a row's
    label is unknown (DAIR-AI rows say nothing about neutral or disgust). The best epoch is chosen on
    validation macro-F1 at the paper's threshold."""

    def __init__(self, model, train: tuple[list[str], np.ndarray, np.ndarray], val: tuple[list[str], np.ndarray],
                 eval_batch: int = 128):
        super().__init__(model, (train[0], np.zeros(len(train[0]), dtype=np.int64)), (val[0], val[1].argmax(1)),
                         eval_batch=eval_batch)
        self.y, self.mask, self.val_multi = torch.as_tensor(train[1]), torch.as_tensor(train[2]), val[1]

    def batches(self, epoch: int, batch_size: int, gen: torch.Generator) -> Iterator[tuple]:
        for idx in bucketed_batches(self.lengths, batch_size, gen, self.steps_per_epoch(batch_size)):
            yield self.encode([self.texts[j] for j in idx]), self.mask[idx], self.y[idx]

    def loss(self, model, batch: tuple) -> tuple[torch.Tensor, int]:
        inputs, mask, y = batch
        logits = model(**inputs).float()
        loss = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * mask).sum() / mask.sum()
        return loss, int(y.gather(1, logits.argmax(-1, keepdim=True)).sum())  # top label is one of the row's

    @torch.no_grad()
    def validate(self, model) -> dict[str, float]:
        model.eval()
        logits = torch.cat([model(**self.encode(self.val_texts[i:i + self.eval_batch])).float()
                            for i in range(0, len(self.val_texts), self.eval_batch)]).numpy()
        single = self.val_multi.sum(1) == 1
        return {"macro_f1": multilabel_macro_f1(self.val_multi, logits, PAPER_THRESHOLD),
                "accuracy": float((logits[single].argmax(1) == self.val_multi[single].argmax(1)).mean()),
                "loss": float(F.binary_cross_entropy_with_logits(torch.from_numpy(logits),
                                                                 torch.from_numpy(self.val_multi)))}


def bucketed_batches(lengths: np.ndarray, batch_size: int, gen: torch.Generator, n_batches: int,
                     pool: int = 50) -> list[np.ndarray]:
    """Random batches of similar-length sentences: shuffle, sort each pool of ``pool`` batches by length,
    cut into batches, shuffle the batches. Padding shrinks ~2x on DAIR-AI (most sentences are short)."""
    order = torch.randperm(len(lengths), generator=gen).numpy()[:n_batches * batch_size]
    chunk = pool * batch_size
    order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in np.split(order, range(chunk, len(order), chunk))])
    batches = np.split(order, range(batch_size, len(order), batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="gru", choices=("gru", "minilm", "clip"))
    p.add_argument("--mode", default="lora", choices=("lora", "full"), help="MiniLM: LoRA adapters or full fine-tuning")
    p.add_argument("--model_name_or_path", default="openai/clip-vit-base-patch32",
                   help="CLIP (--model clip): Hub id or local folder of the frozen text tower")
    p.add_argument("--data", default="goemotions+dair", choices=("goemotions+dair", "goemotions", "dair"),
                   help="GoEmotions (FER-7 labels, multi-label) with or without DAIR-AI as partial labels, or "
                        "DAIR-AI alone (its 6 labels, single-label: the earlier models)")
    p.add_argument("--goemotions", default=str(DEFAULT_GO), help="GoEmotions (Ekman): TSV/parquet folder or Hub id")
    p.add_argument("--dataset", default=str(DEFAULT_TEXT), help="DAIR-AI emotion: parquet/txt folder or Hub id")
    p.add_argument("--word_vectors", default=str(DEFAULT_VECTORS), help="GRU embedding init ('' = random)")
    p.add_argument("--vocab_size", type=int, default=20000)
    p.add_argument("--lora_r", type=int, default=8, help="MiniLM LoRA rank (alpha = 2 x rank)")
    p.add_argument("--mixed_precision", default="no", choices=("no", "bf16"), help="bf16 autocast (~1.6x on this CPU)")
    # epochs and lr: the model's preset unless given (new_text_model)
    loop.add_run_args(p, batch_size=32, optimizer="adamw", weight_decay=0.01, warmup_epochs=0.5)


def build_vocab(texts: Sequence[str], size: int, min_count: int = 2) -> list[str]:
    counts = Counter(w for t in texts for w in words(t))
    return [w for w, c in counts.most_common(size) if c >= min_count]


def init_embeddings(model: TextGRU, vectors_path: str) -> float:
    """Copy word vectors into the embedding table; returns the share of the vocabulary covered."""
    if not vectors_path:
        return 0.0

    table = WordVectors.load(vectors_path)
    if table.dim != model.embed.embedding_dim:
        raise ValueError(f"{vectors_path}: {table.dim}-d vectors, the model has {model.embed.embedding_dim}-d embeddings")
    hits = 0
    with torch.no_grad():
        for i, w in enumerate(model.vocab):
            if w in table:
                model.embed.weight[i] = torch.from_numpy(table[w])
                hits += 1
    return hits / max(1, len(model.vocab) - 2)


def text_splits(args: argparse.Namespace) -> tuple[tuple, tuple, tuple[str, ...]]:
    """(train, validation, labels). Single-label data: (texts, label ids). Multi-label: train (texts, multi-hot,
    mask), validation (texts, multi-hot), always GoEmotions' validation split (what the product reads)."""
    if args.data == "dair":
        ds = data.load_text(args.dataset)
        return (*[(list(ds[s]["text"]), np.asarray(ds[s]["label"])) for s in ("train", "validation")], TEXT6)
    go = load_goemotions(args.goemotions)
    texts, y = list(go["train"]["text"]), multi_hot(go["train"]["labels"])
    mask = np.ones_like(y)
    if args.data == "goemotions+dair":
        dair = data.load_text(args.dataset)["train"]
        y_dair, mask_dair = dair_as_fer7(np.asarray(dair["label"]))
        texts, y, mask = texts + list(dair["text"]), np.concatenate([y, y_dair]), np.concatenate([mask, mask_dair])
    return (texts, y, mask), (list(go["validation"]["text"]), multi_hot(go["validation"]["labels"])), FER7


def new_text_model(args: argparse.Namespace, train_texts: list[str], labels: tuple[str, ...]):
    """(model, recipe defaults, extra record) for ``args.model``."""
    multi = labels == FER7
    if args.model == "gru":
        model = TextGRU(vocab=build_vocab(train_texts, args.vocab_size), labels=labels, multi_label=multi)
        return model, {"epochs": 12, "lr": 2e-3}, {"embedding_coverage": init_embeddings(model, args.word_vectors)}
    if args.model == "clip":  # a head on the frozen tower, starting from CLIP's zero-shot reading
        return (TextCLIP(base_model=args.model_name_or_path, labels=labels, multi_label=multi),
                {"epochs": 5, "lr": 1e-3}, {})
    model = TextMiniLM(labels=labels, mode=args.mode, lora_r=args.lora_r, lora_alpha=2 * args.lora_r, multi_label=multi)
    return model, {"epochs": 5, "lr": 5e-4 if args.mode == "lora" else 5e-5}, {}


def train(args: argparse.Namespace):
    torch.manual_seed(args.seed)
    train_split, val_split, labels = text_splits(args)
    model, defaults, extra = new_text_model(args, train_split[0], labels)
    multi = len(train_split) == 3
    cfg = loop.run_config(args, Path(args.output_dir) / "stage_text", defaults, mixed_precision=args.mixed_precision,
                          channels_last=False, select_metric="macro_f1" if multi else "accuracy",
                          extra={**vars(args), **extra})
    task = (MultiLabelTextTask(model, train_split, val_split) if multi
            else TextTask(model, train_split, val_split, args.label_smoothing))
    trainer = Trainer(model, task, cfg, task.steps_per_epoch(cfg.batch_size), save_best=_save_best)
    trainer.resume()
    trainer.fit()
    best = type(model).from_pretrained(str(Path(cfg.output_dir) / "best"))
    extra["calibration"] = calibrate(best, val_split, multi)
    return best, extra


def calibrate(model, val_split: tuple, multi: bool) -> dict:
    """Fit the softmax temperature (single-label validation rows) and, multi-label, per-label thresholds
    (validation F1) into ``model``; returns what was fitted, for the record."""
    logits = model.logits_text(val_split[0]).numpy()
    y = val_split[1]
    single = y.sum(1) == 1 if multi else np.ones(len(y), bool)
    labels = y.argmax(1) if multi else y
    temperature = fit_temperature(logits[single], labels[single])
    thresholds = fit_thresholds(y, logits) if multi else None
    model.calibrate(temperature, thresholds)
    return {"temperature": temperature, "thresholds": thresholds,
            "val_macro_f1_fitted_thresholds": multilabel_macro_f1(y, logits, thresholds) if multi else None}


def finish(model, args: argparse.Namespace, name: str, extra: dict) -> Path:
    training = {**vars(args), **extra}
    return loop.finish(model, args.output_dir, args.push_to_hub, training, "stage_text",
                       lambda history: cards.text_model_card(name, model, training=training, history=history))
