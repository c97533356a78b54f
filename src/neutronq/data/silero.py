"""The convolutional encoder of Silero VAD (16 kHz) with its real weights, and real speech to feed it.

Weights: the PyPI package ``silero-vad`` (MIT), installed with ``pip install silero-vad==6.2.3
safetensors`` (the ``data`` extra; scripts/setup.sh does it). It ships two sets for the 16 kHz model,
same architecture, different values:

  * ``silero_vad_16k.safetensors`` (the default here, ``source="safetensors"``): a plain tensor file,
    names ``stft_conv``, ``conv1`` .. ``conv4`` (and the decoder's, unused here);
  * ``silero_vad.jit``: the v6 TorchScript model that ``silero_vad.load_silero_vad()`` runs
    (``source="jit"``, read with ``torch.jit.load``; its tensors are renamed onto the names above).

One streaming step at 16 kHz reads 576 samples (64 of context from the previous step, 512 new):

  STFT front end  reflect-pad 64 samples on the right, ``Conv1d(1, 258, 256, stride 128)`` whose
                  fixed weight is a windowed DFT basis (rows 0-128 real parts, 129-257 imaginary),
                  magnitude sqrt(re^2 + im^2): [B, 129, 4]
  encoder         four Conv1d(k=3) + ReLU: 129->128 (stride 1), 128->64 (2), 64->64 (2),
                  64->128 (1): [B, 128, 1]

The LSTM decoder that follows (state across steps) is left out: the encoder has no state, so the
steps of a file can be batched. Real speech: the 16 kHz mono wavs of Debian's
``pocketsphinx-testdata`` (``apt-get install -y pocketsphinx-testdata``; scripts/setup.sh does it).
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from neutronq.data._packages import package_file

__all__ = [
    "SileroEncoder", "silero_encoder", "INSTALL", "SPEECH_DIR", "SPEECH_INSTALL", "SAMPLE_RATE", "WINDOW",
    "speech_files", "read_wav", "speech_windows", "speech_split",
]

INSTALL = "pip install silero-vad==6.2.3 safetensors (scripts/setup.sh does it)"
SPEECH_DIR = Path("/usr/share/pocketsphinx/test/data")
SPEECH_INSTALL = "sudo apt-get install -y pocketsphinx-testdata (scripts/setup.sh does it when run as root)"
SAMPLE_RATE = 16000
STEP, CONTEXT = 512, 64
WINDOW = STEP + CONTEXT  # 576 samples per encoder input
N_FFT, HOP = 256, 128
BINS = N_FFT // 2 + 1  # 129
_LAYERS = ("conv1", "conv2", "conv3", "conv4")
# the v6 TorchScript model's 16 kHz tensor names -> the safetensors names
_JIT_NAMES = {"stft.forward_basis_buffer": "stft_conv.weight",
              **{f"encoder.{i}.reparam_conv.{p}": f"conv{i + 1}.{p}" for i in range(4) for p in ("weight", "bias")}}


class SileroEncoder(nn.Module):
    """Silero VAD's STFT front end (``with_stft``) and conv encoder. Input [B, 576] raw samples in
    [-1, 1] with the STFT, else [B, 129, T] magnitudes; output [B, 128, T'] (T' = 1 for 576 samples)."""

    def __init__(self, with_stft: bool = True):
        super().__init__()
        self.with_stft = with_stft
        if with_stft:
            self.stft_conv = nn.Conv1d(1, 2 * BINS, N_FFT, stride=HOP, bias=False)
        self.conv1 = nn.Conv1d(BINS, 128, 3, stride=1, padding=1)
        self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, 3, stride=1, padding=1)

    def magnitudes(self, samples: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(samples.unsqueeze(1), (0, CONTEXT), mode="reflect")
        spectrum = self.stft_conv(x)
        real, imag = spectrum[:, :BINS], spectrum[:, BINS:]
        return torch.sqrt(real * real + imag * imag)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_stft:
            x = self.magnitudes(x)
        for name in _LAYERS:
            x = torch.relu(getattr(self, name)(x))
        return x


def _weights(source: str) -> dict:
    if source == "safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise ImportError(f"Reading Silero VAD's weights needs the pip package safetensors: {INSTALL}") from e
        return load_file(str(package_file("silero_vad", "data/silero_vad_16k.safetensors", INSTALL)))
    if source == "jit":
        scripted = torch.jit.load(str(package_file("silero_vad", "data/silero_vad.jit", INSTALL)), map_location="cpu")
        state = scripted._model.state_dict()
        return {new: state[old].clone() for old, new in _JIT_NAMES.items()}
    raise ValueError(f"Unknown Silero VAD weight source {source!r}: 'safetensors' or 'jit'.")


def silero_encoder(source: str = "safetensors", with_stft: bool = True) -> SileroEncoder:
    """Silero VAD's 16 kHz encoder with real weights (``strict=True``), eval mode (module doc)."""
    keep = (("stft_conv",) if with_stft else ()) + _LAYERS
    state = {k: v for k, v in _weights(source).items() if k.split(".")[0] in keep}
    model = SileroEncoder(with_stft)
    model.load_state_dict(state, strict=True)
    return model.eval()


def speech_files(folder: Optional[Path] = None) -> list[Path]:
    """The 16 kHz speech wavs of pocketsphinx-testdata (librivox and cards), sorted."""
    root = Path(folder) if folder is not None else SPEECH_DIR
    files = sorted(root.glob("librivox/*.wav")) + sorted(root.glob("cards/*.wav"))
    if not files:
        raise FileNotFoundError(f"No speech recordings in {root}: {SPEECH_INSTALL}")
    return files


def read_wav(path) -> torch.Tensor:
    """A 16-bit PCM wav at 16 kHz as float samples in [-1, 1] (the first channel)."""
    with wave.open(str(path)) as w:
        if w.getframerate() != SAMPLE_RATE or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit samples at {SAMPLE_RATE} Hz, found "
                             f"{8 * w.getsampwidth()}-bit at {w.getframerate()} Hz.")
        channels = w.getnchannels()
        raw = w.readframes(w.getnframes())
    return torch.frombuffer(bytearray(raw), dtype=torch.int16).view(-1, channels)[:, 0].float() / 32768.0


def speech_windows(files: Sequence) -> torch.Tensor:
    """Every encoder input of ``files`` as Silero VAD streams them: each file zero-padded at the end
    to a multiple of 512 samples and 64 zeros in front, window i = samples [512 i, 512 i + 576):
    [N, 576]."""
    windows = []
    for f in files:
        samples = read_wav(f)
        samples = nn.functional.pad(samples, (CONTEXT, -samples.numel() % STEP))
        windows.append(samples.unfold(0, WINDOW, STEP))
    return torch.cat(windows)


def speech_split(folder: Optional[Path] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(calibration windows, evaluation windows) from disjoint recordings: in each of librivox and
    cards, sorted files alternate between calibration and evaluation."""
    files = speech_files(folder)
    groups: dict = {}
    for f in files:
        groups.setdefault(f.parent.name, []).append(f)
    calibration = [f for g in groups.values() for f in g[0::2]]
    evaluation = [f for g in groups.values() for f in g[1::2]]
    return speech_windows(calibration), speech_windows(evaluation)
