"""LayerNorm as its arithmetic, before annotation, so that every piece is observed, quantized and
lowered by the NPU's ops (the NPU has no layer norm):

    mean = x.mean(dims, keepdim=True)      aten.mean.dim (MEAN; shares x's parameters)
    d    = x - mean                        aten.sub.Tensor (SUB)
    var  = linear(d * d, full(1/C))        aten.mul.Tensor (MUL), aten.linear.default (FULLY_CONNECTED)
    r    = rsqrt(var + eps)                aten.add.Tensor (ADD; eps a constant), aten.rsqrt.default (RSQRT)
    y    = d * r * weight + bias           aten.mul.Tensor, aten.mul.Tensor, aten.add.Tensor (MUL, MUL, ADD)

``dims`` are the normalised (last) dims, ``C`` their size; ``eps`` becomes a constant tensor (a
Python scalar would reach the edge dialect as an unquantized float). In float the rewrite
computes what ``aten.layer_norm.default`` computes (to float rounding).

The variance is the mean of ``d * d`` taken by a linear with the constant weight 1/C (exact in
int8: 127 steps of 1/(127 C)) rather than by a second mean: the NPU's mean shares its input's
parameters, and the range of ``d * d`` is set by its largest element, about ten times the
largest variance (0..107 against 0..9 in the ViT below), which left the variance a few
quantization steps of resolution. ``variance="mean"`` keeps the mean (for a LayerNorm over
several dims it is always used).

Measured (``benchmarks/bench_vit.py``: a ViT of 2 blocks, dim 64, 2 heads, trained on
Fashion-MNIST to 88 %; calibrated on 64 test images, evaluated on 200; GELU left on the CPU in
every row, its lowering being another op family's; logits SQNR of the int8 model against float):

    LayerNorm                          SQNR       top-1 agreement   partitions   NPU MACs
    (a) whole, in float on the CPU     34.31 dB   99.0 %            8            100 %
    (b) decomposed, variance by MEAN   22.40 dB   98.0 %            3            100 %
    (b) decomposed, variance by FC     32.01 dB   99.0 %            3            100 %

(b) with the FC variance is the default: 2.3 dB below a float LayerNorm, and five partitions
fewer (every LayerNorm on the CPU cuts the NPU graph twice; without GELU on the CPU, 1 partition
against 6). ``NeutronQuantizer(spec, decompose_layer_norm=False)`` keeps LayerNorm whole, in
float on the CPU.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.fx import GraphModule, Node

from neutronq.fx import arg, register_constant

__all__ = ["DecomposeLayerNormPass"]

aten = torch.ops.aten


def _fake(fn, *args):
    """``fn(*args)`` on the nodes' example values (their fake mode when they have one)."""
    vals = [a.meta["val"] if isinstance(a, Node) else a for a in args]
    mode = next((getattr(v, "fake_mode", None) for v in vals if getattr(v, "fake_mode", None) is not None), None)
    if mode is None:
        return fn(*vals)
    with mode:
        return fn(*vals)


class DecomposeLayerNormPass:
    """Rewrites every ``aten.layer_norm.default`` (see the module doc). ``variance``: "linear"
    (the default) or "mean", how the mean of ``d * d`` is taken."""

    def __init__(self, variance: str = "linear"):
        if variance not in ("linear", "mean"):
            raise ValueError(f"variance must be 'linear' or 'mean'; got {variance!r}")
        self.variance = variance

    def __call__(self, model: GraphModule) -> GraphModule:
        norms = [n for n in model.graph.nodes if n.op == "call_function" and n.target is aten.layer_norm.default]
        for ln in norms:
            self._rewrite(model, ln)
        if norms:
            model.graph.lint()
            model.recompile()
        return model

    def _rewrite(self, model: GraphModule, ln: Node) -> None:
        graph = model.graph
        x = ln.args[0]
        normalized_shape = list(arg(ln, 1, "normalized_shape"))
        weight: Optional[Node] = arg(ln, 2, "weight")
        bias: Optional[Node] = arg(ln, 3, "bias")
        eps = float(arg(ln, 4, "eps", 1e-5))
        dims = list(range(-len(normalized_shape), 0))
        meta = {k: ln.meta[k] for k in ("nn_module_stack", "stack_trace", "source_fn_stack") if k in ln.meta}

        def call(target, *args):
            node = graph.call_function(target, args)
            node.meta.update(meta)
            node.meta["val"] = _fake(target, *args)
            return node

        eps_node = register_constant(model, f"{ln.name}_eps", torch.tensor(eps, dtype=torch.float32), before=ln)
        with graph.inserting_before(ln):
            mean = call(aten.mean.dim, x, dims, True)
            d = call(aten.sub.Tensor, x, mean)
            sq = call(aten.mul.Tensor, d, d)
            if self.variance == "linear" and len(normalized_shape) == 1:
                ones = register_constant(model, f"{ln.name}_mean_weight",
                                         torch.full((1, int(normalized_shape[0])), 1.0 / int(normalized_shape[0])),
                                         before=ln)
                var = call(aten.linear.default, sq, ones)
            else:
                var = call(aten.mean.dim, sq, dims, True)
            r = call(aten.rsqrt.default, call(aten.add.Tensor, var, eps_node))
            y = call(aten.mul.Tensor, d, r)
            if weight is not None:
                y = call(aten.mul.Tensor, y, weight)
            if bias is not None:
                y = call(aten.add.Tensor, y, bias)
        ln.replace_all_uses_with(y)
        graph.erase_node(ln)
