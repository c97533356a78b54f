"""The image set's normalisations."""

import torch

from neutronq.data.photos import NORMALIZATIONS, normalize_for_efficientnet_lite, normalize_for_imagenet


def test_normalizations():
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(NORMALIZATIONS["efficientnet-lite"](x), (x * 255 - 127) / 128)
    torch.testing.assert_close(normalize_for_efficientnet_lite(x), (x * 255 - 127) / 128)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(normalize_for_imagenet(x)[:, :, 1, 2], (x[:, :, 1, 2] - mean) / std)
    unit = NORMALIZATIONS["unit"](x)
    assert torch.equal(unit, x) and unit.data_ptr() != x.data_ptr()
