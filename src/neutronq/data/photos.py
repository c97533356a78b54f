"""The benchmark image set: random-resized crops of real photographs that install offline, with
calibration and evaluation drawn from different photographs.

Sources (239 photographs): the colour photographs shipped in ``skimage.data`` (scikit-image),
the nature photographs of Debian's ``mate-backgrounds`` and the photographs of Debian's
``gcompris-qt-data`` (animals, monuments, fish, tools, household objects: ``neutronq.data.gcompris``).
Within each source group, sorted by name, the photographs alternate between the calibration side
and the evaluation side, so no photograph is on both (``photo_split``): a step that trains on the
calibration crops (AdaRound, bias correction, distillation) is scored on photographs it never saw.

Crops follow the usual ImageNet training augmentation: area scale 0.08 to 1, aspect ratio 3/4 to
4/3, random horizontal flip, resized to 224 x 224, drawn from ``numpy.random.default_rng``. The
benchmark takes 100 calibration crops (seed 0) and 500 evaluation crops (seed 1), each side
cycling over its own photographs.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from neutronq.data import gcompris

__all__ = [
    "MATE_NATURE_DIR",
    "DEBIAN_HINT",
    "SKIMAGE_PHOTOS",
    "CALIBRATION_COUNT",
    "EVALUATION_COUNT",
    "load_photos",
    "photo_split",
    "random_resized_crops",
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
CALIBRATION_SEED, EVALUATION_SEED = 0, 1


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data  # scikit-image loads in seconds; only the photo set needs it

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo pairs: the left image
        img = img[0]
    return np.ascontiguousarray(img[..., :3])


def load_photos() -> dict[str, list[tuple[str, np.ndarray]]]:
    """Every source photograph as (name, HxWx3 uint8 array), by source group, sorted by name."""
    from PIL import Image

    if not MATE_NATURE_DIR.is_dir() or not any(MATE_NATURE_DIR.glob("*.jpg")):
        raise FileNotFoundError(f"Benchmark photos unavailable: {DEBIAN_HINT}.")
    groups = {
        "skimage": [(n, _skimage_photo(n)) for n in sorted(SKIMAGE_PHOTOS)],
        "mate": [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in sorted(MATE_NATURE_DIR.glob("*.jpg"))],
    }
    for group, files in gcompris.photo_files().items():
        groups[f"gcompris/{group}"] = [(name, np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")))
                                       for name, blob in files]
    return groups


_PHOTOS: dict = {}


def photo_split() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(calibration photographs, evaluation photographs): disjoint, each group's sorted photographs
    alternating between the two sides, the sides interleaved across groups."""
    if "split" not in _PHOTOS:
        sides: tuple[list, list] = ([], [])
        for files in load_photos().values():
            for i, (_, image) in enumerate(files):
                sides[i % 2].append(image)
        _PHOTOS["split"] = sides
    return _PHOTOS["split"]


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
    """torchvision's ImageNet convention: [0, 1] pixels minus the mean, over the standard deviation
    (RGB images; others are returned as they are)."""
    if images.dim() != 4 or images.shape[1] != 3:
        return images
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


def benchmark_split(calibration: int = CALIBRATION_COUNT, evaluation: int = EVALUATION_COUNT,
                    normalization: str = "efficientnet-lite") -> tuple[torch.Tensor, torch.Tensor]:
    """(calibration crops, evaluation crops), [N, 3, 224, 224], normalised for EfficientNet-Lite0
    (or as ``normalization`` says: a key of ``NORMALIZATIONS``): the calibration crops from the
    calibration photographs, the evaluation crops from the others.

    Fewer crops are a prefix of the full sets (100 and 500), so figures stay comparable."""
    if "benchmark" not in _CACHE:
        calibration_photos, evaluation_photos = photo_split()
        _CACHE["benchmark"] = (random_resized_crops(calibration_photos, CALIBRATION_COUNT, CALIBRATION_SEED),
                               random_resized_crops(evaluation_photos, EVALUATION_COUNT, EVALUATION_SEED))
    calibration_crops, evaluation_crops = _CACHE["benchmark"]
    normalize = NORMALIZATIONS[normalization]
    return normalize(calibration_crops[:calibration]), normalize(evaluation_crops[:evaluation])
