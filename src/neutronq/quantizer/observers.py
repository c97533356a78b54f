"""Range-setting observers beyond torchao's own, registered by name in ``neutronq.quantizer.specs``.

Activations (per tensor, affine int8):
  * ``percentile``: the range between the ``100 - p`` and ``p`` percentiles of everything
    observed (default p = 99.99), read from a histogram like torchao's ``HistogramObserver``;
  * ``mse``: the clipping range that minimises the mean squared error between the observed values
    and their int8 quantization (rounding and clipping error), searched on the same histogram.

Weights (symmetric int8, per tensor or per output channel):
  * ``mse``: the clipping threshold ``alpha * max|w|`` (alpha in [0.2, 1]) that minimises the
    weight's squared quantization error, per tensor or per channel.

Chosen later (``auto``): ``HeldOutChoiceObserver`` calibrates as the histogram observer; after
calibration ``neutronq.ptq.activation_choice`` gives it whichever of the histogram-based rules
(``histogram``, ``mse``, ``percentile``) measures best on held-out samples (the histogram's own
unless another one's gain there is clear sample by sample).

The names torchao already provides (``minmax``, ``moving_average_minmax``, ``histogram`` — the
last one torchao's L2 search) complete the tables in ``specs.py``.
"""

from __future__ import annotations

import warnings

import torch
from torchao.quantization.pt2e import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
)

__all__ = [
    "HeldOutChoiceObserver",
    "percentile_range",
    "mse_range",
    "PercentileObserver",
    "MSEObserver",
    "MSEWeightObserver",
    "PerChannelMSEWeightObserver",
    "BiasScaleFloorWarning",
    "FlooredMinMaxObserver",
    "FlooredMSEWeightObserver",
    "FlooredMovingAverageMinMaxObserver",
    "FlooredMovingAveragePerChannelMinMaxObserver",
    "FlooredPerChannelMinMaxObserver",
    "FlooredPerChannelMSEWeightObserver",
    "quantization_mse",
]

# Clipping thresholds tried by the weight observers, as fractions of max |w|.
_WEIGHT_ALPHAS = torch.linspace(0.2, 1.0, 81)


def _histogram_centers(obs: HistogramObserver) -> tuple[torch.Tensor, torch.Tensor]:
    width = (obs.max_val - obs.min_val) / obs.bins
    centers = obs.min_val + width * (torch.arange(obs.bins, dtype=torch.float32, device=obs.histogram.device) + 0.5)
    return centers, obs.histogram.to(torch.float32)


def quantization_mse(values: torch.Tensor, counts: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                     quant_min: int, quant_max: int) -> torch.Tensor:
    """Weighted squared error of affine-quantizing ``values`` to the range [lo, hi] (batched over
    the leading dimension of ``lo`` / ``hi``); the range is widened to hold 0, as torchao does."""
    lo = torch.minimum(lo, torch.zeros_like(lo)).unsqueeze(-1)
    hi = torch.maximum(hi, torch.zeros_like(hi)).unsqueeze(-1)
    scale = ((hi - lo) / float(quant_max - quant_min)).clamp_min(1e-12)
    zero_point = (quant_min - torch.round(lo / scale)).clamp(quant_min, quant_max)
    q = torch.clamp(torch.round(values / scale) + zero_point, quant_min, quant_max)
    return (((q - zero_point) * scale - values) ** 2 * counts).sum(-1)


DEFAULT_PERCENTILE = 99.99
DEFAULT_MSE_STEPS = 40


def percentile_range(obs: HistogramObserver, percentile: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``100 - percentile`` and ``percentile`` percentiles of what ``obs`` histogrammed."""
    counts = obs.histogram.to(torch.float64)
    cdf = torch.cumsum(counts, 0) / counts.sum()
    width = (obs.max_val - obs.min_val) / obs.bins
    tail = 1.0 - percentile / 100.0
    # first bin whose cumulative share reaches the lower tail; last bin below the upper one
    lo_bin = int(torch.searchsorted(cdf, torch.tensor(tail, dtype=cdf.dtype, device=cdf.device)))
    hi_bin = int(torch.searchsorted(cdf, torch.tensor(1.0 - tail, dtype=cdf.dtype, device=cdf.device)))
    lo = obs.min_val + width * lo_bin if tail > 0 else obs.min_val
    hi = obs.min_val + width * min(hi_bin + 1, obs.bins) if tail > 0 else obs.max_val
    return lo, hi


def mse_range(obs: HistogramObserver, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The range with the least int8 quantization MSE of what ``obs`` histogrammed: each end of
    the observed range shrunk towards 0 in ``steps`` steps (both ends jointly), the error of each
    candidate measured on the histogram's bin centres."""
    values, counts = _histogram_centers(obs)
    fractions = torch.linspace(1.0, 1.0 / steps, steps, device=obs.min_val.device)
    lo_c = obs.min_val * fractions if obs.min_val < 0 else obs.min_val.reshape(1)
    hi_c = obs.max_val * fractions if obs.max_val > 0 else obs.max_val.reshape(1)
    lo_grid, hi_grid = torch.meshgrid(lo_c, hi_c, indexing="ij")
    err = quantization_mse(values, counts, lo_grid.reshape(-1), hi_grid.reshape(-1), obs.quant_min, obs.quant_max)
    best = int(torch.argmin(err))
    return lo_grid.reshape(-1)[best], hi_grid.reshape(-1)[best]


class PercentileObserver(HistogramObserver):
    """Range from the ``100 - percentile`` and ``percentile`` percentiles of the observed values."""

    def __init__(self, percentile: float = DEFAULT_PERCENTILE, **kwargs):
        super().__init__(**kwargs)
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100]; got {percentile}.")
        self.percentile = float(percentile)

    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        return percentile_range(self, self.percentile)


class MSEObserver(HistogramObserver):
    """Range that minimises the int8 quantization MSE of the observed values (``mse_range``)."""

    def __init__(self, steps: int = DEFAULT_MSE_STEPS, **kwargs):
        super().__init__(**kwargs)
        self.steps = int(steps)

    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        return mse_range(self, self.steps)


class HeldOutChoiceObserver(HistogramObserver):
    """A histogram observer whose range rule is chosen after calibration
    (``neutronq.ptq.activation_choice`` sets ``rule``, one of ``RULES``; until then it is
    torchao's histogram search). The rule changes on this very module, so everything that holds
    it (the derived int32 bias scales of the ops it feeds, shared specs) sees the chosen range."""

    # each rule reads the same calibration histogram: the choice needs no second calibration
    RULES = {
        "histogram": None,  # torchao's L2 search
        "mse": lambda obs: mse_range(obs, DEFAULT_MSE_STEPS),
        "percentile": lambda obs: percentile_range(obs, DEFAULT_PERCENTILE),
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rule = "histogram"

    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        search = self.RULES[self.rule]
        return super()._non_linear_param_search() if search is None else search(self)

    def extra_repr(self) -> str:
        return f"rule={self.rule}"


def _symmetric_mse_threshold(w: torch.Tensor, quant_min: int, quant_max: int) -> torch.Tensor:
    """Per row of ``w`` ([channels, n]): the threshold alpha * max|w| with the least squared error."""
    absmax = w.abs().amax(dim=1)  # [C]
    thresholds = absmax.unsqueeze(0) * _WEIGHT_ALPHAS.to(w.device).unsqueeze(1)  # [A, C]
    scale = (thresholds / (float(quant_max - quant_min) / 2)).clamp_min(1e-12).unsqueeze(-1)
    q = torch.clamp(torch.round(w.unsqueeze(0) / scale), quant_min, quant_max)
    err = ((q * scale - w.unsqueeze(0)) ** 2).sum(-1)  # [A, C]
    best = torch.argmin(err, dim=0)  # first (smallest alpha) among equals
    return thresholds.gather(0, best.unsqueeze(0)).squeeze(0)


class MSEWeightObserver(MinMaxObserver):
    """Symmetric per-tensor weight range with the least squared quantization error."""

    def forward(self, x_orig):
        self._last = x_orig.detach().reshape(1, -1).to(torch.float32)
        return super().forward(x_orig)

    def calculate_qparams(self):
        if getattr(self, "_last", None) is None:
            return super().calculate_qparams()
        t = _symmetric_mse_threshold(self._last, self.quant_min, self.quant_max)[0]
        return self._calculate_qparams(-t, t)


class PerChannelMSEWeightObserver(PerChannelMinMaxObserver):
    """Symmetric per-channel weight ranges, each with the least squared quantization error."""

    def forward(self, x_orig):
        x = x_orig.detach().to(torch.float32).transpose(0, self.ch_axis)
        self._last = x.reshape(x.shape[0], -1)
        return super().forward(x_orig)

    def calculate_qparams(self):
        if getattr(self, "_last", None) is None:
            return super().calculate_qparams()
        t = _symmetric_mse_threshold(self._last, self.quant_min, self.quant_max)
        return self._calculate_qparams(-t, t)


class BiasScaleFloorWarning(UserWarning):
    """A layer's int32 bias needs a larger weight scale than its weights' range gives: the floor
    (``neutronq.quantizer.specs.bias_safe_weight_scale``) coarsens its int8 weights."""


class _ScaleFloor:
    """Mixin for weight observers: the scale is at least ``min_scale`` (per channel: a tensor over
    channels; per tensor: a number; none by default). ``layer`` names the op in the one warning
    given when the floor coarsens weights that are not all (nearly) zero."""

    def __init__(self, *args, min_scale=None, layer: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        floor = torch.as_tensor(0.0 if min_scale is None else min_scale, dtype=torch.float32)
        self.register_buffer("min_scale", floor.clone())
        self.layer = layer
        self._warned = False

    def calculate_qparams(self):
        scale, zero_point = super().calculate_qparams()
        floored = torch.maximum(scale, self.min_scale.to(scale.device, scale.dtype))
        if not self._warned:
            self._warn_if_coarsened(scale, floored)
        return floored, zero_point

    def _warn_if_coarsened(self, scale: torch.Tensor, floored: torch.Tensor) -> None:
        # weights of a channel whose scale is the observer's eps are (nearly) all zero: nothing to lose
        coarser = (floored > 2 * scale) & (scale > self.eps.to(scale.device) * 1.5)
        if not bool(coarser.any()):
            return
        self._warned = True
        where = torch.nonzero(coarser.reshape(-1)).flatten()
        channels = "" if scale.numel() == 1 else f" (output channel(s) {where[:8].tolist()})"
        ratio = float((floored / scale).reshape(-1)[where].max())
        warnings.warn(
            f"{self.layer or 'a conv / linear'}{channels}: the int32 bias is too large for the weights' own "
            f"scale (it would overflow int32); the weight scale is raised to {float(floored.reshape(-1)[where[0]]):.3g} "
            f"so that it fits, which makes those int8 weights up to {ratio:.0f}x coarser. A bias far larger "
            "than the weights (or weights near zero) causes this; per-channel weights (per_channel=True) "
            "confine it to the channels concerned.",
            BiasScaleFloorWarning, stacklevel=2)


class FlooredMinMaxObserver(_ScaleFloor, MinMaxObserver):
    """``MinMaxObserver`` (per tensor) with a scale floor (``min_scale``)."""


class FlooredMSEWeightObserver(_ScaleFloor, MSEWeightObserver):
    """``MSEWeightObserver`` (per tensor) with a scale floor (``min_scale``)."""


class FlooredMovingAverageMinMaxObserver(_ScaleFloor, MovingAverageMinMaxObserver):
    """QAT's per-tensor weight observer with a scale floor (``min_scale``)."""


class FlooredMovingAveragePerChannelMinMaxObserver(_ScaleFloor, MovingAveragePerChannelMinMaxObserver):
    """QAT's per-channel weight observer with a scale floor (``min_scale``)."""


class FlooredPerChannelMinMaxObserver(_ScaleFloor, PerChannelMinMaxObserver):
    """``PerChannelMinMaxObserver`` with a per-channel scale floor (``min_scale``)."""


class FlooredPerChannelMSEWeightObserver(_ScaleFloor, PerChannelMSEWeightObserver):
    """``PerChannelMSEWeightObserver`` with a per-channel scale floor (``min_scale``)."""
