"""CoOp: learned prompt context on a frozen CLIP (Zhou et al., "Learning to Prompt for Vision-Language
Models", IJCV 2022, https://arxiv.org/abs/2109.01134).

Each class prompt is ``[SOS][V1]...[VM][CLASS].[EOS]`` in token-embedding space: the M context vectors
are the only trained parameters (unified: shared by all classes; class-specific: one set per class),
the class name tokens and EOS come from the tokenizer and stay fixed, and the text transformer pools
at the EOS position exactly as CLIP does. The class token can sit at the end, middle or front.
Saved: the context alone, with the metadata needed to rebuild everything else (validated on load).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fermm.labels import FER7, PROMPT_NAMES
from fermm.models.clip import DEFAULT_CLIP, ClipClassifier

POSITIONS = ("end", "middle", "front")


def class_names(labels: Sequence[str]) -> list[str]:
    """The word used for each class inside prompts (the adjective form, e.g. "surprised")."""
    return [PROMPT_NAMES.get(lab, (lab,))[0] for lab in labels]


class CoOp(ClipClassifier):
    """Args:
        n_ctx: number of context vectors M (16, or 4 when initialised from "a photo of a").
        ctx_init: words to initialise the context from (their token embeddings); "" = N(0, 0.02).
        class_specific: one context per class instead of one shared context.
        position: where the class name goes: "end", "middle" or "front".
    """

    learned_prefixes = ("ctx",)

    def __init__(self, base_model: str = DEFAULT_CLIP, labels: Sequence[str] = FER7, n_ctx: int = 16,
                 ctx_init: str = "", class_specific: bool = False, position: str = "end"):
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, not {position!r}")
        self._init_clip(base_model, labels)
        self.n_ctx, self.ctx_init, self.class_specific, self.position = n_ctx, ctx_init, class_specific, position
        text = self.clip.text_model
        self.dim = text.embeddings.token_embedding.weight.shape[1]
        ctx = self._initial_context()  # (n_ctx, dim)
        if class_specific:
            ctx = ctx.unsqueeze(0).repeat(len(self.labels), 1, 1)  # (n_cls, n_ctx, dim)
        self.ctx = nn.Parameter(ctx)
        self._build_token_buffers()

    def _initial_context(self) -> torch.Tensor:
        emb = self.clip.text_model.embeddings.token_embedding.weight
        if not self.ctx_init:
            return torch.empty(self.n_ctx, self.dim).normal_(std=0.02)
        ids = self.tokenizer(self.ctx_init, add_special_tokens=False)["input_ids"]
        if len(ids) != self.n_ctx:
            raise ValueError(f"ctx_init {self.ctx_init!r} is {len(ids)} tokens; n_ctx must equal that")
        return emb[torch.tensor(ids)].detach().clone()

    def _build_token_buffers(self) -> None:
        """Token ids of "X X ... X name." per class (X = placeholder for a context slot) and their
        embeddings; rebuilt from the class names, never saved (CoOp's own loader does the same)."""
        names = class_names(self.labels)
        placeholder = " ".join(["X"] * self.n_ctx)
        tok = self.tokenizer([f"{placeholder} {n}." for n in names], padding="max_length",
                             max_length=self.clip.config.text_config.max_position_embeddings, return_tensors="pt")
        ids = tok["input_ids"]  # (n_cls, L)
        name_lens = [len(self.tokenizer(n, add_special_tokens=False)["input_ids"]) for n in names]
        with torch.no_grad():
            emb = self.clip.text_model.embeddings.token_embedding(ids)  # (n_cls, L, dim)
        self.register_buffer("token_ids", ids, persistent=False)
        self.register_buffer("token_emb", emb, persistent=False)
        self.name_lens = name_lens

    def prompts(self) -> torch.Tensor:
        """(n_cls, L, dim) prompt embeddings with the context placed according to ``position``."""
        n_cls, m = len(self.labels), self.n_ctx
        ctx = self.ctx if self.class_specific else self.ctx.unsqueeze(0).expand(n_cls, -1, -1)
        prefix = self.token_emb[:, :1]  # SOS
        if self.position == "end":
            return torch.cat([prefix, ctx, self.token_emb[:, 1 + m:]], dim=1)
        rows = []
        for i, n in enumerate(self.name_lens):
            name = self.token_emb[i:i + 1, 1 + m:1 + m + n]
            rest = self.token_emb[i:i + 1, 1 + m + n:]  # ".", EOS, padding
            c = ctx[i:i + 1]
            if self.position == "front":
                rows.append(torch.cat([prefix[i:i + 1], name, c, rest], dim=1))
            else:  # middle: half the context, the name, the other half
                h = m // 2
                rows.append(torch.cat([prefix[i:i + 1], c[:, :h], name, c[:, h:], rest], dim=1))
        return torch.cat(rows)

    def encode_prompts(self, embeds: torch.Tensor) -> torch.Tensor:
        """Run CLIP's text transformer on prompt embeddings; pool at EOS as CLIPTextModel does."""
        from transformers.masking_utils import create_causal_mask  # lazy: a heavy import, paid only when this runs

        text = self.clip.text_model
        hidden = text.embeddings(inputs_embeds=embeds)  # adds position embeddings
        mask = create_causal_mask(config=text.config, inputs_embeds=hidden, attention_mask=None,
                                  past_key_values=None)
        hidden = text.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
        hidden = text.final_layer_norm(hidden)
        # the EOS position does not move: the context replaces placeholders one for one
        eos = (self.token_ids == text.eos_token_id).int().argmax(-1) if text.eos_token_id != 2 \
            else self.token_ids.argmax(-1)
        pooled = hidden[torch.arange(hidden.shape[0]), eos]  # (n_cls, width)
        return F.normalize(self.clip.text_projection(pooled), dim=-1)

    def class_weights(self) -> torch.Tensor:
        return self.encode_prompts(self.prompts())

    def learned_metadata(self) -> dict[str, str]:
        return {**super().learned_metadata(), "n_ctx": str(self.n_ctx), "ctx_init": self.ctx_init,
                "class_specific": str(self.class_specific), "position": self.position, "dim": str(self.dim)}
