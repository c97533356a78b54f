"""The Neutron int8 scheme (``neutronq.backend.scheme``) as torchao quantization specs: PTQ
observers and QAT fake-quantize.

  * activations: int8 asymmetric, histogram observer (eps 2^-12) for PTQ;
  * weights: int8 symmetric, min-max observer; per output channel on request;
  * bias: int32 derived from the input and weight scales;
  * fixed output parameters for ops whose int8 kernels impose them (sigmoid, softmax, tanh).

Specs are frozen values: build them once per quantizer and share them between nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.fx import Node
from torchao.quantization.pt2e import (
    FakeQuantize,
    FusedMovingAvgObsFakeQuantize,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
)
from torchao.quantization.pt2e.quantizer import (
    DerivedQuantizationSpec,
    FixedQParamsQuantizationSpec,
    QuantizationSpec,
)

from neutronq.backend.scheme import (
    ACT_QMAX,
    ACT_QMIN,
    BIAS_HEADROOM,
    BIAS_QMAX,
    BIAS_QMIN,
    HISTOGRAM_EPS,
    WEIGHT_QMAX,
    WEIGHT_QMIN,
)
from neutronq.quantizer.observers import (
    FlooredMinMaxObserver,
    FlooredMovingAverageMinMaxObserver,
    FlooredMovingAveragePerChannelMinMaxObserver,
    FlooredMSEWeightObserver,
    FlooredPerChannelMinMaxObserver,
    FlooredPerChannelMSEWeightObserver,
    HeldOutChoiceObserver,
    MSEObserver,
    MSEWeightObserver,
    PercentileObserver,
)

__all__ = [
    "bias_safe_weight_scale",
    "derive_bias_qparams",
    "QuantizationScheme",
    "ACTIVATION_OBSERVERS",
    "ACTIVATION_CANDIDATES",
    "AUTO_ACTIVATION_OBSERVER",
    "WEIGHT_OBSERVERS",
    "PER_CHANNEL_WEIGHT_OBSERVERS",
]

# the activation observer name whose range is chosen after calibration (neutronq.ptq.activation_choice)
AUTO_ACTIVATION_OBSERVER = "auto"

# Observer constructors by name. Each takes the keyword arguments of a torchao observer
# (dtype, qscheme, quant_min, quant_max, eps); the extra ones are in neutronq.quantizer.observers.
ACTIVATION_OBSERVERS: dict[str, Callable] = {
    "histogram": HistogramObserver,  # torchao's L2-norm search on a histogram
    "minmax": MinMaxObserver,
    "moving_average_minmax": MovingAverageMinMaxObserver,
    "percentile": PercentileObserver,  # 99.99th percentile at each end
    "mse": MSEObserver,  # range with the least int8 quantization MSE
    # histogram at calibration, then the candidate below that measures best on held-out samples,
    # if clearly (neutronq.ptq.activation_choice)
    AUTO_ACTIVATION_OBSERVER: HeldOutChoiceObserver,
}
# what "auto" chooses among (named as the observers above): rules that read one calibration histogram
ACTIVATION_CANDIDATES = tuple(HeldOutChoiceObserver.RULES)
WEIGHT_OBSERVERS: dict[str, Callable] = {
    "minmax": MinMaxObserver,
    "mse": MSEWeightObserver,
}
# The same per-tensor observers with the bias-safe scale floor (``min_scale``), for weighted ops
# that have a bias.
FLOORED_WEIGHT_OBSERVERS: dict[str, Callable] = {
    "minmax": FlooredMinMaxObserver,
    "mse": FlooredMSEWeightObserver,
}
PER_CHANNEL_WEIGHT_OBSERVERS: dict[str, Callable] = {
    "minmax": FlooredPerChannelMinMaxObserver,
    "mse": FlooredPerChannelMSEWeightObserver,
}


def _lookup(table: dict[str, Callable], name: str, what: str) -> Callable:
    if name not in table:
        raise ValueError(f"Unknown {what} observer {name!r}. Choose one of: {', '.join(table)}.")
    return table[name]


def bias_safe_weight_scale(bias: torch.Tensor) -> torch.Tensor:
    """Per output channel, the smallest weight scale at which the int32 bias fits the headroom
    (per-tensor weights take the largest).

    The bias scale is input scale x weight scale, and every activation scale is at least
    ``HISTOGRAM_EPS``. A channel whose weights are all (nearly) zero, as BatchNorm folding leaves
    behind for a dead channel, would otherwise get a minimal weight scale and a bias that
    saturates int32 (a wrong value) or overflows the accumulator on the NPU. The floor binds only
    where |bias| exceeds about 2000 x max |weight|, i.e. on such channels, or on a bias far larger
    than the weights."""
    return bias.detach().abs().to(torch.float32).reshape(-1) / (HISTOGRAM_EPS * BIAS_HEADROOM)


def derive_bias_qparams(obs_or_fqs: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Bias scale = input scale x weight scale (per tensor or per output channel), zero point 0."""
    act, weight = obs_or_fqs
    act_scale, _ = act.calculate_qparams()
    weight_scale, _ = weight.calculate_qparams()
    scale = (act_scale.reshape(-1)[:1] * weight_scale.reshape(-1)).to(torch.float32)
    if weight_scale.numel() == 1:
        scale = scale.reshape(())
    return scale, torch.zeros_like(scale, dtype=torch.int32)


@dataclass(frozen=True)
class QuantizationScheme:
    """The specs one quantizer hands out. ``per_channel`` applies to conv weights only."""

    is_qat: bool = False
    per_channel: bool = False
    activation_observer: str = "histogram"
    weight_observer: str = "minmax"

    def __post_init__(self):
        _lookup(ACTIVATION_OBSERVERS, self.activation_observer, "activation")
        _lookup(WEIGHT_OBSERVERS, self.weight_observer, "weight")

    # --- activations ---------------------------------------------------------------------------
    def activation(self) -> QuantizationSpec:
        if self.is_qat:
            ctr = FusedMovingAvgObsFakeQuantize.with_args(
                observer=MovingAverageMinMaxObserver, eps=HISTOGRAM_EPS
            )
        else:
            observer = _lookup(ACTIVATION_OBSERVERS, self.activation_observer, "activation")
            ctr = observer.with_args(eps=HISTOGRAM_EPS)
        return QuantizationSpec(
            dtype=torch.int8,
            observer_or_fake_quant_ctr=ctr,
            quant_min=ACT_QMIN,
            quant_max=ACT_QMAX,
            qscheme=torch.per_tensor_affine,
        )

    # --- weights -------------------------------------------------------------------------------
    def weight(self, per_channel: Optional[bool] = None, ch_axis: int = 0,
               min_scale: Optional[torch.Tensor] = None, layer: str = "") -> QuantizationSpec:
        """``min_scale``: the scale floor the layer's bias needs (``bias_safe_weight_scale``, per
        output channel); per tensor, its largest value. ``layer`` names the op in the warning
        given when the floor coarsens the weights."""
        per_channel = self.per_channel if per_channel is None else per_channel
        floor = {} if min_scale is None else {
            "min_scale": min_scale if per_channel else float(min_scale.max()) if min_scale.numel() else 0.0,
            "layer": layer}
        if per_channel:
            if self.is_qat:
                ctr = FakeQuantize.with_args(observer=FlooredMovingAveragePerChannelMinMaxObserver, **floor)
            else:
                ctr = _lookup(PER_CHANNEL_WEIGHT_OBSERVERS, self.weight_observer, "per-channel weight")
                if floor:
                    ctr = ctr.with_args(**floor)
            return QuantizationSpec(
                dtype=torch.int8,
                observer_or_fake_quant_ctr=ctr,
                quant_min=WEIGHT_QMIN,
                quant_max=WEIGHT_QMAX,
                qscheme=torch.per_channel_symmetric,
                ch_axis=ch_axis,
            )
        if self.is_qat:
            # Not FusedMovingAvgObsFakeQuantize: its kernel scales symmetric weights by
            # max / 127.5 (the int8 dtype's range), while convert_pt2e uses the observer's
            # max / 127 for [-127, 127]; the trained weights would not be the converted ones.
            ctr = FakeQuantize.with_args(observer=FlooredMovingAverageMinMaxObserver, **floor)
        else:
            ctr = _lookup(WEIGHT_OBSERVERS if not floor else FLOORED_WEIGHT_OBSERVERS, self.weight_observer, "weight")
            if floor:
                ctr = ctr.with_args(**floor)
        return QuantizationSpec(
            dtype=torch.int8,
            observer_or_fake_quant_ctr=ctr,
            quant_min=WEIGHT_QMIN,
            quant_max=WEIGHT_QMAX,
            qscheme=torch.per_tensor_symmetric,
        )

    # --- bias ----------------------------------------------------------------------------------
    def bias(self, input_node: Node, weight_node: Node, node: Node, weight: QuantizationSpec):
        per_channel = weight.qscheme == torch.per_channel_symmetric
        return DerivedQuantizationSpec(
            derived_from=[(input_node, node), (weight_node, node)],
            derive_qparams_fn=derive_bias_qparams,
            dtype=torch.int32,
            quant_min=BIAS_QMIN,
            quant_max=BIAS_QMAX,
            qscheme=torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric,
            ch_axis=0 if per_channel else None,
        )

    # --- fixed output parameters -----------------------------------------------------------------
    @staticmethod
    def fixed(scale: float, zero_point: int) -> FixedQParamsQuantizationSpec:
        return FixedQParamsQuantizationSpec(
            dtype=torch.int8,
            scale=scale,
            zero_point=zero_point,
            quant_min=ACT_QMIN,
            quant_max=ACT_QMAX,
            qscheme=torch.per_tensor_affine,
        )
