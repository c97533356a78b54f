"""``NeutronQuantizer``: a torchao PT2E quantizer for the eIQ Neutron NPU's int8 scheme."""

from __future__ import annotations

import operator
import warnings
from collections import defaultdict
from typing import Optional, Union

import torch
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.quantizer import Quantizer

from neutronq.aten_passes.pass_manager import passes_before_annotation
from neutronq.backend.neutron_target_spec import NeutronTargetSpec
from neutronq.fx import is_float_tensor, op_name
from neutronq.quantizer.overrides import SchemeOverrides
from neutronq.quantizer.qat import check_prepare_function
from neutronq.quantizer.rules import ANNOTATION_KEY, RULE_BY_TARGET, RULES, annotate, is_annotated
from neutronq.quantizer.specs import AUTO_ACTIVATION_OBSERVER, QuantizationScheme
from neutronq.quantizer.steps import DEFAULT_HOLDOUT, PtqSteps, distillation_settings

__all__ = ["NeutronQuantizer", "NeutronTargetSpec", "UnquantizedOpWarning"]


class UnquantizedOpWarning(UserWarning):
    """Ops that no quantization rule covers: they stay float and run on the CPU."""


# Nodes that compute nothing a quantizer would annotate.
_IGNORED_TARGETS = {
    operator.getitem,  # an element of its producer's tuple output: the producer is named instead
    torch.ops.aten._assert_async.msg,
    torch.ops.aten._assert_scalar.default,
    torch.ops.aten.sym_size.int,
    torch.ops.aten.sym_constrain_range_for_size.default,
}


def _computes_float(node: Node) -> bool:
    """A float tensor output, or a tuple of outputs with one (topk's values, an LSTM's)."""
    val = node.meta.get("val")
    values = val if isinstance(val, (tuple, list)) else (val,)
    return any(isinstance(v, torch.Tensor) and v.dtype.is_floating_point for v in values)


class NeutronQuantizer(Quantizer):
    """Annotates an exported graph for the Neutron NPU's static int8 scheme.

    Args:
        neutron_target_spec: the ``NeutronTargetSpec`` of the target; its flavor is the quantizer's.
        is_qat: quantization-aware training (fake-quantize) instead of calibration observers.
        per_channel: conv weights per output channel (TFLite per-axis) instead of per tensor.
        activation_observer / weight_observer: observer names (see ``neutronq.quantizer.specs``).
            ``activation_observer="auto"`` (PTQ): calibrate with the histogram, then keep the
            ranges of whichever of ``ACTIVATION_CANDIDATES`` (histogram, mse, percentile) gives the
            best SQNR on the held-out calibration samples, the histogram's unless another one's
            gain there is clear sample by sample (``neutronq.ptq.activation_choice``).
        overrides: per module or per op, the scheme fields to change there, e.g.
            ``{"_blocks.3": {"activation_observer": "mse"}, "aten.linear.default":
            {"weight_observer": "mse"}}``. A key is a module path (as in ``named_modules()``;
            it covers the module and everything inside it) or an op name (``str(node.target)``).
            Op keys apply first, then module keys from outer to inner, so the innermost wins.
        equalization: cross-layer equalization of conv -> activation -> conv chains before
            annotation (``neutronq.aten_passes.cross_layer_equalization``).
        decompose_layer_norm: LayerNorm rewritten as its arithmetic before annotation, so that it
            runs on the NPU, which has no layer norm (``neutronq.aten_passes.decompose_layer_norm``,
            where the measurement behind the default is); False keeps each LayerNorm whole, in
            float on the CPU.
        The options below are post-calibration steps: the quantizer carries them
        (``quantizer.steps``, a ``PtqSteps``) and ``calibrate_and_quantize`` /
        ``prepare_and_calibrate`` run them (``neutronq.ptq``); torchao's own ``prepare_pt2e`` /
        ``convert_pt2e`` ignore them.
        bias_correction: empirical bias correction of conv / linear outputs after calibration
            (``neutronq.ptq.bias_correction.correct_biases``).
        adaround: adaptive rounding of conv2d / linear weights after calibration, before bias
            correction (``neutronq.ptq.adaround.adaround_weights``).
        adaround_sequential: AdaRound each layer on the int8 model's input so far (True) or on
            the float model's (False). Default (None): sequential for per-tensor weights, where
            it measured best (EfficientNet-Lite0: +2.9 dB), parallel for per-channel weights
            (-0.6 dB sequential, and 3x the time).
        distillation: after calibration, AdaRound and bias correction, train the conv / linear
            weights and biases of the int8 model (fixed quantization parameters) to give the float
            model's outputs on the calibration inputs (``neutronq.ptq.distill.distill``). About 12
            passes with gradients over the calibration data. A dict instead of True sets its
            settings (``neutronq.quantizer.steps.DistillationSettings``), e.g.
            ``{"augment": "flip", "learning_rate": 3e-5}``.
        holdout: the share of the calibration samples the steps above do not train on: each
            step's gain is measured there, a step that loses there is undone (with a warning), and
            distillation keeps its best epoch there. 0 trains on everything and keeps every step.
        The recommended combination is ``neutronq.ptq.presets.recommended(...)``.

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
        decompose_layer_norm: bool = True,
        bias_correction: bool = False,
        adaround: bool = False,
        adaround_sequential: Optional[bool] = None,
        distillation: Union[bool, dict] = False,
        holdout: float = DEFAULT_HOLDOUT,
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
        self.overrides = SchemeOverrides(self.scheme, overrides)
        self.equalization = bool(equalization)
        self.decompose_layer_norm = bool(decompose_layer_norm)
        if adaround and self.is_qat:
            raise ValueError("adaround=True is a PTQ step (it fits rounded weights to calibration data); "
                             "QAT learns its weights. Drop adaround, or use is_qat=False.")
        settings = distillation_settings(distillation)
        if settings is not None and self.is_qat:
            raise ValueError("distillation=True is a PTQ step (it trains the calibrated int8 model on "
                             "the calibration data); QAT trains with your train_fn. Drop distillation, "
                             "or use is_qat=False.")
        self.steps = PtqSteps(
            adaround=bool(adaround),
            # sequential for per-tensor weights, where it measured best (EfficientNet-Lite0:
            # +2.9 dB); parallel for per-channel weights (-0.6 dB sequential, and 3x the time)
            adaround_sequential=(not self.scheme.per_channel) if adaround_sequential is None
            else bool(adaround_sequential),
            activation_choice=not self.is_qat and self.overrides.uses_activation_observer(AUTO_ACTIVATION_OBSERVER),
            bias_correction=bool(bias_correction),
            distillation=settings,
            holdout=float(holdout),
        )
        self.unquantized_ops: dict[str, list[str]] = {}

    # the post-calibration steps, as the options were named
    @property
    def adaround(self) -> bool:
        return self.steps.adaround

    @property
    def adaround_sequential(self) -> bool:
        return self.steps.adaround_sequential

    @property
    def bias_correction(self) -> bool:
        return self.steps.bias_correction

    @property
    def distillation(self) -> Optional[dict]:
        return self.steps.distillation

    # ---------------------------------------------------------------------------------------
    def transform_for_annotation(self, model: GraphModule) -> GraphModule:
        """Graph passes before annotation (torchao calls this inside prepare_pt2e / prepare_qat_pt2e).

        The quantizer's check of the prepare function, then ``neutronq.aten_passes``' list for
        the flow (``pass_manager.passes_before_annotation``), in order, each testable alone.
        """
        for transform in self._pre_annotation_transforms():
            model = transform(model)
        return model

    def _pre_annotation_transforms(self) -> list:
        """The prepare function's check, then the graph passes (``aten_passes.pass_manager``)."""
        return [check_prepare_function(self.is_qat),
                *passes_before_annotation(self.is_qat, equalization=self.equalization,
                                          decompose_layer_norm=self.decompose_layer_norm)]

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
                and _computes_float(node)
            ):
                missing[op_name(node.target)].append(node.name)
        self.unquantized_ops = dict(missing)
        if missing:
            listed = "; ".join(f"{op} ({len(names)}: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                               for op, names in missing.items())
            warnings.warn(
                f"NeutronQuantizer has no quantization rule for: {listed}. These ops stay in float "
                "and run on the CPU. Supported op families: "
                f"{', '.join(dict.fromkeys(r.name for r in RULES))}.",
                UnquantizedOpWarning,
                stacklevel=2,
            )

