"""Silero VAD's encoder with its real weights, and the pocketsphinx-testdata speech."""

import pytest
import torch

from neutronq.data import _packages, silero
from neutronq.data.silero import WINDOW, silero_encoder, speech_files, speech_split


def test_speech_split_is_disjoint_by_recording():
    files = speech_files()
    assert len(files) == 10
    calibration, evaluation = speech_split()
    assert calibration.shape[1] == evaluation.shape[1] == WINDOW
    assert calibration.shape[0] > 300 and evaluation.shape[0] > 300
    assert calibration.abs().max() <= 1 and calibration.std() > 0.01  # real audio in [-1, 1]


@pytest.mark.parametrize("with_stft", [True, False])
def test_encoder_loads_strict(with_stft):
    model = silero_encoder(with_stft=with_stft)
    x = speech_split()[0][:4] if with_stft else torch.rand(4, 129, 4)
    with torch.no_grad():
        assert model(x).shape == (4, 128, 1)


def test_jit_weights_match_silero_torchscript_model():
    """Our definition with the v6 weights is silero's own stft + encoder, exactly."""
    scripted = torch.jit.load(str(_packages.package_file("silero_vad", "data/silero_vad.jit", silero.INSTALL)))
    x = speech_split()[1][:16]
    with torch.no_grad():
        expected = scripted._model.encoder(scripted._model.stft(x))
        torch.testing.assert_close(silero_encoder("jit")(x), expected, rtol=0, atol=1e-6)


def test_missing_data_names_the_install_command(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y pocketsphinx-testdata"):
        speech_files(tmp_path)
    monkeypatch.setattr(_packages.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install silero-vad"):
        silero_encoder()
    with pytest.raises(ValueError, match="'safetensors' or 'jit'"):
        silero._weights("onnx")
