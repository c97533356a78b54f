"""What the command reads: shapes, image folders, tensor files, training data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from neutronq.app.inputs import (
    InputError,
    load_calibration,
    load_model,
    load_training,
    parse_shape,
)


def test_parse_shape():
    assert parse_shape("1,3,224,224") == (1, 3, 224, 224)
    assert parse_shape("1x1x28x28") == (1, 1, 28, 28)
    with pytest.raises(InputError, match="Fix: give positive sizes"):
        parse_shape("1,3,a")
    with pytest.raises(InputError):
        parse_shape("1,0,4")


def test_image_folder_is_center_cropped_resized_and_normalised(tmp_path):
    # a 40x20 image: left half black, right half white; the center square crop is 20x20
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, 20:] = 255
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(tmp_path / "b.jpg")
    (tmp_path / "readme.txt").write_text("skipped")
    x = load_calibration(str(tmp_path), (1, 3, 10, 10), "unit")
    assert x.shape == (2, 3, 10, 10)
    assert x[0, :, :, 0].max() < 0.05 and x[0, :, :, -1].min() > 0.95  # crop kept the black/white split
    y = load_calibration(str(tmp_path), (1, 3, 10, 10), "efficientnet-lite")
    assert torch.allclose(y, (x * 255 - 127) / 128)
    grey = load_calibration(str(tmp_path), (1, 1, 6, 6), "unit")
    assert grey.shape == (2, 1, 6, 6)


def test_tensor_files(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((5, 4), np.float32))
    assert load_calibration(str(tmp_path / "x.npy"), (1, 4)).shape == (5, 4)
    torch.save([torch.zeros(1, 4), torch.ones(1, 4)], tmp_path / "x.pt")
    assert load_calibration(str(tmp_path / "x.pt"), (1, 4)).shape == (2, 4)
    torch.save(torch.full((3, 4), float("nan")), tmp_path / "nan.pt")
    with pytest.raises(InputError, match="NaN"):
        load_calibration(str(tmp_path / "nan.pt"), (1, 4))
    with pytest.raises(InputError, match="does not exist"):
        load_calibration(str(tmp_path / "none.npy"), (1, 4))


def test_training_data_forms(tmp_path):
    torch.save((torch.zeros(6, 1, 4, 4), torch.arange(6) % 2), tmp_path / "train.pt")
    x, y = load_training(str(tmp_path / "train.pt"), (1, 1, 4, 4))
    assert x.shape == (6, 1, 4, 4) and y.tolist() == [0, 1, 0, 1, 0, 1]
    np.savez(tmp_path / "train.npz", x=np.zeros((3, 4, 4), np.float32), y=np.array([2, 1, 0]))
    x, y = load_training(str(tmp_path / "train.npz"), (1, 1, 4, 4))
    assert x.shape == (3, 1, 4, 4) and y.dtype == torch.long
    for label in ("cat", "dog"):
        (tmp_path / "classes" / label).mkdir(parents=True)
        Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "classes" / label / "0.png")
    x, y = load_training(str(tmp_path / "classes"), (1, 1, 4, 4))
    assert x.shape == (2, 1, 4, 4) and y.tolist() == [0, 1]
    with pytest.raises(InputError, match="--train-data"):
        load_training(None, (1, 1, 4, 4))


def test_module_function_needs_an_input_shape(tmp_path):
    (tmp_path / "m.py").write_text("import torch\ndef make():\n    return torch.nn.Linear(4, 2)\n")
    with pytest.raises(InputError, match="--input-shape"):
        load_model(f"{tmp_path / 'm.py'}:make")
    loaded = load_model(f"{tmp_path / 'm.py'}:make", (1, 4))
    assert isinstance(loaded.module, torch.nn.Linear) and loaded.input_shape == (1, 4)
    with pytest.raises(InputError, match="has no 'nothing'"):
        load_model(f"{tmp_path / 'm.py'}:nothing", (1, 4))


def test_saved_exported_program(tmp_path):
    ep = torch.export.export(torch.nn.Linear(4, 2), (torch.zeros(2, 4),))
    torch.export.save(ep, tmp_path / "lin.pt2")
    loaded = load_model(str(tmp_path / "lin.pt2"))
    assert loaded.exported is not None and loaded.input_shape == (2, 4) and loaded.name == "lin"
    with pytest.raises(InputError, match="differs from the shape"):
        load_model(str(tmp_path / "lin.pt2"), (1, 4))


# ------------------------------------------------------------------------------------------
# Image files: every mode read by a stated rule, or refused naming the file
def _one_image(folder, save, name="img.png"):
    folder.mkdir(exist_ok=True)
    save(folder / name)
    return folder


@pytest.mark.parametrize("channels", [1, 3])
def test_a_16_bit_image_is_scaled_not_clipped(tmp_path, channels):
    """It became an all-white image (convert('RGB') clips at 255)."""
    folder = _one_image(tmp_path / "im", lambda p: Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(p))
    x = load_calibration(str(folder), (1, channels, 4, 4), "unit")
    assert x.shape == (1, channels, 4, 4) and torch.allclose(x, torch.full_like(x, 117 / 255))  # 30000 / 257


def test_palette_grey_and_bilevel_images_convert(tmp_path):
    def palette(p):
        img = Image.new("P", (8, 8))
        img.putpalette([10, 200, 30] + [0] * 765)
        img.save(p)

    x = load_calibration(str(_one_image(tmp_path / "p", palette)), (1, 3, 4, 4))
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([10, 200, 30]) / 255.0)
    grey_folder = _one_image(tmp_path / "g", lambda p: Image.new("L", (8, 8), 100).save(p))
    grey = load_calibration(str(grey_folder), (1, 3, 4, 4))
    assert torch.allclose(grey, torch.full_like(grey, 100 / 255))  # replicated into the 3 channels
    ones = load_calibration(str(_one_image(tmp_path / "b", lambda p: Image.new("1", (8, 8), 1).save(p))), (1, 1, 4, 4))
    assert torch.equal(ones, torch.ones_like(ones))


@pytest.mark.parametrize("mode, colour", [("RGBA", (200, 20, 20, 0)), ("LA", (100, 0))])
def test_alpha_is_dropped_with_a_note(tmp_path, capsys, mode, colour):
    folder = _one_image(tmp_path / "a", lambda p: Image.new(mode, (8, 8), colour).save(p))
    x = load_calibration(str(folder), (1, 3, 4, 4))
    assert abs(float(x[0, 0, 0, 0]) - colour[0] / 255) < 1e-6  # the stored colour, as torchvision reads it
    assert "have an alpha channel (e.g. img.png): it is dropped" in capsys.readouterr().err


@pytest.mark.parametrize("array, what", [(np.full((8, 8), 0.25, np.float32), "floating-point pixels"),
                                         (np.full((8, 8), 70000, np.int32), "32-bit integer pixels")])
def test_pixels_of_unknown_range_are_refused_naming_the_file(tmp_path, array, what):
    folder = _one_image(tmp_path / "f", lambda p: Image.fromarray(array).save(p), "img.tif")
    with pytest.raises(InputError, match=rf"img.tif' holds {what}"):
        load_calibration(str(folder), (1, 3, 4, 4))


def test_a_damaged_image_is_skipped_naming_it(tmp_path, capsys):
    folder = tmp_path / "mix"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "good.jpg")
    (folder / "broken.jpg").write_bytes((folder / "good.jpg").read_bytes()[:200])
    assert load_calibration(str(folder), (1, 3, 4, 4)).shape == (1, 3, 4, 4)
    err = capsys.readouterr().err
    assert "skipped 1 damaged images" in err and "broken.jpg" in err


def test_files_in_excluded_and_hidden_folders_are_not_read(tmp_path):
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "a.png")
    (tmp_path / "out" / "plots").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "out" / "plots" / "layers.png")
    (tmp_path / ".out.neutronq-x").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / ".out.neutronq-x" / "plot.png")
    assert len(load_calibration(str(tmp_path), (1, 3, 4, 4), exclude=[tmp_path / "out"])) == 1


# ------------------------------------------------------------------------------------------
# Tensor files: float as they are, uint8 as pixels, other integers refused
def test_uint8_tensors_are_pixels_normalized_as_images(tmp_path, capsys):
    np.save(tmp_path / "u8.npy", np.full((2, 3, 4, 4), 255, np.uint8))
    x = load_calibration(str(tmp_path / "u8.npy"), (1, 3, 4, 4), "efficientnet-lite")
    assert torch.allclose(x, torch.full_like(x, (255 - 127) / 128))
    assert "holds uint8 values: read as 8-bit pixels (divided by 255)" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [np.int64, np.int32, bool])
def test_other_integer_tensors_are_refused(tmp_path, dtype):
    np.save(tmp_path / "x.npy", np.ones((2, 3, 4, 4), dtype))
    with pytest.raises(InputError, match=rf"holds {np.dtype(dtype).name if dtype is not bool else 'bool'} values"):
        load_calibration(str(tmp_path / "x.npy"), (1, 3, 4, 4))


def test_normalize_on_a_float_tensor_is_said_to_do_nothing(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.full((2, 3, 4, 4), 0.5, np.float32))
    x = load_calibration(str(tmp_path / "x.npy"), (1, 3, 4, 4), "imagenet", normalize_given=True)
    assert torch.equal(x, torch.full_like(x, 0.5))
    assert "--normalize applies to images and uint8 pixels" in capsys.readouterr().err


def test_training_labels_must_be_class_numbers(tmp_path):
    torch.save((torch.zeros(4, 1, 4, 4), torch.tensor([0.5, 1.0, 0.0, 1.0])), tmp_path / "t.pt")
    with pytest.raises(InputError, match="are not class numbers"):
        load_training(str(tmp_path / "t.pt"), (1, 1, 4, 4))


# ------------------------------------------------------------------------------------------
# Models: the user's code failing is named as such
def test_a_module_whose_own_import_fails_names_the_missing_package(tmp_path, monkeypatch):
    (tmp_path / "needs_pkg.py").write_text("import nonexistent_pkg_xyz\n\ndef make():\n    pass\n")
    monkeypatch.chdir(tmp_path)
    for spec in ("needs_pkg:make", "needs_pkg.py:make"):
        with pytest.raises(InputError, match=r"importing 'needs_pkg(.py)?' failed: it imports 'nonexistent_pkg_xyz', "
                                             r"which is not installed \(needs_pkg.py, line 1\)\. Fix: install it"):
            load_model(spec, (1, 4))


def test_a_syntax_error_names_the_file_and_line(tmp_path):
    (tmp_path / "bad.py").write_text("x = 1\ndef make(:\n    pass\n")
    with pytest.raises(InputError, match=r"SyntaxError.*\(bad.py, line 2\)"):
        load_model(f"{tmp_path / 'bad.py'}:make", (1, 4))


def test_a_factory_that_raises_or_needs_arguments_is_named(tmp_path):
    (tmp_path / "m.py").write_text("def make():\n    raise RuntimeError('weights.bin not found')\n\n"
                                   "def make_wide(width, depth=2):\n    pass\n")
    with pytest.raises(InputError, match=r"m.py:make raised RuntimeError: weights.bin not found \(m.py, line 2\)"):
        load_model(f"{tmp_path / 'm.py'}:make", (1, 4))
    with pytest.raises(InputError, match=r"make_wide takes arguments \(width\); the command calls it with none"):
        load_model(f"{tmp_path / 'm.py'}:make_wide", (1, 4))


def test_an_input_shape_without_the_batch_says_so(tmp_path):
    from neutronq.app.inputs import export_model

    (tmp_path / "m.py").write_text(
        "import torch\nclass M(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = torch.nn.Linear(4, 2)\n    def forward(self, x):\n"
        "        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))\n"
        "def make():\n    return M()\n")
    with pytest.raises(InputError, match=r"lacks the batch\. Fix: pass --input-shape 1,4,8,8"):
        export_model(load_model(f"{tmp_path / 'm.py'}:make", (4, 8, 8)))


def test_a_folder_named_like_a_pt2_is_refused(tmp_path):
    (tmp_path / "model.pt2").mkdir()
    with pytest.raises(InputError, match="is a folder, not a saved ExportedProgram"):
        load_model(str(tmp_path / "model.pt2"))
