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
