"""``NeutronQuantizer``: a torchao PT2E quantizer for the eIQ Neutron NPU's int8 scheme."""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Optional, Union

import torch
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.quantizer import Quantizer

from neutronq.backend.neutron_target_spec import NeutronTargetSpec
from neutronq.quantizer.rules import (
    ANNOTATION_KEY,
    RULE_BY_TARGET,
    RULES,
    annotate,
    is_annotated,
    is_float_tensor,
)
from neutronq.quantizer.specs import QuantizationScheme

__all__ = ["NeutronQuantizer", "NeutronTargetSpec", "UnquantizedOpWarning", "distillation_settings"]


class UnquantizedOpWarning(UserWarning):
    """Ops that no quantization rule covers: they stay float and run on the CPU."""


# Nodes that compute nothing a quantizer would annotate.
_IGNORED_TARGETS = {
    torch.ops.aten._assert_async.msg,
    torch.ops.aten._assert_scalar.default,
    torch.ops.aten.sym_size.int,
    torch.ops.aten.sym_constrain_range_for_size.default,
}


class NeutronQuantizer(Quantizer):
    """Annotates an exported graph for the Neutron NPU's static int8 scheme.

    Args:
        neutron_target_spec: the ``NeutronTargetSpec`` of the target; its flavor is the quantizer's.
        is_qat: quantization-aware training (fake-quantize) instead of calibration observers.
        per_channel: conv weights per output channel (TFLite per-axis) instead of per tensor.
        activation_observer / weight_observer: observer names (see ``neutronq.quantizer.specs``).
        overrides: per module or per op, the scheme fields to change there, e.g.
            ``{"_blocks.3": {"activation_observer": "mse"}, "aten.linear.default":
            {"weight_observer": "mse"}}``. A key is a module path (as in ``named_modules()``;
            it covers the module and everything inside it) or an op name (``str(node.target)``).
            Op keys apply first, then module keys from outer to inner, so the innermost wins.
        equalization: cross-layer equalization of conv -> activation -> conv chains before
            annotation (``neutronq.aten_passes.cross_layer_equalization``).
        bias_correction: empirical bias correction of conv / linear outputs after calibration,
            done by ``calibrate_and_quantize`` (or ``neutronq.quantizer.accuracy.correct_biases``
            between calibration and ``convert_pt2e``).
        adaround: adaptive rounding of conv2d / linear weights after calibration (before bias
            correction), done by ``calibrate_and_quantize`` (or
            ``neutronq.quantizer.adaround.adaround_weights`` before ``convert_pt2e``).
        adaround_sequential: AdaRound each layer on the int8 model's input so far (True) or on
            the float model's (False). Default (None): sequential for per-tensor weights, where
            it measured best (EfficientNet-Lite0: +2.9 dB), parallel for per-channel weights
            (-0.6 dB sequential, and 3x the time).
        distillation: after calibration, AdaRound and bias correction, train the conv / linear
            weights and biases of the int8 model (fixed quantization parameters) to give the float
            model's outputs on the calibration inputs, done by ``calibrate_and_quantize`` (or
            ``neutronq.quantizer.distill.distill`` before ``convert_pt2e``). About 12 passes with
            gradients over the calibration data. A dict instead of True passes its settings to
            ``distill``, e.g. ``{"augment": "flip", "learning_rate": 3e-5}``.
        The recommended combination is ``neutronq.quantizer.accuracy.recommended(...)``.

    Works with torchao's ``prepare_pt2e`` (PTQ), ``prepare_qat_pt2e`` (QAT) and ``convert_pt2e``,
    on graphs from ``torch.export.export(..., strict=False)`` and ``strict=True``.
    """

    def __init__(
        self,
        neutron_target_spec: NeutronTargetSpec,
        is_qat: bool = False,
        *,
        per_channel: bool = False,
        activation_observer: str = "histogram",
        weight_observer: str = "minmax",
        overrides: Optional[dict] = None,
        equalization: bool = False,
        bias_correction: bool = False,
        adaround: bool = False,
        adaround_sequential: Optional[bool] = None,
        distillation: Union[bool, dict] = False,
    ):
        super().__init__()
        if not isinstance(neutron_target_spec, NeutronTargetSpec):
            raise TypeError(
                "NeutronQuantizer needs a NeutronTargetSpec, e.g. "
                "NeutronQuantizer(NeutronTargetSpec(target='imxrt700')); got "
                f"{type(neutron_target_spec).__name__}."
            )
        self.neutron_target_spec = neutron_target_spec
        self.is_qat = bool(is_qat)
        self.scheme = QuantizationScheme(
            is_qat=self.is_qat,
            per_channel=per_channel,
            activation_observer=activation_observer,
            weight_observer=weight_observer,
        )
        from neutronq.quantizer.accuracy import SchemeOverrides

        self.overrides = SchemeOverrides(self.scheme, overrides)
        self.equalization = bool(equalization)
        self.bias_correction = bool(bias_correction)
        self.adaround = bool(adaround)
        if self.adaround and self.is_qat:
            raise ValueError("adaround=True is a PTQ step (it fits rounded weights to calibration data); "
                             "QAT learns its weights. Drop adaround, or use is_qat=False.")
        self.adaround_sequential = (not self.scheme.per_channel) if adaround_sequential is None \
            else bool(adaround_sequential)
        self.distillation = distillation_settings(distillation)
        if self.distillation is not None and self.is_qat:
            raise ValueError("distillation=True is a PTQ step (it trains the calibrated int8 model on "
                             "the calibration data); QAT trains with your train_fn. Drop distillation, "
                             "or use is_qat=False.")
        self.unquantized_ops: dict[str, list[str]] = {}

    # ---------------------------------------------------------------------------------------
    def transform_for_annotation(self, model: GraphModule) -> GraphModule:
        """Graph passes before annotation (torchao calls this inside prepare_pt2e / prepare_qat_pt2e).

        One list per flow, in order; each entry is a pass from ``neutronq.aten_passes`` or a
        quantizer step, each testable alone.
        """
        for transform in self._pre_annotation_transforms():
            model = transform(model)
        return model

    def _pre_annotation_transforms(self) -> list:
        transforms: list = []
        # --- QAT steps (owned by neutronq.quantizer.qat) ---
        from neutronq.quantizer.qat import pre_annotation_transforms as qat_transforms

        transforms += qat_transforms(self.is_qat)
        # --- accuracy steps (equalization etc., owned by neutronq.quantizer.accuracy) ---
        from neutronq.quantizer.accuracy import pre_annotation_transforms as accuracy_transforms

        transforms += accuracy_transforms(self)
        return transforms

    def annotate(self, model: GraphModule) -> GraphModule:
        specs = {"act": self.scheme.activation()}
        specs_by_scheme = {self.scheme: specs}
        for node in model.graph.nodes:
            if node.op != "call_function" or is_annotated(node):
                continue
            rule = RULE_BY_TARGET.get(node.target)
            if rule is not None:
                scheme = self.overrides.scheme_for(node)
                if scheme not in specs_by_scheme:
                    specs_by_scheme[scheme] = {"act": scheme.activation()}
                rule.annotate(node, scheme, specs_by_scheme[scheme])
        self.overrides.check_all_matched(model)
        self._annotate_graph_inputs(model, specs["act"])
        self._warn_unquantized(model)
        return model

    def validate(self, model: GraphModule) -> None:
        pass

    # ---------------------------------------------------------------------------------------
    @staticmethod
    def _annotate_graph_inputs(model: GraphModule, act_spec) -> None:
        """Quantize a float graph input once for all its quantized users."""
        for node in model.graph.nodes:
            if node.op != "placeholder" or not is_float_tensor(node) or is_annotated(node):
                continue
            if any(
                is_annotated(u) and node in u.meta[ANNOTATION_KEY].input_qspec_map for u in node.users
            ):
                annotate(node, {}, act_spec)

    def _warn_unquantized(self, model: GraphModule) -> None:
        missing: dict[str, list[str]] = defaultdict(list)
        for node in model.graph.nodes:
            if (
                node.op == "call_function"
                and node.target not in RULE_BY_TARGET
                and node.target not in _IGNORED_TARGETS
                and not is_annotated(node)  # claimed by another op's rule (e.g. a QAT conv+BN unit)
                and is_float_tensor(node)
            ):
                missing[str(node.target)].append(node.name)
        self.unquantized_ops = dict(missing)
        if missing:
            listed = "; ".join(f"{op} ({len(names)}: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                               for op, names in missing.items())
            warnings.warn(
                f"NeutronQuantizer has no quantization rule for: {listed}. These ops stay in float "
                "and run on the CPU. Supported op families: "
                f"{', '.join(r.name for r in RULES)}.",
                UnquantizedOpWarning,
                stacklevel=2,
            )


def distillation_settings(distillation) -> Optional[dict]:
    """``distillation=`` as ``distill``'s keyword arguments (None: off)."""
    if distillation is None or distillation is False:
        return None
    if distillation is True:
        return {}
    if isinstance(distillation, dict):
        import inspect

        from neutronq.quantizer.distill import check_settings, distill

        known = [name for name, p in inspect.signature(distill).parameters.items() if p.kind is p.KEYWORD_ONLY]
        unknown = sorted(set(distillation) - set(known))
        if unknown:
            raise ValueError(f"distillation: unknown settings {unknown}; the settings are {known} "
                             "(see neutronq.quantizer.distill.distill).")
        check_settings(**distillation)
        return dict(distillation)
    raise TypeError(f"distillation must be True, False or a dict of distill settings; got {type(distillation).__name__}.")
