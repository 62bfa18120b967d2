"""fermm.transforms: preprocessing, batched augmentation and TTA views."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fermm.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    AugmentConfig,
    augment,
    faces_to_array,
    faces_to_tensor,
    normalize,
    tta_views,
)


def test_faces_to_tensor_any_input_to_model_shape():
    faces = [Image.new("RGB", (100, 80), (255, 255, 255)), np.zeros((48, 48), np.uint8),
             Image.new("RGBA", (10, 10))]
    x = faces_to_tensor(faces, 48, 1, (0.5,), (0.25,))
    assert x.shape == (3, 1, 48, 48)
    assert torch.allclose(x[0], torch.full_like(x[0], 2.0))  # white: (1 - 0.5) / 0.25
    assert torch.allclose(x[1], torch.full_like(x[1], -2.0))
    clip = faces_to_tensor(faces[:1], 224, 3, CLIP_MEAN, CLIP_STD)
    assert clip.shape == (1, 3, 224, 224)
    assert torch.allclose(clip[0, :, 0, 0], (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD))


def test_numpy_preprocessing_gives_torchs_numbers_bit_for_bit():
    """faces_to_array (what an ONNX graph is fed) equals the torch arithmetic the models were trained with."""
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for channels, mean, std in ((1, (0.5,), (0.25,)), (3, CLIP_MEAN, CLIP_STD)):
        faces = [np.stack([u8, u8.T, 255 - u8], -1)[..., :channels].squeeze(-1) if channels == 1 else
                 np.stack([u8, u8.T, 255 - u8], -1)]
        ref = normalize(torch.from_numpy(np.stack(faces).reshape(1, 16, 16, channels)).permute(0, 3, 1, 2)
                        .float().div_(255), mean, std)
        got = faces_to_array(faces, 16, channels, mean, std)
        assert got.dtype == np.float32 and got.shape == (1, channels, 16, 16) and np.array_equal(got, ref.numpy())


def test_augment_is_deterministic_given_the_generator_and_keeps_shape():
    x = torch.rand(8, 1, 48, 48)
    a = augment(x, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment(x, AugmentConfig(), torch.Generator().manual_seed(1))
    c = augment(x, AugmentConfig(), torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_augment_off_is_identity_and_flip_only_mirrors():
    x = torch.rand(64, 1, 48, 48)
    off = AugmentConfig(rotation=0, translate=0, scale_min=1, scale_max=1, flip=False, erasing=0)
    assert torch.allclose(augment(x, off, torch.Generator().manual_seed(0)), x, atol=1e-5)
    flip = AugmentConfig(rotation=0, translate=0, scale_min=1, scale_max=1, flip=True, erasing=0)
    y = augment(x, flip, torch.Generator().manual_seed(0))
    same = [torch.allclose(y[i], x[i], atol=1e-5) for i in range(64)]
    mirrored = [torch.allclose(y[i], x[i].flip(-1), atol=1e-5) for i in range(64)]
    assert all(s or m for s, m in zip(same, mirrored)) and 10 < sum(mirrored) < 54


def test_erasing_replaces_a_rectangle():
    x = torch.zeros(32, 1, 48, 48)
    cfg = AugmentConfig(rotation=0, translate=0, scale_min=1, scale_max=1, flip=False, erasing=1.0)
    y = augment(x, cfg, torch.Generator().manual_seed(0))
    changed = (y != 0).float().mean(dim=(1, 2, 3))
    assert (changed > 0.01).all() and (changed < 0.3).all()


@pytest.mark.parametrize("mode,n", [("none", 1), ("flip", 2), ("tencrop", 10)])
def test_tta_views(mode, n):
    x = torch.rand(3, 1, 48, 48)
    views = tta_views(x, mode)
    assert len(views) == n and all(v.shape == x.shape for v in views)
    if mode == "flip":
        assert torch.equal(views[1], x.flip(-1))
    with pytest.raises(ValueError, match="unknown TTA mode"):
        tta_views(x, "fivecrop")


def test_tencrop_views_are_the_corner_and_centre_crops_and_their_flips():
    x = torch.arange(48 * 48, dtype=torch.float32).view(1, 1, 48, 48)
    views = tta_views(x, "tencrop")
    resize = lambda c: torch.nn.functional.interpolate(c, size=(48, 48), mode="bilinear", align_corners=False)  # noqa: E731
    crops = [x[..., :42, :42], x[..., :42, 6:], x[..., 6:, :42], x[..., 6:, 6:], x[..., 3:45, 3:45]]  # 7/8 of 48
    for i, c in enumerate(crops):
        assert torch.equal(views[i], resize(c)) and torch.equal(views[i + 5], resize(c).flip(-1))
    assert not any(torch.equal(v, x) for v in views)


@pytest.mark.parametrize("mode", ["flip", "tencrop"])
def test_tta_probabilities_are_the_mean_softmax_over_the_views(mode):
    from fermm.models.cnn import CNNClassifier

    torch.manual_seed(0)
    model = CNNClassifier(backbone="mini").eval()
    pixels = torch.nn.Linear(48 * 48, 7)  # a model that sees every pixel: each view gives another answer
    model.forward = lambda v: pixels(v.flatten(1))
    x = torch.rand(4, 1, 48, 48)
    with torch.no_grad():
        want = torch.stack([model(v).softmax(-1) for v in tta_views(x, mode)]).mean(0)
        assert not torch.allclose(want, model(x).softmax(-1), atol=1e-4)  # the views do change the answer
    assert torch.allclose(model.proba_from_tensor(x, mode), want, atol=1e-6)


def test_normalize_per_channel():
    x = torch.ones(1, 3, 2, 2)
    y = normalize(x, (0.5, 0.0, 1.0), (0.5, 1.0, 2.0))
    assert y[0, :, 0, 0].tolist() == [1.0, 1.0, 0.0]
