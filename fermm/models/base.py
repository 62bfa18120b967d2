"""The one interface every fermm model offers: labels, preprocessing, ``predict_proba``, save / load."""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from fermm.models.runtime import NUMPY_VIEWS, OnnxForward
from fermm.transforms import faces_to_array, tta_views

log = logging.getLogger(__name__)


class FermmModel(nn.Module, PyTorchModelHubMixin, library_name="fermm", repo_url="https://github.com/fermm/fermm",
                 license="mit"):
    """What every fermm model (face or text) shares: Hub save/load with ``fermm_class`` in config.json,
    and saving with its model card and training arguments."""

    def save_pretrained(self, save_directory, **kwargs):
        """The hub mixin's save, with the class name in ``config.json`` so :func:`fermm.models.load_model`
        can rebuild any fermm model from its folder alone."""
        config = {**(self._hub_mixin_config or {}), "fermm_class": type(self).__name__}
        return super().save_pretrained(save_directory, config=config, **kwargs)

    def for_inference(self, folder: str | Path | None = None) -> "FermmModel":
        """Eval mode, laid out for fast CPU inference (subclasses may do more, e.g. use a graph stored in
        ``folder``, the folder the model was loaded from); what :func:`load_model` returns."""
        return self.eval()

    def save_with_card(self, folder: str | Path, card: str | None = None, training_args: dict | None = None,
                       fp16: bool = False) -> Path:
        """``save_pretrained`` (+ fp16 weights if asked) and write the card and training arguments."""
        folder = Path(folder)
        model = self
        if fp16:  # a copy, so the in-memory model keeps fp32

            model = copy.deepcopy(self).half()
        model.save_pretrained(folder)
        if card is not None:
            (folder / "README.md").write_text(card)
        if training_args is not None:
            (folder / "training_args.json").write_text(json.dumps(training_args, indent=2, default=str))
        return folder


class LearnedOnly:
    """Mixin for models on a frozen or packaged base: save only what is learned (``learned_state_dict``,
    ``learned_metadata``) to ``learned_file``, and on load rebuild the model from config.json, then load
    those tensors, refusing anything that does not match this model exactly (names, shapes, metadata)."""

    learned_file: str = "model.safetensors"

    def learned_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()}

    def learned_metadata(self) -> dict[str, str]:
        return {}

    def peft_parts(self) -> dict[str, nn.Module]:
        """{state-dict prefix: peft model} whose adapters are saved and loaded by peft's own functions."""
        return {}

    def peft_state(self) -> dict[str, torch.Tensor]:
        """The adapter tensors of :meth:`peft_parts`, named by ``get_peft_model_state_dict`` under their prefix."""
        if not self.peft_parts():
            return {}
        from peft import get_peft_model_state_dict  # lazy: a heavy import, paid only when this runs

        return {prefix + k: v.detach().contiguous() for prefix, module in self.peft_parts().items()
                for k, v in get_peft_model_state_dict(module, save_embedding_layers=False).items()}

    def _save_pretrained(self, save_directory: Path) -> None:
        state = self.learned_state_dict()
        if state:
            save_file(state, str(Path(save_directory) / self.learned_file),
                      metadata={"format": "pt", **self.learned_metadata()})

    def load_learned(self, state: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> None:
        """Load saved learned tensors (any float dtype, e.g. an fp16 bundle) after checking they fit."""
        expected = self.learned_state_dict()
        if self.peft_parts():  # adapters saved before peft's own state dicts carried the adapter name
            state = {k.replace(".default.", ".") if "lora_" in k else k: v for k, v in state.items()}
        mine = self.learned_metadata()
        wrong = {k: (v, mine[k]) for k, v in (metadata or {}).items() if k in mine and mine[k] != v}
        if wrong:
            raise ValueError(f"the saved weights file does not match this model: {wrong} (saved, expected)")
        if set(state) != set(expected):
            raise ValueError(f"saved tensors {sorted(set(state) ^ set(expected))[:5]} do not match the model's "
                             f"learned parameters")
        for k, v in state.items():
            if v.shape != expected[k].shape:
                raise ValueError(f"{k}: saved shape {tuple(v.shape)} != expected {tuple(expected[k].shape)}")
        self._load_tensors({k: v.to(expected[k].dtype) for k, v in state.items()})

    def _load_tensors(self, state: dict[str, torch.Tensor]) -> None:
        """Adapters through ``set_peft_model_state_dict``, the rest by name; a tensor that lands nowhere is an error."""
        rest = dict(state)
        for prefix, module in self.peft_parts().items():
            from peft import set_peft_model_state_dict  # lazy: a heavy import, paid only when this runs

            part = {k[len(prefix):]: rest.pop(k) for k in list(rest) if k.startswith(prefix)}
            if set_peft_model_state_dict(module, part).unexpected_keys:
                raise ValueError(f"adapter tensors under {prefix!r} do not fit this model's adapters")
        unexpected = self.load_state_dict(rest, strict=False).unexpected_keys
        if unexpected:
            raise ValueError(f"saved tensors {unexpected[:5]} do not fit this model")

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision=None, cache_dir=None, force_download=False,
                         local_files_only=False, token=None, map_location="cpu", strict=True, **model_kwargs):
        model = cls(**model_kwargs)
        if not model.learned_state_dict():  # e.g. CLIP zero-shot: config.json is the whole checkpoint
            return model
        path = Path(model_id) / cls.learned_file
        if not path.exists():
            path = Path(hf_hub_download(model_id, cls.learned_file, revision=revision, cache_dir=cache_dir,
                                        force_download=force_download, token=token,
                                        local_files_only=local_files_only))
        with safe_open(str(path), framework="pt") as f:
            state, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
        model.load_learned(state, metadata)
        return model


class EmotionClassifier(FermmModel, tags=["facial-expression-recognition", "image-classification", "fermm"]):
    """Base class: subclasses build their layers in ``__init__`` from JSON-able keyword arguments.

    The hub mixin stores those arguments in ``config.json`` and the weights as safetensors, so a saved
    folder (or Hub repo) rebuilds its model alone: ``CNNClassifier.from_pretrained(path)``.
    Subclasses set ``labels``, ``input_size``, ``channels``, ``mean``, ``std`` and implement ``forward``
    on a normalised (N, C, H, W) batch, returning (N, n_labels) logits.
    """

    family: str = "base"
    fast_forward = None  # set by ``for_inference`` when ONNX Runtime runs the same graph (fermm.models.runtime)
    labels: tuple[str, ...]
    input_size: int
    channels: int
    mean: Sequence[float]
    std: Sequence[float]

    def preprocess(self, faces: Sequence) -> torch.Tensor:
        """Face crops (PIL or uint8 arrays, any size or mode) -> normalised model input."""
        return torch.from_numpy(self.preprocess_array(faces))

    def preprocess_array(self, faces: Sequence) -> np.ndarray:
        """:meth:`preprocess` as a float32 numpy array: what an ONNX Runtime graph (``fast_forward``) is fed.
        A subclass that preprocesses otherwise overrides this (:meth:`preprocess` wraps it) or both."""
        return faces_to_array(faces, self.input_size, self.channels, self.mean, self.std)

    def predict_proba(self, faces: Sequence, texts: Sequence[str] | None = None, tta: str = "none",
                      batch_size: int = 64) -> torch.Tensor:
        """(N, n_labels) probabilities for N face crops; ``texts`` is ignored by image-only models."""
        if len(faces) == 0:
            return torch.empty(0, len(self.labels))
        if self.training:  # checked, not set: .eval() walks every submodule, 0.8 ms per call for VGG11
            self.eval()
        out = [self._proba_faces(faces[i:i + batch_size], tta) for i in range(0, len(faces), batch_size)]
        return out[0] if len(out) == 1 else torch.cat(out)

    def _proba_faces(self, faces: Sequence, tta: str) -> torch.Tensor:
        """One batch of crops -> probabilities, by the served graph in numpy when it still holds these weights."""
        fast = self.fast_forward
        if isinstance(fast, OnnxForward) and tta in NUMPY_VIEWS and fast.holds(self):
            return fast.proba(self.preprocess_array(faces), tta)  # numpy from crop to probabilities
        with torch.inference_mode():
            return self._proba(self.preprocess(faces), tta)

    @torch.inference_mode()
    def proba_from_tensor(self, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
        """Mean softmax over the TTA views of a preprocessed batch, all views in one call (small nets' calls are
        mostly fixed cost: `fast_cnn` with flip views takes 3.1 ms per face at batch 1 against 2.1 without)."""
        if self.training:
            self.eval()
        return self._proba(x, tta)

    def _proba(self, x: torch.Tensor, tta: str) -> torch.Tensor:
        # the body of proba_from_tensor, called in inference mode: at batch 1 a small net's graph takes ~0.45 ms,
        # so each context switch, copy and no-op mean here is a visible share of the time per face
        views = tta_views(x, tta)
        fast = self.fast_forward
        run = fast if fast is not None and fast.serves(self, x) else self
        probs = run(torch.cat(views) if len(views) > 1 else x).float().softmax(-1)
        return probs if len(views) == 1 else probs.view(len(views), len(x), -1).mean(0)
