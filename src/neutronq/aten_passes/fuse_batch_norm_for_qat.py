"""QAT: rewrite conv / linear + batch norm so that BN trains folded into the quantized weights.

Before (an exported graph)::

    y = conv(x, w, b);  z = batch_norm(y, gamma, beta, mean, var, training, momentum, eps)

After::

    s   = bn_weight_scale(gamma, var, eps)          # gamma / sqrt(var + eps), per out channel
    w_s = mul(w, s)                                  # <- the weight fake-quantize goes here
    y   = conv(x, w_s, None)
    z   = qat_batch_norm(y, b, gamma, beta, mean, var, momentum, eps, training, freeze)

``qat_batch_norm`` in training divides ``s`` back out, adds ``b`` and normalises with the batch
statistics while updating the running ones (the "approximate" folding of Jacob et al. 2018 and
of torch's ``nniqat.ConvBn2d``); with frozen statistics or in eval it computes exactly the folded
conv, ``y + beta + (b - mean) * s``, which is what the converted int8 model computes after
``fold_qat_batch_norm``. The quantization of the unit's output sits after it (``rules.unit_output``).

Why not torchao's own conv-BN QAT fusion: its fold at ``convert_pt2e`` re-exports 96 pattern
graphs (14-28 s on a small model). No ``aten.batch_norm`` node is left after this rewrite, so
torchao's fusion and fold both find nothing, and ``fold_qat_batch_norm`` folds in milliseconds.
torchao also fuses no linear + BN in QAT; this pass does.

The training mode is read at run time from the model attribute that torchao's
``move_exported_model_to_train`` / ``_eval`` set (``_exported_training``); the statistics freeze
from ``_neutronq_freeze_bn`` (set by ``neutronq.quantizer.qat.freeze_bn_stats``).
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

__all__ = [
    "FuseBatchNormForQATPass",
    "qat_batch_norm",
    "bn_weight_scale",
    "TRAINING_ATTR",
    "FREEZE_BN_ATTR",
]

aten = torch.ops.aten

TRAINING_ATTR = "_exported_training"  # torchao's export_utils._EXPORTED_TRAINING_ATTR
FREEZE_BN_ATTR = "_neutronq_freeze_bn"
_WEIGHTED = (aten.conv1d.default, aten.conv2d.default, aten.linear.default)


def bn_weight_scale(gamma: torch.Tensor, running_var: torch.Tensor, eps: float, ndim: int) -> torch.Tensor:
    """gamma / sqrt(var + eps), shaped to multiply a weight of ``ndim`` dims along its dim 0."""
    return (gamma / torch.sqrt(running_var + eps)).reshape([-1] + [1] * (ndim - 1))


def qat_batch_norm(
    y: torch.Tensor,
    conv_bias: Optional[torch.Tensor],
    gamma: torch.Tensor,
    beta: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    momentum: float,
    eps: float,
    training: bool,
    freeze: bool,
) -> torch.Tensor:
    """The BN half of a QAT conv/linear + BN unit; ``y`` is the conv of the scaled weights."""
    shape = [1] * y.dim()
    shape[1] = -1
    scale = gamma / torch.sqrt(running_var + eps)
    if not training or freeze:
        bias = beta - running_mean * scale
        if conv_bias is not None:
            bias = bias + conv_bias * scale
        return y + bias.reshape(shape)
    y = y / scale.reshape(shape)
    if conv_bias is not None:
        y = y + conv_bias.reshape(shape)
    return F.batch_norm(y, running_mean, running_var, gamma, beta, True, momentum, eps)


def _mark_unquantized(node: Node) -> None:
    """Annotated with nothing: the quantizer's rules leave the node alone."""
    node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)


def _is_get_attr(n) -> bool:
    return isinstance(n, Node) and n.op == "get_attr"


def _ensure_flag(model: GraphModule, name: str, value: bool) -> Node:
    if not hasattr(model, name):
        setattr(model, name, value)
    for n in model.graph.nodes:
        if n.op == "get_attr" and n.target == name:
            return n
    first = next(iter(model.graph.nodes))
    with model.graph.inserting_before(first):
        return model.graph.get_attr(name)


class FuseBatchNormForQATPass:
    """Rewrites every conv1d / conv2d / linear followed by an affine batch norm (see module doc)."""

    def __call__(self, model: GraphModule) -> GraphModule:
        units = [bn for bn in model.graph.nodes if self._matches(bn)]
        if not units:
            return model
        training = any(bool(bn.args[5]) for bn in units)
        with warnings.catch_warnings():
            # get_attr of a bool flag: fx's lint says it usually references tensors
            warnings.filterwarnings("ignore", message=".*does not reference an nn.Module.*")
            warnings.filterwarnings("ignore", message=".*get_attr Node with no underlying reference.*")
            training_node = _ensure_flag(model, TRAINING_ATTR, training)
            freeze_node = _ensure_flag(model, FREEZE_BN_ATTR, False)
            for bn in units:
                self._rewrite(model, bn, training_node, freeze_node)
            # no eliminate_dead_code(): it would also drop .module()'s shape guard call
            model.graph.lint()
            model.recompile()
        return model

    @staticmethod
    def _matches(bn: Node) -> bool:
        if bn.op != "call_function" or bn.target is not aten.batch_norm.default:
            return False
        op = bn.args[0]
        if not (isinstance(op, Node) and op.op == "call_function" and op.target in _WEIGHTED):
            return False
        if len(op.users) != 1 or not _is_get_attr(op.args[1]):
            return False
        if not all(_is_get_attr(a) for a in bn.args[1:5]):  # affine, with running stats
            return False
        if op.target is aten.linear.default and op.meta["val"].dim() != 2:
            return False  # BatchNorm1d on (N, L, C) normalises L, not the linear's channels
        return True

    @staticmethod
    def _rewrite(model: GraphModule, bn: Node, training_node: Node, freeze_node: Node) -> None:
        graph = model.graph
        op = bn.args[0]
        weight = op.args[1]
        bias = op.args[2] if len(op.args) > 2 else op.kwargs.get("bias")
        gamma, beta, mean, var = bn.args[1:5]
        momentum, eps = bn.args[6], bn.args[7]
        wval = weight.meta["val"]
        with graph.inserting_before(op):
            scale = graph.call_function(bn_weight_scale, (gamma, var, eps, wval.dim()))
            scaled = graph.call_function(aten.mul.Tensor, (weight, scale))
        scaled.meta["val"] = wval
        for n in (scale, scaled):
            n.meta["nn_module_stack"] = op.meta.get("nn_module_stack", {})
        _mark_unquantized(scaled)
        args = list(op.args)
        args[1] = scaled
        if len(args) > 2:
            args[2] = None
        op.args = tuple(args)
        op.kwargs = {k: v for k, v in op.kwargs.items() if k != "bias"}
        with graph.inserting_after(bn):
            new = graph.call_function(
                qat_batch_norm,
                (op, bias, gamma, beta, mean, var, momentum, eps, training_node, freeze_node),
            )
        new.meta.update({k: v for k, v in bn.meta.items() if k != Q_ANNOTATION_KEY})
        bn.replace_all_uses_with(new)
        graph.erase_node(bn)
