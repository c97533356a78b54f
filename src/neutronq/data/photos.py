"""The benchmark image set: random-resized crops of real photographs that install offline.

Sources, drawn in turn: the colour photographs shipped in ``skimage.data`` (scikit-image) and the
nature photographs of Debian's ``mate-backgrounds``. Crops follow the usual ImageNet training
augmentation: area scale 0.08 to 1, aspect ratio 3/4 to 4/3, random horizontal flip, resized to
224 x 224, drawn from ``numpy.random.default_rng(seed)`` (seed 0 for the benchmark set).
The first 100 crops calibrate (batch 1), the next 500 evaluate.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "MATE_NATURE_DIR",
    "DEBIAN_HINT",
    "SKIMAGE_PHOTOS",
    "load_photos",
    "random_resized_crops",
    "benchmark_crops",
    "benchmark_split",
    "normalize_for_efficientnet_lite",
    "normalize_for_imagenet",
    "NORMALIZATIONS",
]

MATE_NATURE_DIR = Path("/usr/share/backgrounds/mate/nature")
DEBIAN_HINT = (
    "the nature photographs of Debian's mate-backgrounds are missing from "
    f"{MATE_NATURE_DIR}; install them with: sudo apt-get install -y mate-backgrounds "
    "(scripts/setup.sh does it when run as root)"
)
# Colour photographs in skimage.data (graphics such as the logo or colour wheel are left out).
SKIMAGE_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
    "immunohistochemistry", "retina", "stereo_motorcycle",
)
CALIBRATION_COUNT, EVALUATION_COUNT = 100, 500


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo pairs: the left image
        img = img[0]
    return np.ascontiguousarray(img[..., :3])


def load_photos() -> list[np.ndarray]:
    """All source photographs as HxWx3 uint8 arrays, interleaved skimage / mate."""
    from PIL import Image

    if not MATE_NATURE_DIR.is_dir() or not any(MATE_NATURE_DIR.glob("*.jpg")):
        raise FileNotFoundError(f"Benchmark photos unavailable: {DEBIAN_HINT}.")
    sk = [_skimage_photo(n) for n in SKIMAGE_PHOTOS]
    mate = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(MATE_NATURE_DIR.glob("*.jpg"))]
    photos: list[np.ndarray] = []
    for i in range(max(len(sk), len(mate))):
        photos.extend(src[i] for src in (sk, mate) if i < len(src))
    return photos


def _crop_box(rng: np.random.Generator, height: int, width: int) -> tuple[int, int, int, int]:
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    side = min(height, width)  # fallback: central square crop
    return (height - side) // 2, (width - side) // 2, side, side


def random_resized_crops(photos: list[np.ndarray], count: int, seed: int = 0, size: int = 224) -> torch.Tensor:
    """``count`` crops as a float tensor [count, 3, size, size] with values in [0, 1]."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = torch.empty(count, 3, size, size)
    for i in range(count):
        img = photos[i % len(photos)]
        top, left, h, w = _crop_box(rng, img.shape[0], img.shape[1])
        crop = Image.fromarray(img[top : top + h, left : left + w]).resize((size, size), Image.BILINEAR)
        arr = np.asarray(crop, dtype=np.float32) / 255.0
        if rng.uniform() < 0.5:
            arr = arr[:, ::-1]
        out[i] = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    return out


def normalize_for_efficientnet_lite(images: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite's input convention: (pixel - 127) / 128 on 0..255 pixels."""
    return (images * 255.0 - 127.0) / 128.0


def normalize_for_imagenet(images: torch.Tensor) -> torch.Tensor:
    """torchvision's ImageNet convention: [0, 1] pixels minus the mean, over the standard deviation."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (images - mean) / std


# how [0, 1] crops become a model's inputs
NORMALIZATIONS = {
    "efficientnet-lite": normalize_for_efficientnet_lite,
    "imagenet": normalize_for_imagenet,
    "unit": lambda images: images.clone(),
}

_CACHE: dict = {}


def benchmark_crops(count: int = CALIBRATION_COUNT + EVALUATION_COUNT, seed: int = 0,
                    normalization: str = "efficientnet-lite") -> torch.Tensor:
    """The benchmark image set [count, 3, 224, 224], normalised for EfficientNet-Lite0 (or as
    ``normalization`` says: a key of ``NORMALIZATIONS``)."""
    return NORMALIZATIONS[normalization](_unit_crops(count, seed))


def _unit_crops(count: int, seed: int) -> torch.Tensor:
    key = (count, seed)
    if key not in _CACHE:
        _CACHE[key] = random_resized_crops(load_photos(), count, seed)
    return _CACHE[key]


def benchmark_split(calibration: int = CALIBRATION_COUNT, evaluation: int = EVALUATION_COUNT,
                    seed: int = 0, normalization: str = "efficientnet-lite") -> tuple[torch.Tensor, torch.Tensor]:
    """(calibration crops, evaluation crops): the first ``calibration``, then the next ``evaluation``.

    Fewer evaluation crops are a prefix of the full evaluation set, so figures stay comparable.
    ``normalization``: see ``benchmark_crops``.
    """
    crops, normalize = _unit_crops(CALIBRATION_COUNT + EVALUATION_COUNT, seed), NORMALIZATIONS[normalization]
    return normalize(crops[:calibration]), normalize(crops[CALIBRATION_COUNT : CALIBRATION_COUNT + evaluation])
