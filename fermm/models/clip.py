"""CLIP-based classifiers on transformers' ``CLIPModel``: zero-shot, linear probe and fine-tuning.

All of them score "normalised image features @ class weights" (as open_clip's zero-shot classifier
does); they differ in where the class weights come from and what trains. Only what is learned is
saved (the head, the LoRA adapter, or the tuned vision tower), with the base model id in
``config.json``; the base CLIP (``openai/clip-vit-base-patch32`` by default, any CLIP id or local
folder) is loaded from the Hub or its folder and is never copied into fermm checkpoints.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fermm.labels import (
    FER7,
    LABEL_WORDS,
    PROMPT_NAMES,
    PROMPT_TEMPLATES,
    TEXT_PROMPT_TEMPLATES,
)
from fermm.models.base import EmotionClassifier, LearnedOnly
from fermm.models.clip_features import clip_input
from fermm.models.textprep import clean_text
from fermm.transforms import CLIP_MEAN, CLIP_STD, face_tensor

log = logging.getLogger(__name__)
DEFAULT_CLIP = "openai/clip-vit-base-patch32"
LEARNED_FILE = "learned.safetensors"


class BaseWeightsUnavailable(OSError):
    """The pretrained CLIP (or other base model) cannot be loaded here; the message says why."""


def load_clip(base_model: str):
    """(CLIPModel, CLIPTokenizer) from a Hub id or local folder, frozen and in eval mode."""
    from transformers import CLIPModel, CLIPTokenizer  # lazy: a heavy import, paid only when this runs

    try:
        model = CLIPModel.from_pretrained(base_model)
        tokenizer = CLIPTokenizer.from_pretrained(base_model)
    except (OSError, ValueError) as e:
        raise BaseWeightsUnavailable(
            f"pretrained CLIP weights {base_model!r} are not available here (offline with no cached copy, or no "
            f"such folder); CLIP models need them from the Hugging Face Hub or a local folder "
            f"[{type(e).__name__}: {str(e).splitlines()[0][:160]}]") from None
    model.requires_grad_(False).eval()
    return model, tokenizer


def image_features(clip, pixels: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) normalised pixels -> (N, D) unit image embeddings."""
    return F.normalize(clip.get_image_features(pixel_values=pixels).pooler_output, dim=-1)


@torch.no_grad()
def text_features(clip, tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """(len(texts), D) unit text embeddings."""
    # CLIP reads at most 77 tokens: longer user text is cut (the tower would refuse it)
    tok = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt",
                    max_length=clip.config.text_config.max_position_embeddings)
    return F.normalize(clip.get_text_features(**tok).pooler_output, dim=-1)


def zero_shot_weights(clip, tokenizer, labels: Sequence[str], templates: Sequence[str] = PROMPT_TEMPLATES,
                      names: dict[str, Sequence[str]] = PROMPT_NAMES) -> torch.Tensor:
    """(C, D) class weights: per class, the normalised mean of its prompts' embeddings over every
    template x synonym (the prompt ensemble of Radford et al. 2021)."""
    rows = []
    for label in labels:
        prompts = [t.format(n) for t in templates for n in names.get(label, (label,))]
        rows.append(F.normalize(text_features(clip, tokenizer, prompts).mean(0), dim=-1))
    return torch.stack(rows)


class ClipClassifier(LearnedOnly, EmotionClassifier):
    """Base of the CLIP family: builds the base CLIP and saves only what is learned.

    Subclasses implement ``class_weights()`` (C, D) and may mark parameters as learned through
    ``learned_prefixes``; ``forward`` returns ``logit_scale * img @ weights.T``.
    """

    family = "clip"
    learned_file = LEARNED_FILE
    learned_prefixes: tuple[str, ...] = ()

    def _init_clip(self, base_model: str, labels: Sequence[str]) -> None:
        self.base_model, self.labels = base_model, tuple(labels)
        self.clip, self.tokenizer = load_clip(base_model)
        self.input_size = self.clip.config.vision_config.image_size
        self.channels, self.mean, self.std = 3, CLIP_MEAN, CLIP_STD

    def image_embed(self, x: torch.Tensor) -> torch.Tensor:
        return image_features(self.clip, x)

    def preprocess(self, faces: Sequence) -> torch.Tensor:
        """Face crops -> CLIP input by training's path (``clip_input``: torch bicubic on floats, not PIL's
        resize of uint8), so a FER2013 face is scored exactly as it was trained and validated on."""
        return torch.cat([clip_input(face_tensor(f), self.input_size, self.mean, self.std) for f in faces])

    def preprocess_array(self, faces: Sequence) -> np.ndarray:
        return self.preprocess(faces).numpy()

    def class_weights(self) -> torch.Tensor:
        raise NotImplementedError

    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp().clamp(max=100)

    def logits_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, D) unit image features -> (N, C) logits (what trains on cached features)."""
        return self.logit_scale() * feats @ self.class_weights().T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, C) logits."""
        return self.logits_from_features(self.image_embed(x))

    # ------------------------------------------------------------------ joint image + text scoring

    @torch.no_grad()
    def text_logits(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, C) CLIP's reading of N sentences: each sentence's embedding against sentence prompts for
        this model's labels ("a sentence expressing {word}."), in the same text tower as the image scores."""
        feats = text_features(self.clip, self.tokenizer, texts)
        if getattr(self, "_sentence_weights", None) is None:  # computed once, on first use
            self._sentence_weights = zero_shot_weights(self.clip, self.tokenizer, self.labels,
                                                       TEXT_PROMPT_TEMPLATES, LABEL_WORDS)
        return self.logit_scale() * feats @ self._sentence_weights.to(feats).T

    @torch.inference_mode()
    def joint_proba(self, probs: torch.Tensor, text: str, text_weight: float = 1.0) -> torch.Tensor:
        """Image probabilities (N, C) scored jointly with one sentence:
        p(c) ~ p_image(c) * p_text(c) ** text_weight (a product of experts in CLIP's shared space)."""

        text_logp = self.text_logits([clean_text(text)[0]]).float().log_softmax(-1)  # (1, C), shared by all faces
        return (probs.float().clamp_min(1e-12).log() + text_weight * text_logp).softmax(-1)

    @torch.inference_mode()
    def predict_proba(self, faces: Sequence, texts: Sequence[str] | None = None, tta: str = "none",
                      batch_size: int = 64, text_weight: float = 1.0) -> torch.Tensor:
        """(N, C) probabilities; with ``texts`` (one sentence, or one per face) the joint image + text score
        of :meth:`joint_proba`. No text (or ``text_weight=0``) gives the image-only result exactly."""
        probs = super().predict_proba(faces, tta=tta, batch_size=batch_size)
        if texts is None or len(faces) == 0 or text_weight == 0:
            return probs
        if len(texts) not in (1, len(faces)):
            raise ValueError(f"give one sentence or one per face: {len(texts)} sentences for {len(faces)} faces")
        if len(texts) == 1:
            return self.joint_proba(probs, texts[0], text_weight)
        return torch.cat([self.joint_proba(probs[i:i + 1], t, text_weight) for i, t in enumerate(texts)])

    # ------------------------------------------------------------------ save only what is learned

    def learned_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()
                if k.startswith(self.learned_prefixes)}

    def learned_metadata(self) -> dict[str, str]:
        return {"base_model": self.base_model, "labels": ",".join(self.labels), "fermm_class": type(self).__name__}


class ClipZeroShot(ClipClassifier):
    """CLIP zero-shot: class weights from an ensemble of prompt templates and label synonyms,
    computed once (nothing is trained, so nothing but ``config.json`` is saved)."""

    def __init__(self, base_model: str = DEFAULT_CLIP, labels: Sequence[str] = FER7,
                 templates: Sequence[str] = PROMPT_TEMPLATES):
        super().__init__()
        self._init_clip(base_model, labels)
        self.templates = tuple(templates)
        self.register_buffer("weights", zero_shot_weights(self.clip, self.tokenizer, self.labels, self.templates),
                             persistent=False)

    def class_weights(self) -> torch.Tensor:
        return self.weights


class ClipLinear(ClipClassifier):
    """A linear probe on frozen CLIP image features, initialised from the zero-shot weights
    (so it starts as the zero-shot classifier). Trains on cached features (see fermm.models.clip_features)."""

    learned_prefixes = ("head.",)

    def __init__(self, base_model: str = DEFAULT_CLIP, labels: Sequence[str] = FER7,
                 templates: Sequence[str] = PROMPT_TEMPLATES):
        super().__init__()
        self._init_clip(base_model, labels)
        self.templates = tuple(templates)
        w = zero_shot_weights(self.clip, self.tokenizer, self.labels, self.templates)
        self.head = nn.Linear(w.shape[1], len(self.labels))
        with torch.no_grad():
            self.head.weight.copy_(w * self.logit_scale())
            self.head.bias.zero_()

    def logits_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)


class ClipFinetune(ClipClassifier):
    """Fine-tuned CLIP vision tower with a zero-shot-initialised head: ``mode="full"`` trains the whole
    vision tower; ``mode="lora"`` adds LoRA adapters (peft) on its attention q/v projections.

    Saved: the head plus either the LoRA tensors or the full vision tower + projection.
    """

    def __init__(self, base_model: str = DEFAULT_CLIP, labels: Sequence[str] = FER7, mode: str = "lora",
                 lora_r: int = 8, lora_alpha: int = 16, lora_dropout: float = 0.1,
                 templates: Sequence[str] = PROMPT_TEMPLATES):
        super().__init__()
        if mode not in ("full", "lora"):
            raise ValueError(f"mode must be 'full' or 'lora', not {mode!r}")
        self._init_clip(base_model, labels)
        self.mode, self.templates = mode, tuple(templates)
        w = zero_shot_weights(self.clip, self.tokenizer, self.labels, self.templates)
        self.head = nn.Linear(w.shape[1], len(self.labels))
        with torch.no_grad():
            self.head.weight.copy_(w * self.logit_scale())
            self.head.bias.zero_()
        if mode == "lora":
            from peft import LoraConfig, get_peft_model  # lazy: a heavy import, paid only when this runs

            cfg = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                             target_modules=["q_proj", "v_proj"], bias="none")
            self.vision = get_peft_model(self.clip.vision_model, cfg)
            self.learned_prefixes = ("head.", "vision.")
        else:
            self.vision = self.clip.vision_model
            self.vision.requires_grad_(True)
            self.clip.visual_projection.requires_grad_(True)
            self.learned_prefixes = ("head.", "clip.vision_model.", "clip.visual_projection.")

    def peft_parts(self) -> dict[str, nn.Module]:
        return {"vision.": self.vision} if self.mode == "lora" else {}

    def learned_state_dict(self) -> dict[str, torch.Tensor]:
        if self.mode != "lora":
            return super().learned_state_dict()
        # the adapters of the wrapped tower (peft's state dict) and the head
        return {**self.peft_state(), **{k: v.detach().contiguous() for k, v in self.head.state_dict(prefix="head.").items()}}

    def image_embed(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.vision(pixel_values=x).pooler_output
        return F.normalize(self.clip.visual_projection(pooled), dim=-1)

    def logits_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)

    def merge_lora(self) -> None:
        """Fold the LoRA adapters into the vision weights (same outputs, no adapter overhead)."""
        if self.mode == "lora":
            self.vision = self.vision.merge_and_unload()
            self.mode = "merged"
