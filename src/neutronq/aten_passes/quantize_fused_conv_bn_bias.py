"""``QuantizeFusedConvBnBiasAtenPass``: int32 biases for convs after QAT (the QAT guide's fix).

After ``convert_pt2e`` a conv can be left with a float bias (batch norm folded into it, by
neutronq's ``fold_qat_batch_norm`` or by torchao's own QAT fold) or with no bias at all; the
Neutron converter needs an int32 bias on every conv. This pass

1. folds neutronq's QAT batch norms into their convs / linears (``fold_qat_batch_norm``);
2. gives every quantized conv (and every quantized linear whose bias is float) an int32 bias
   with scale = input scale x weight scale (per output channel for per-channel weights), zero
   point 0, range +-(2^31 - 1), read by a ``dequantize`` like the biases ``convert_pt2e`` makes;
   a conv without bias gets a zero one when ``default_zero_bias`` is set (the default), and is
   left alone otherwise.

A conv counts as quantized when its input and weight come from ``dequantize`` nodes. Called on a
``GraphModule`` it changes it in place and returns a ``PassResult`` (``.graph_module``); on an
``ExportedProgram`` it works on ``.module()`` and returns a result whose ``exported_program`` is
that module exported again.

Why not ExecuTorch's generic pass of this name (``executorch.backends.transforms``): it knows
nothing of neutronq's QAT batch norm nodes nor of linear + BN, both of which need step 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
from torch.export import ExportedProgram
from torch.fx import GraphModule, Node
from torch.fx.passes.infra.pass_base import PassResult

from neutronq.aten_passes.fold_qat_batch_norm import fold_qat_batch_norm
from neutronq.backend.scheme import BIAS_QMAX, BIAS_QMIN
from neutronq.fx import get_attr_value, register_constant

__all__ = ["QuantizeFusedConvBnBiasAtenPass", "ExportedProgramPassResult"]

aten = torch.ops.aten
qd = torch.ops.quantized_decomposed
_CONVS = (aten.conv1d.default, aten.conv2d.default)
_LINEARS = (aten.linear.default,)
_DQ_PER_TENSOR = (qd.dequantize_per_tensor.default,)
_DQ_PER_CHANNEL = (qd.dequantize_per_channel.default,)


@dataclass
class ExportedProgramPassResult:
    graph_module: GraphModule
    modified: bool
    exported_program: ExportedProgram


def _is_dq(node, targets) -> bool:
    return isinstance(node, Node) and node.op == "call_function" and node.target in targets


class QuantizeFusedConvBnBiasAtenPass:
    """Folds QAT batch norms and quantizes float or missing conv biases to int32 (module doc)."""

    def __init__(self, default_zero_bias: bool = True):
        self.default_zero_bias = bool(default_zero_bias)

    def __call__(self, model: Union[GraphModule, ExportedProgram]):
        if isinstance(model, ExportedProgram):
            return self._call_exported(model)
        if not isinstance(model, GraphModule):
            raise TypeError(
                "QuantizeFusedConvBnBiasAtenPass takes the GraphModule from convert_pt2e or an "
                f"ExportedProgram; got {type(model).__name__}."
            )
        return PassResult(model, self.call(model))

    def call(self, model: GraphModule) -> bool:
        """Changes ``model`` in place; True when it changed anything."""
        modified = fold_qat_batch_norm(model) > 0
        for node in list(model.graph.nodes):
            if node.op == "call_function" and node.target in _CONVS + _LINEARS:
                modified |= self._quantize_bias(model, node)
        if modified:
            model.graph.eliminate_dead_code()
            model.graph.lint()
            model.recompile()
        return modified

    # ---------------------------------------------------------------------------------------
    def _quantize_bias(self, model: GraphModule, op: Node) -> bool:
        x, w = op.args[0], op.args[1]
        bias = op.args[2] if len(op.args) > 2 else op.kwargs.get("bias")
        if not _is_dq(x, _DQ_PER_TENSOR) or not _is_dq(w, _DQ_PER_TENSOR + _DQ_PER_CHANNEL):
            return False  # not a quantized op
        if _is_dq(bias, _DQ_PER_TENSOR + _DQ_PER_CHANNEL):
            return False  # already int32
        if bias is None:
            if op.target not in _CONVS or not self.default_zero_bias:
                return False
            weight = get_attr_value(model, w.args[0])
            out_channels = w.meta["val"].shape[0] if "val" in w.meta else weight.shape[0]
            value = torch.zeros(out_channels, device=weight.device if weight is not None else None)
        else:
            value = get_attr_value(model, bias)
            if value is None or not value.is_floating_point():
                return False
            value = value.detach().float()
        input_scale = float(x.args[1])
        per_channel = _is_dq(w, _DQ_PER_CHANNEL)
        if per_channel:
            weight_scale = get_attr_value(model, w.args[1])
            if weight_scale is None or w.args[3] != 0:
                return False
            scale = input_scale * weight_scale.detach().double()
        else:
            scale = torch.tensor(input_scale * float(w.args[1]), dtype=torch.float64, device=value.device)
        q = torch.clamp(torch.round(value.double() / scale), BIAS_QMIN, BIAS_QMAX).to(torch.int32)
        q_node = register_constant(model, f"{op.name}_bias_int32", q, op)
        with model.graph.inserting_before(op):
            if per_channel:
                scale_node = register_constant(model, f"{op.name}_bias_scale", scale.float(), op)
                zp_node = register_constant(
                    model, f"{op.name}_bias_zero_point", torch.zeros_like(q, dtype=torch.int64), op
                )
                dq = model.graph.call_function(
                    qd.dequantize_per_channel.default,
                    (q_node, scale_node, zp_node, 0, BIAS_QMIN, BIAS_QMAX, torch.int32),
                )
            else:
                dq = model.graph.call_function(
                    qd.dequantize_per_tensor.default,
                    (q_node, float(scale), 0, BIAS_QMIN, BIAS_QMAX, torch.int32),
                )
        dq.meta["val"] = q.float() * scale.float()
        args = list(op.args) + [None] * max(0, 3 - len(op.args))
        args[2] = dq
        op.args = tuple(args)
        op.kwargs = {k: v for k, v in op.kwargs.items() if k != "bias"}
        return True

    def _call_exported(self, program: ExportedProgram) -> ExportedProgramPassResult:
        module = program.module()
        modified = self.call(module)
        example = tuple(
            torch.zeros(n.meta["val"].shape, dtype=n.meta["val"].dtype, device=n.meta["val"].device)
            for n in module.graph.nodes
            if n.op == "placeholder"
        )
        exported = torch.export.export(module, example, strict=False) if modified else program
        return ExportedProgramPassResult(module, modified, exported)
