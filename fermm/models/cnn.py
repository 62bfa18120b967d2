"""CNN backbones for 48x48 grayscale faces (torchvision VGG / ResNet definitions, adapted) and the
two heads trained on them: a linear classifier and Bülbül's word-vector projection.

Adaptations for 48 px (torchvision's are for 224 px):
- VGG: a 1-channel first conv; the last max-pool is dropped so the final map is 3x3, not 1x1; global
  average pooling and a small head replace the 4096-wide classifier (which alone is 120M parameters).
- ResNet: ``stem="small"`` uses a 3x3 stride-1 conv and keeps the max-pool (layer1 at 24x24), rather
  than torchvision's 7x7 stride-2 conv + max-pool (layer1 at 12x12, layer4 at 2x2). ``stem="imagenet"``
  keeps torchvision's stem; ``bench/throughput.py`` measures both.
- ``wrn16_4`` and ``xception``: :mod:`fermm.models.nets`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from fermm.labels import FER7
from fermm.models.base import EmotionClassifier
from fermm.models.nets import mini_xception, wide_resnet
from fermm.models.quantize import stored_int8
from fermm.models.runtime import try_onnx
from fermm.transforms import FER_MEAN, FER_STD

BACKBONES: tuple[str, ...] = ("vgg11", "vgg16", "resnet18", "resnet50", "mini", "fast", "fast2", "wrn16_4",
                              "xception")
# small VGGs for distilled students: "mini" (~1.2M params, 116M multiply-adds) and "fast" (~1.1M, 50M: one
# conv at 48x48 and one at 24x24; its bare graph runs in 0.7 ms here in ONNX Runtime, bench/latency.py times it)
SMALL_CFGS: dict[str, tuple] = {"mini": (32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256),
                                "fast": (32, "M", 64, "M", 128, 128, "M", 256, 256),
                                "fast2": (32, "M", 64, "M", 128, 128, "M", 256, 256)}
# "fast2" is "fast" with its first pool folded into the first conv's stride: that conv, at 48x48 with one input
# channel, was ONNX Runtime's slowest int8 node (185 of 860 us for a face and its mirror); at stride 2 the graph takes
# 0.69 ms for both instead of 0.85. Same weights and names as "fast" (the pool is an Identity), so one warm-starts
# the other.
STRIDED_STEM = ("fast2",)


def make_backbone(name: str, in_chans: int = 1, stem: str = "small") -> tuple[nn.Module, int]:
    """A feature extractor mapping (N, in_chans, 48, 48) -> (N, D) and its width D."""
    if name in SMALL_CFGS:
        features = vgg_layers(SMALL_CFGS[name], in_chans)
        if name in STRIDED_STEM:
            assert isinstance(features[3], nn.MaxPool2d), "fast2's first pool is the 4th layer (conv, bn, relu, pool)"
            features[0].stride, features[3] = (2, 2), nn.Identity()
        return nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten()), SMALL_CFGS[name][-1]
    if name in ("vgg11", "vgg16"):
        return nn.Sequential(_vgg_features(name, in_chans), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 512
    if name in ("resnet18", "resnet50"):
        net = getattr(torchvision.models, name)(weights=None, zero_init_residual=True)
        if stem == "small":
            net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        elif stem == "imagenet":
            net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            raise ValueError(f"unknown stem {stem!r}; expected 'small' or 'imagenet'")
        width = net.fc.in_features
        net.fc = nn.Identity()
        return net, width
    if name == "wrn16_4":
        return wide_resnet(in_chans, depth=16, width=4)
    if name == "xception":
        return mini_xception(in_chans)
    raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")


def vgg_layers(cfg: Sequence, in_chans: int) -> nn.Sequential:
    """torchvision's VGG layers with batch norm for ``cfg``, taking ``in_chans`` channels."""
    features = torchvision.models.vgg.make_layers(list(cfg), batch_norm=True)
    features[0] = nn.Conv2d(in_chans, cfg[0], kernel_size=3, padding=1)
    return features


def _vgg_features(name: str, in_chans: int) -> nn.Sequential:
    """``vgg11_bn`` / ``vgg16_bn``'s features (same layers and state-dict keys) with torchvision's init, built
    without its ImageNet classifier: that head's 124M unused weights cost ~500 MB of peak memory at every load.
    (Runs from scratch since 2026-12-06 draw other initial weights than before for the same seed.)"""
    features = vgg_layers(torchvision.models.vgg.cfgs["A" if name == "vgg11" else "D"], in_chans)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return features[:-1]  # drop the last max-pool: 48 -> 3x3 final map


def projection(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """Seed 003's MLP mapping a feature into the shared image/label space."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d_out))


class CNNClassifier(EmotionClassifier):
    """A backbone + linear classifier; with ``word_dim`` also Bülbül's word-vector projection head.

    Args:
        backbone: one of :data:`BACKBONES`.
        labels: class names, in logit order.
        word_dim: dimension of the label word vectors (0: plain classifier, no projection head).
        proj_hidden / proj_dim: the MLP projections (Bülbül: 256 -> 64).
        tau: contrastive temperature, also used for zero-shot logits.
    """

    family = "cnn"

    def __init__(self, backbone: str = "vgg11", labels: Sequence[str] = FER7, input_size: int = 48,
                 channels: int = 1, mean: Sequence[float] = FER_MEAN, std: Sequence[float] = FER_STD,
                 stem: str = "small", dropout: float = 0.3, word_dim: int = 0, proj_hidden: int = 256,
                 proj_dim: int = 64, tau: float = 0.1):
        super().__init__()
        self.backbone_name, self.labels = backbone, tuple(labels)
        self.input_size, self.channels, self.mean, self.std = input_size, channels, tuple(mean), tuple(std)
        self.tau, self.stem = tau, stem
        self.backbone, width = make_backbone(backbone, channels, stem)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, len(self.labels))
        self.word_dim = word_dim
        if word_dim:
            self.image_proj = projection(width, proj_hidden, proj_dim)
            self.label_proj = projection(word_dim, proj_hidden, proj_dim)
            # frozen label word vectors, saved with the weights so the checkpoint is self-contained
            self.register_buffer("label_vectors", torch.zeros(len(self.labels), word_dim))

    def freeze_backbone(self) -> None:
        """Train only the heads: no gradients, and batch-norm statistics kept as they are."""
        self.backbone_frozen = True
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> "CNNClassifier":
        super().train(mode)
        if getattr(self, "backbone_frozen", False):
            self.backbone.eval()
        return self

    def for_inference(self, folder: str | Path | None = None) -> "CNNClassifier":
        """Eval mode with channels_last weights (oneDNN's convolutions run faster in that layout on CPU), and
        predictions through ONNX Runtime where fermm.models.runtime says so: ``folder``'s validated int8 graph
        (2-4x faster per face than PyTorch here, bench/precision.py), or with ``FERMM_RUNTIME=onnx`` an fp32 graph
        exported now (same outputs up to float rounding)."""
        self.eval().to(memory_format=torch.channels_last)
        stored = stored_int8(self, folder) if folder is not None else None
        self.fast_forward = stored or try_onnx(self, torch.zeros(1, self.channels, self.input_size, self.input_size))
        return self

    def cam_layer(self) -> nn.Module:
        """The last convolutional block (Grad-CAM target, see fermm.serve.explain)."""
        return self.backbone.layer4 if self.backbone_name.startswith("resnet") else self.backbone[0]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, D) backbone features."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, n_labels) classifier logits."""
        return self.classifier(self.dropout(self.features(x)))

    def embed_images(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (N, proj_dim) unit vectors in the shared space."""
        return F.normalize(self.image_proj(feats), dim=-1)

    def embed_labels(self, vectors: torch.Tensor | None = None) -> torch.Tensor:
        """(K, word_dim) word vectors (default: this model's labels) -> (K, proj_dim) unit vectors."""
        vectors = self.label_vectors if vectors is None else vectors
        return F.normalize(self.label_proj(vectors.to(self.label_vectors.dtype)), dim=-1)

    def zero_shot_logits(self, x: torch.Tensor, vectors: torch.Tensor | None = None) -> torch.Tensor:
        """Nearest-label-vector scores (N, K); ``vectors`` may hold labels never trained on."""
        return self.embed_images(self.features(x)) @ self.embed_labels(vectors).T / self.tau
