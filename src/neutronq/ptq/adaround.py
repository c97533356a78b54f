"""Adaptive rounding of weights (after Nagel et al. 2020, "Up or Down? Adaptive Rounding for
Post-Training Quantization"), on a calibrated ``prepare_pt2e`` model, before ``convert_pt2e``.

Rounding each weight to the nearest int8 step minimises the error of every weight alone, not
of the layer's output. For each conv2d / linear, in graph order, this step chooses per weight
whether to round down or up so that the layer's output on calibration data is closest to the
float layer's:

* the scale stays the weight observer's (per tensor or per channel); only the integer changes,
  by at most one step from ``floor(w / scale)``;
* the layer's input is the int8 model's as far as it is rounded: earlier layers with their
  chosen weights, every activation rounded by its observer (so each layer also offsets the error
  that reaches it, its input's rounding included); the target is the float layer on the float
  model's input (``sequential=False``: the float input rounded by its observer);
* the soft rounding ``h(V)`` (a rectified sigmoid) is optimised with Adam on the output MSE
  plus a regulariser that pushes ``h`` to 0 or 1, annealed as in the paper; then rounded.

The chosen weights are written back as exact multiples of the scale (``q * scale``), and the
observer keeps the range it saw, so ``convert_pt2e`` quantizes them to exactly ``q``. The float
weights are kept in ``prepared.meta["neutronq_float_weights"]`` for bias correction, which then
corrects the remaining mean error against them.

Cost: one float forward pass over the samples, then ``iterations`` small matrix products per
layer on ``rows`` sampled input patches (``benchmarks/bench_accuracy.py`` reports the time).
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch.fx import GraphModule, Node

from neutronq._progress import progress
from neutronq.devices import SAMPLING_DEVICE, model_device
from neutronq.fx import get_attr_value, set_attr_value
from neutronq.ptq.observed import FLOAT_WEIGHTS_META, ObserverRounding, fake_quantize
from neutronq.ptq.samples import as_input_tuple, batch_free, stack_samples

__all__ = ["adaround_weights"]

_WEIGHTED = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)
_ZETA, _GAMMA = 1.1, -0.1  # rectified sigmoid stretch
# Input elements kept per layer and sample, and used per optimisation step: wide depthwise convs
# (1152 channels x 25 taps per row) get fewer rows; each channel there has only 25 weights.
_RECORD_ELEMENTS = 2**21
_STEP_ELEMENTS = 2**22
# samples per recording pass (when the graph takes any batch size)
_RECORD_BATCH = 8


def _rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0.0, 1.0)


def _inverse_rectified_sigmoid(h: torch.Tensor) -> torch.Tensor:
    h = h.clamp(0.01, 0.99)
    return -torch.log((_ZETA - _GAMMA) / (h - _GAMMA) - 1.0)


def _observer(prepared: GraphModule, node) -> Optional[torch.nn.Module]:
    if isinstance(node, Node) and node.op == "call_module":
        return prepared.get_submodule(node.target)
    return None


def _weight_attr(node: Node) -> Optional[Node]:
    w = node.args[1]
    if isinstance(w, Node) and w.op == "call_module" and isinstance(w.args[0], Node) and w.args[0].op == "get_attr":
        return w.args[0]
    return None


def _layers(prepared: GraphModule) -> list[Node]:
    layers = []
    for n in prepared.graph.nodes:
        if n.op != "call_function" or n.target not in _WEIGHTED or _weight_attr(n) is None:
            continue
        if _observer(prepared, n.args[0]) is None:  # the input must be quantized (observed)
            continue
        layers.append(n)
    return layers


# --------------------------------------------------------------------------------------------
# layer inputs as rows of a matrix product: [rows, groups, K]
# --------------------------------------------------------------------------------------------
def _conv_args(node: Node):
    a = list(node.args) + [None] * (7 - len(node.args))
    stride, padding, dilation, groups = a[3] or [1, 1], a[4] or [0, 0], a[5] or [1, 1], a[6] or 1
    return stride, padding, dilation, int(groups)


def _patches(node: Node, x: torch.Tensor, weight_shape) -> torch.Tensor:
    """The input rows each output element is a dot product with: [N * positions, groups, K]."""
    if node.target is torch.ops.aten.linear.default:
        return x.reshape(-1, 1, x.shape[-1])
    stride, padding, dilation, groups = _conv_args(node)
    if isinstance(padding, str):
        raise ValueError("string padding")
    kh, kw = weight_shape[2], weight_shape[3]
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # [N, C*kh*kw, L]
    cols = cols.transpose(1, 2)  # [N, L, C*kh*kw], channel-major within a row
    return cols.reshape(-1, groups, (x.shape[1] // groups) * kh * kw)


class _Done(Exception):
    """Every layer asked for has its rows: the rest of the forward pass is not needed."""


class _Recorder(ObserverRounding):
    """Runs the prepared graph and keeps, per layer, a sample of its input rows.

    Without ``picks``: the float model (observers pass values through); the rows are picked at
    random and the picks kept. With ``picks``: activations are rounded by their observers
    (the int8 model so far, weights as they are in the graph) and the rows are taken at the
    given ``picks``; the pass stops once every layer asked for is recorded."""

    def __init__(self, gm: GraphModule, layers: list[Node], rows_per_sample: int, generator,
                 picks: Optional[dict] = None, qparams: Optional[dict] = None):
        super().__init__(gm, round_activations=picks is not None, qparams=qparams)
        self.by_input: dict[str, list[Node]] = {}
        for n in layers:
            self.by_input.setdefault(n.args[0].name, []).append(n)
        self.rows: dict[str, list[torch.Tensor]] = {n.name: [] for n in layers}
        self.rows_per_sample = rows_per_sample
        self.generator = generator
        self.picks = picks if picks is not None else {n.name: [] for n in layers}
        self.weights = {n.name: tuple(self.fetch_attr(_weight_attr(n).target).shape) for n in layers}
        self.sample = 0
        self.pending: set[str] = set()

    def record(self, samples: list[tuple]) -> None:
        """Runs ``samples`` (input tuples) as one batch (they must be able to run together, see
        ``batch_free``; one sample always can) and keeps each one's rows as if run alone."""
        self.pending = set(self.rows)
        self.sizes = [len(x[0]) for x in samples]
        try:
            self.run(*stack_samples(samples))
        except _Done:
            pass
        self.sample += len(samples)

    def run_node(self, n):
        out = super().run_node(n)
        for layer in self.by_input.get(n.name, ()):
            start = 0
            for k, size in enumerate(self.sizes):  # sample by sample, in order: the same draws
                x = out[start : start + size].detach().float()
                start += size
                rows = _patches(layer, x, self.weights[layer.name])
                if self.round_activations:
                    pick = self.picks[layer.name][self.sample + k]
                else:
                    keep = max(32, min(self.rows_per_sample, _RECORD_ELEMENTS // (rows.shape[1] * rows.shape[2])))
                    pick = torch.randperm(rows.shape[0], generator=self.generator, device=SAMPLING_DEVICE)[:keep]
                    self.picks[layer.name].append(pick)
                self.rows[layer.name].append(rows[pick].clone())
            self.pending.discard(layer.name)
        if self.round_activations and not self.pending:
            raise _Done
        return out


def _weight_scales(observer, weight: torch.Tensor) -> torch.Tensor:
    """The observer's scale broadcast to ``weight`` (per tensor, or per channel on ``ch_axis``)."""
    scale, _ = observer.calculate_qparams()
    scale = scale.to(torch.float32)
    if scale.numel() == 1:
        return torch.full_like(weight, float(scale))
    shape = [1] * weight.dim()
    shape[getattr(observer, "ch_axis", 0)] = -1
    return scale.reshape(shape).expand_as(weight)


def _optimise(w: torch.Tensor, scale: torch.Tensor, qmin: int, qmax: int, x_q: torch.Tensor,
              target: torch.Tensor, groups: int, iterations: int, batch: int, generator,
              reg_weight: float = 0.01) -> torch.Tensor:
    """The integer weights (same shape as ``w``) from AdaRound on rows ``x_q`` -> ``target``."""
    out_ch = w.shape[0]
    w_scaled = w / scale
    w_floor = torch.floor(w_scaled)
    v = _inverse_rectified_sigmoid(w_scaled - w_floor).requires_grad_(True)
    opt = torch.optim.Adam([v], lr=1e-2)
    s_g = scale.reshape(groups, out_ch // groups, -1)
    f_g = w_floor.reshape(groups, out_ch // groups, -1)
    warmup = int(0.2 * iterations)
    batch = max(64, min(batch, _STEP_ELEMENTS // (x_q.shape[1] * x_q.shape[2]), x_q.shape[0]))
    for it in range(iterations):
        pick = torch.randint(0, x_q.shape[0], (batch,), generator=generator, device=SAMPLING_DEVICE)
        h = _rectified_sigmoid(v).reshape(groups, out_ch // groups, -1)
        w_soft = torch.clamp(f_g + h, qmin, qmax) * s_g
        out = torch.einsum("rgk,gok->rgo", x_q[pick], w_soft)
        loss = (out - target[pick]).pow(2).sum(-1).mean()
        if it >= warmup:  # rounding regulariser, beta annealed 20 -> 2
            beta = 2 + 18 * (1 - (it - warmup) / max(iterations - warmup, 1))
            loss = loss + reg_weight * (1 - (2 * h - 1).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return torch.clamp(w_floor + (_rectified_sigmoid(v) >= 0.5).to(w.dtype), qmin, qmax)


def adaround_weights(prepared: GraphModule, calibration_inputs: Iterable, *, samples: int = 32,
                     rows_per_sample: int = 256, iterations: int = 250, batch: int = 1024,
                     sequential: bool = True, seed: int = 0) -> dict:
    """AdaRound every observed conv2d / linear weight of a calibrated ``prepare_pt2e`` model, in
    place (see the module docstring). ``samples`` calibration inputs are used (the first ones).

    ``sequential``: each layer's input is taken from the int8 model as far as it is rounded
    (earlier layers' chosen weights, every activation rounded by its observer), so each layer
    also offsets the error that reaches it; otherwise from the float model (one pass for all).

    Returns per layer (node name) the output MSE on the sampled rows with nearest rounding and
    with the chosen rounding, as a dict ``{name: (nearest, adaround)}``.
    """
    device = model_device(prepared)
    chosen = [as_input_tuple(s, device) for _, s in zip(range(samples), calibration_inputs)]
    if not chosen:
        raise ValueError("adaround_weights needs calibration inputs (got none).")
    layers = _layers(prepared)
    generator = torch.Generator(SAMPLING_DEVICE).manual_seed(seed)
    qparams: dict = {}  # the observers' parameters, computed once for every recorder below
    recorder = _Recorder(prepared, layers, rows_per_sample, generator, qparams=qparams)
    # samples run together where the graph allows it: the same rows, less interpreter time
    size = _RECORD_BATCH if batch_free(prepared, chosen) else 1
    batches = [chosen[i : i + size] for i in range(0, len(chosen), size)]
    with torch.no_grad():
        for group in progress(batches, desc="adaround: recording layer inputs", unit="batch"):
            recorder.record(group)
    float_weights = prepared.meta.setdefault(FLOAT_WEIGHTS_META, {})
    report = {}
    for node in progress(layers, desc="adaround: layers", unit="layer"):
        attr = _weight_attr(node)
        w_observer = prepared.get_submodule(node.args[1].target)
        x_observer = prepared.get_submodule(node.args[0].target)
        w = get_attr_value(prepared, attr).detach().float()
        float_weights.setdefault(attr.target, w.clone())
        w = float_weights[attr.target]
        rows = torch.cat(recorder.rows.pop(node.name))  # [R, groups, K]
        groups = rows.shape[1]
        w_g = w.reshape(groups, w.shape[0] // groups, -1)
        with torch.no_grad():
            target = torch.einsum("rgk,gok->rgo", rows, w_g)
            if sequential:
                quantized = _Recorder(prepared, [node], rows_per_sample, generator, qparams=qparams,
                                      picks={node.name: recorder.picks.pop(node.name)})
                for group in batches:
                    quantized.record(group)
                x_q = torch.cat(quantized.rows[node.name])
            else:
                x_q = fake_quantize(x_observer, rows, dtype=rows.dtype)
        scale = _weight_scales(w_observer, w)
        qmin, qmax = w_observer.quant_min, w_observer.quant_max
        q = _optimise(w, scale, qmin, qmax, x_q, target, groups, iterations, batch, generator)
        with torch.no_grad():
            nearest = torch.clamp(torch.round(w / scale), qmin, qmax) * scale
            chosen_w = q * scale

            def mse(weights):
                out = torch.einsum("rgk,gok->rgo", x_q, weights.reshape(w_g.shape))
                return float((out - target).pow(2).mean())

            before, after = mse(nearest), mse(chosen_w)
        if after > before:  # never worse than nearest rounding on the sampled rows
            chosen_w, after = nearest, before
        original = get_attr_value(prepared, attr)
        set_attr_value(prepared, attr, chosen_w.to(original.dtype), requires_grad=False)
        report[node.name] = (before, after)
    return report
