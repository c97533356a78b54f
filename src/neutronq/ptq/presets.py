"""The recommended accuracy preset: the ``NeutronQuantizer`` options that measured best for
each weight scheme (``docs/accuracy.md``)."""

from __future__ import annotations

from neutronq.quantizer.neutron_quantizer import NeutronQuantizer

__all__ = ["RECOMMENDED_OPTIONS", "recommended_options", "recommended"]

RECOMMENDED_OPTIONS = {
    # Measured on EfficientNet-Lite0 (benchmarks/bench_accuracy.py, 100 calibration crops, first
    # 100 evaluation crops; top-1 agreement / logits SQNR against float): see docs/accuracy.md.
    # Per tensor, AdaRound is sequential and already fits each layer's output mean on the int8
    # model's own input; bias correction on top of it cost 1.1 dB (19.8 against 20.9 dB).
    # Both: the activation ranges chosen on the held-out calibration crops ("auto"): on MobileNetV2
    # (ImageNet weights, photos no step saw) it takes the percentile ranges (+6.6 dB a sample on
    # the held-out crops, 14 standard errors), 7.72 -> 10.38 dB per tensor and 10.76 -> 16.35 dB per
    # channel, and the presets reach 16.11 / 17.51 dB; on EfficientNet-Lite0 the rules are near
    # equals (MSE +0.47 dB a sample, under 2 standard errors) and the histogram ranges stay: 18.77 /
    # 24.11 dB.
    False: {"equalization": True, "adaround": True, "bias_correction": False, "weight_observer": "minmax",
            "activation_observer": "auto"},
    True: {"equalization": False, "adaround": True, "bias_correction": True, "weight_observer": "minmax",
           "activation_observer": "auto"},
}


def recommended_options(per_channel: bool = False) -> dict:
    """The ``NeutronQuantizer`` options of the recommended preset, for either weight scheme."""
    return {**RECOMMENDED_OPTIONS[bool(per_channel)], "per_channel": bool(per_channel)}


def recommended(neutron_target_spec, per_channel: bool = False, **overrides):
    """A ``NeutronQuantizer`` (PTQ) with the recommended accuracy steps; keyword arguments
    change single options. Quantize with ``calibrate_and_quantize`` (it applies AdaRound and bias
    correction after calibration; a few minutes for an EfficientNet-sized model on one core)."""
    return NeutronQuantizer(neutron_target_spec, **{**recommended_options(per_channel), **overrides})
