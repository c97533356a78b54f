"""PTQ: an inference batch norm that no conv or linear absorbs becomes a depthwise 1x1 conv.

torchao's ``prepare_pt2e`` folds a batch norm into the conv (or linear) before it. One that
follows anything else (an add, a pool, the model's input) is left as ``aten.batch_norm``, which
no int8 kernel runs. In inference it is a per-channel affine map::

    y = (x - mean) / sqrt(var + eps) * gamma + beta  =  x * scale + shift,
    scale = gamma / sqrt(var + eps),  shift = beta - mean * scale

which is exactly a depthwise conv with a 1x1 kernel (weight ``scale``, one per channel, and bias
``shift``). This pass writes it as one, so the conv rule quantizes it (int8 weights, int32 bias)
and the conv lowering runs it on the NPU as a DEPTHWISE_CONV_2D:

  * ``[N, C, H, W]``: ``conv2d(x, scale[C, 1, 1, 1], shift, groups=C)``;
  * ``[N, C, L]``: ``conv1d(x, scale[C, 1, 1], shift, groups=C)``;
  * ``[N, C]``: ``unsqueeze(x, -1)``, the ``conv1d``, ``squeeze(-1)``.

Only batch norms that use their running statistics (``training=False`` in the graph, i.e. the
model exported in eval mode) are rewritten; QAT leaves them (their statistics train).
"""

from __future__ import annotations

import operator
from typing import Optional

import torch
from torch.fx import GraphModule, Node

from neutronq.fx import free_attr_name, get_attr_value

__all__ = ["BatchNormToDepthwiseConvPass"]

aten = torch.ops.aten


def _inference_batch_norm(node: Node) -> Optional[tuple]:
    """(input, gamma, beta, mean, var, eps, output node) of an inference batch norm, else None."""
    if node.op != "call_function":
        return None
    if node.target is aten.batch_norm.default:
        x, gamma, beta, mean, var, training, _momentum, eps = node.args[:8]
        if training:
            return None
        return x, gamma, beta, mean, var, float(eps), node
    if node.target is aten._native_batch_norm_legit_no_training.default:
        x, gamma, beta, mean, var, _momentum, eps = node.args[:7]
        outs = [u for u in node.users if u.target is operator.getitem]
        if len(outs) != len(node.users) or any(u.args[1] != 0 for u in outs) or len(outs) != 1:
            return None  # the saved statistics (getitem 1, 2) are used: not an inference BN
        return x, gamma, beta, mean, var, float(eps), outs[0]
    return None


class BatchNormToDepthwiseConvPass:
    """Rewrites each inference batch norm left in the graph as a depthwise 1x1 conv."""

    def __call__(self, gm: GraphModule) -> GraphModule:
        changed = False
        for node in list(gm.graph.nodes):
            found = _inference_batch_norm(node)
            if found is None:
                continue
            x, gamma, beta, mean, var, eps, out = found
            mean_v, var_v = get_attr_value(gm, mean), get_attr_value(gm, var)
            x_val = x.meta.get("val") if isinstance(x, Node) else None
            if mean_v is None or var_v is None or not isinstance(x_val, torch.Tensor) or x_val.dim() not in (2, 3, 4):
                continue
            gamma_v = get_attr_value(gm, gamma) if gamma is not None else None
            beta_v = get_attr_value(gm, beta) if beta is not None else None
            if (gamma is not None and gamma_v is None) or (beta is not None and beta_v is None):
                continue  # affine parameters computed in the graph: not constants
            self._rewrite(gm, node, out, x, x_val, mean_v, var_v, gamma_v, beta_v, eps)
            changed = True
        if changed:
            gm.graph.eliminate_dead_code()
            gm.graph.lint()
            gm.recompile()
        return gm

    @staticmethod
    def _rewrite(gm, bn, out, x, x_val, mean, var, gamma, beta, eps) -> None:
        with torch.no_grad():
            scale = 1.0 / torch.sqrt(var.to(torch.float64) + eps)
            if gamma is not None:
                scale = scale * gamma.to(torch.float64)
            shift = -mean.to(torch.float64) * scale
            if beta is not None:
                shift = shift + beta.to(torch.float64)
        dtype = x_val.dtype
        channels = int(scale.numel())
        spatial = 2 if x_val.dim() == 4 else 1
        weight = scale.to(dtype).reshape([channels, 1] + [1] * spatial)
        bias = shift.to(dtype)
        names = []
        for what, value in (("weight", weight), ("bias", bias)):
            name = free_attr_name(gm, f"{bn.name}_dw_{what}")
            gm.register_parameter(name, torch.nn.Parameter(value, requires_grad=False))
            names.append(name)
        meta = {k: bn.meta[k] for k in ("nn_module_stack", "stack_trace", "source_fn_stack") if k in bn.meta}
        graph = gm.graph
        with graph.inserting_before(bn):
            w_node, b_node = graph.get_attr(names[0]), graph.get_attr(names[1])
            src = x
            if x_val.dim() == 2:
                src = graph.call_function(aten.unsqueeze.default, (x, -1))
                src.meta["val"] = x_val.unsqueeze(-1)
            if spatial == 2:
                conv = graph.call_function(aten.conv2d.default, (src, w_node, b_node, [1, 1], [0, 0], [1, 1], channels))
            else:
                conv = graph.call_function(aten.conv1d.default, (src, w_node, b_node, [1], [0], [1], channels))
            conv.meta["val"] = src.meta["val"] if src is not x else x_val
            result = conv
            if x_val.dim() == 2:
                result = graph.call_function(aten.squeeze.dim, (conv, -1))
                result.meta["val"] = x_val
        w_node.meta["val"], b_node.meta["val"] = weight, bias
        for n in (conv, result, *(n for n in (src,) if n is not x)):
            n.meta.update(meta)
        out.replace_all_uses_with(result)
        if out is not bn:
            graph.erase_node(out)
        graph.erase_node(bn)
