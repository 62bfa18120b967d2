"""Two more backbone families for 48x48 faces, so ensemble members can differ in kind, not only in seed:

- ``wrn16_4``: a wide residual network (Zagoruyko & Komodakis, "Wide Residual Networks", 2016), depth 16, width 4,
  pre-activation blocks. CIFAR's version keeps its first group at full resolution; here every group halves it
  (48 -> 24 -> 12 -> 6), which keeps its cost near VGG11's on 48 px faces.
- ``xception``: depthwise-separable convolutions with residual shortcuts, after the mini-Xception of Arriaga et al.
  ("Real-time Convolutional Neural Networks for Emotion and Gender Classification", 2017), four times wider.

Both map (N, C, 48, 48) to (N, D) features, like :func:`fermm.models.cnn.make_backbone`'s others.
"""
from __future__ import annotations

from torch import nn


def _bn_relu(c: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))


class WideBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus the (projected) input."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.pre = _bn_relu(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.conv2 = nn.Sequential(_bn_relu(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False))
        self.shortcut = None if c_in == c_out and stride == 1 else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        a = self.pre(x)
        return self.conv2(self.conv1(a)) + (x if self.shortcut is None else self.shortcut(a))


def wide_resnet(in_chans: int, depth: int = 16, width: int = 4) -> tuple[nn.Module, int]:
    n = (depth - 4) // 6  # blocks per group
    widths = (16 * width, 32 * width, 64 * width)
    layers: list[nn.Module] = [nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)]
    c = 16
    for w in widths:
        layers += [WideBlock(c if i == 0 else w, w, 2 if i == 0 else 1) for i in range(n)]
        c = w
    return _pooled(nn.Sequential(*layers, _bn_relu(c))), c


def separable(c_in: int, c_out: int) -> nn.Sequential:
    """A 3x3 depthwise conv then a 1x1 pointwise one: a 3x3 conv's reach at a fraction of its cost."""
    return nn.Sequential(nn.Conv2d(c_in, c_in, 3, 1, 1, groups=c_in, bias=False), nn.Conv2d(c_in, c_out, 1, bias=False))


class XceptionBlock(nn.Module):
    """Two separable convs and a stride-2 max-pool, plus a strided 1x1 shortcut (mini-Xception's module)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.main = nn.Sequential(separable(c_in, c_out), _bn_relu(c_out), separable(c_out, c_out),
                                  nn.BatchNorm2d(c_out), nn.MaxPool2d(3, 2, 1))
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, 2, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return self.main(x) + self.shortcut(x)


def mini_xception(in_chans: int, widths: tuple[int, ...] = (64, 128, 256, 512)) -> tuple[nn.Module, int]:
    stem = [nn.Conv2d(in_chans, 32, 3, 1, 1, bias=False), _bn_relu(32), nn.Conv2d(32, 32, 3, 1, 1, bias=False),
            _bn_relu(32)]
    blocks = [XceptionBlock(c_in, c_out) for c_in, c_out in zip((32, *widths[:-1]), widths)]  # 48 -> 3 px
    return _pooled(nn.Sequential(*stem, *blocks, nn.ReLU(inplace=True))), widths[-1]


def _pooled(convs: nn.Sequential) -> nn.Sequential:
    """The conv stack first (index 0: what Grad-CAM hooks, as for the VGGs), then global average pooling."""
    return nn.Sequential(convs, nn.AdaptiveAvgPool2d(1), nn.Flatten())
