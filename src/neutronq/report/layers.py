"""Per-layer fidelity: each layer's int8 output against the float model's, in execution order.

Uses torchao's numeric debugger: output loggers on the float model and on the ``convert_pt2e``
model, matched by the node each came from in the exported graph. The float reference has its
batch norms folded into the convs (as ``prepare_pt2e`` folds them), so a conv's float output and
its int8 output are the same quantity. The SQNR at a layer is cumulative (the error of all layers
before it, plus its own); ``drop_db`` is what the layer itself loses: the lowest SQNR among its
inputs minus its own SQNR.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Iterable, Optional

import torch
from torch.fx import GraphModule

from neutronq.fx import short_op_name
from neutronq.metrics import sqnr_db

__all__ = ["LayerFidelity", "per_layer_fidelity", "worst_layers"]

_SKIP_OPS = {"getitem", "_guards_fn", "sym_size", "_assert_tensor_metadata"}


@dataclass(frozen=True)
class LayerFidelity:
    index: int  # execution order in the exported graph
    node: str  # node name in the exported float graph
    op: str  # aten op, e.g. "conv2d"
    module: str  # the nn.Module it belongs to, e.g. "_blocks.3._depthwise_conv"
    shape: tuple[int, ...]
    sqnr_db: float  # float vs int8 at this layer's output (cumulative error)
    drop_db: float  # SQNR lost at this layer: min input SQNR - this SQNR (0 for the first layers)

    @property
    def added_noise(self) -> float:
        """The error this layer adds, as a fraction of the signal's power: its output's
        noise-to-signal ratio minus its inputs'. Unlike ``drop_db`` it compares across layers: a
        layer going from 140 to 90 dB adds almost nothing next to one going from 55 to 49 dB."""
        if not self.drop_db > 0 or math.isnan(self.sqnr_db):
            return 0.0
        after = 10.0 ** (-self.sqnr_db / 10.0) if math.isfinite(self.sqnr_db) else 0.0
        before_db = self.sqnr_db + self.drop_db
        before = 10.0 ** (-before_db / 10.0) if math.isfinite(before_db) else 0.0
        return max(after - before, 0.0)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["added_noise"] = self.added_noise
        return d


def worst_layers(layers: Iterable[LayerFidelity], top: int = 8) -> list[LayerFidelity]:
    """The layers that add the most error (``added_noise``), most first; only where something is
    lost (a layer whose SQNR drops from near-exact to very good adds almost nothing)."""
    lossy = [l for l in layers if l.added_noise > 0.0]
    return sorted(lossy, key=lambda l: -l.added_noise)[:top]


def _module_path(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return str(path).replace("L['self'].", "").replace("L__self___", "")


def per_layer_fidelity(float_module: GraphModule, quantized: GraphModule,
                       samples: Iterable[tuple]) -> list[LayerFidelity]:
    """SQNR of every logged layer over ``samples`` (input tuples), pooled over all samples.

    ``float_module`` is ``exported.module()`` of the program that ``quantized`` was made from.
    """
    from torchao.quantization.pt2e import (
        extract_results_from_loggers,
        prepare_for_propagation_comparison,
    )
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    reference = copy.deepcopy(float_module)
    _fuse_conv_bn_(reference)
    ref_logged = prepare_for_propagation_comparison(reference)
    int8_logged = prepare_for_propagation_comparison(quantized)
    with torch.no_grad():
        for inputs in samples:
            ref_logged(*inputs)
            int8_logged(*inputs)
    ref_results = extract_results_from_loggers(ref_logged)
    int8_results = extract_results_from_loggers(int8_logged)

    nodes = {n.name: n for n in reference.graph.nodes}
    order = {n.name: i for i, n in enumerate(reference.graph.nodes)}
    rows: dict[str, tuple] = {}
    for info, (ref_name, _, ref_stats) in ref_results.items():
        if info not in int8_results or ref_name not in nodes:
            continue
        node = nodes[ref_name]
        op = short_op_name(node.target) if node.op == "call_function" else node.op
        if op in _SKIP_OPS:
            continue
        int8_stats = int8_results[info][2]
        pairs = [(r, a) for r, a in zip(ref_stats, int8_stats)
                 if isinstance(r, torch.Tensor) and isinstance(a, torch.Tensor)
                 and r.shape == a.shape and r.is_floating_point()]
        if not pairs:
            continue
        ref = torch.cat([r.flatten() for r, _ in pairs])
        act = torch.cat([a.flatten().to(r.dtype) for r, a in pairs])
        rows[ref_name] = (node, op, sqnr_db(ref, act), tuple(pairs[0][0].shape))

    def input_sqnr(node) -> Optional[float]:
        """Lowest SQNR among the logged layers that feed ``node`` (through unlogged nodes too)."""
        seen, stack, found = set(), list(node.all_input_nodes), []
        while stack:
            n = stack.pop()
            if n.name in seen:
                continue
            seen.add(n.name)
            if n.name in rows:
                found.append(rows[n.name][2])
            else:
                stack.extend(n.all_input_nodes)
        return min(found) if found else None

    layers = []
    for name in sorted(rows, key=order.get):
        node, op, sqnr, shape = rows[name]
        before = input_sqnr(node)
        if before is None or math.isinf(before) and math.isinf(sqnr):
            drop = 0.0
        else:
            drop = before - sqnr if math.isfinite(before - sqnr) else (math.inf if math.isinf(before) else 0.0)
        layers.append(LayerFidelity(order[name], name, op, _module_path(node), shape, sqnr, drop))
    return layers
