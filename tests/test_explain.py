"""fermm.serve.explain: Grad-CAM and gradient saliency maps."""
import numpy as np
import pytest
import torch
from PIL import Image

from fermm.models.cnn import CNNClassifier
from fermm.serve.explain import overlay, saliency


@pytest.mark.parametrize("backbone", ["vgg11", "resnet18"])
def test_gradcam_map_shape_range_and_target(backbone, astronaut):
    torch.manual_seed(0)
    model = CNNClassifier(backbone=backbone).eval()
    heat, target = saliency(model, astronaut)
    assert heat.shape == (48, 48) and 0 <= heat.min() and heat.max() <= 1 + 1e-6
    assert target == int(model.predict_proba([astronaut]).argmax())
    assert model.training is False and all(p.grad is None for p in model.parameters())


def test_gradcam_equals_a_hand_computation_on_the_cam_layer(astronaut):
    """Grad-CAM proper (not the input-gradient fallback): ReLU(sum_k mean(dy/dA_k) * A_k), upsampled, scaled."""
    torch.manual_seed(0)
    model = CNNClassifier(backbone="vgg11").eval()
    x = model.preprocess([astronaut])
    acts = []
    handle = model.cam_layer().register_forward_hook(lambda m, i, o: acts.append(o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    target = int(logits.argmax())
    (grads,) = torch.autograd.grad(logits[0, target], acts[0])
    cam = torch.relu((grads.mean((2, 3), keepdim=True) * acts[0]).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=(48, 48), mode="bilinear", align_corners=False)[0, 0].detach()
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-8)
    heat, got_target = saliency(model, astronaut)
    assert got_target == target and np.allclose(heat, cam.numpy(), atol=1e-5)
    assert acts[0].shape[-1] < 48  # the map comes from a coarse conv block, upsampled


def test_gradcam_follows_the_evidence():
    """A model whose class-0 logit is the mean brightness of the image's left half: the map lights up there."""
    torch.manual_seed(0)
    model = CNNClassifier(backbone="vgg11").eval()

    class LeftHalf(torch.nn.Module):
        def forward(self, x):
            return x
    model.backbone[0] = torch.nn.Sequential(LeftHalf())  # identity "conv" block: activations = input
    model.backbone[1] = torch.nn.AdaptiveAvgPool2d(1)
    model.classifier = torch.nn.Linear(1, 7)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.weight[0, 0] = 1.0

    def forward(x):
        return model.classifier(x[..., :24].mean(dim=(2, 3)))  # only the left half counts
    model.forward = forward
    img = Image.fromarray(np.full((48, 48), 200, np.uint8))
    heat, _ = saliency(model, img, target=0)
    assert heat[:, :24].mean() > 0.9 and heat[:, 24:].mean() < 0.1


def test_overlay_keeps_size_and_colours():
    face = Image.new("L", (100, 120), 128)
    heat = np.zeros((48, 48))
    heat[:24] = 1.0
    out = overlay(face, heat)
    assert out.size == face.size and out.mode == "RGB"
    top, bottom = np.asarray(out)[5, 50].astype(int), np.asarray(out)[115, 50].astype(int)
    assert top[0] > top[2] and bottom[2] > bottom[0]  # red where the map is high, blue where low


def test_gradcam_ignores_other_threads_forward_passes_on_the_shared_model(astronaut):
    """The app shares one model across requests: a forward pass from another thread while a map is being
    computed must not feed the map (before, its activations were appended too and grad() failed)."""
    import threading

    torch.manual_seed(0)
    model = CNNClassifier(backbone="vgg11").eval()
    want, _ = saliency(model, astronaut)
    layer = model.cam_layer()
    forward = model.forward

    def forward_with_a_concurrent_request(x):
        other = threading.Thread(target=lambda: forward(torch.zeros(2, 1, 48, 48)))
        other.start()
        other.join()  # its activations reach the hook first
        return forward(x)
    model.forward = forward_with_a_concurrent_request
    try:
        got, _ = saliency(model, astronaut)
    finally:
        del model.forward
    assert layer is model.cam_layer() and np.allclose(got, want, atol=1e-6)
