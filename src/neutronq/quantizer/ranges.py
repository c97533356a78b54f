"""What calibration saw that int8 cannot represent, said after calibration (``check_ranges``):

  * activations that overflow float32 (inf, values beyond 2^60 whose squares overflow in the
    observers' range search, or a range whose int8 scale is not finite): the int8 model gives
    zeros or garbage there;
  * activations whose whole range lies below the scale floor (2^-12, ``HISTOGRAM_EPS``): they
    quantize to a handful of levels around the zero point, often all to the zero point.

Each is one ``RangeWarning`` naming the first layers concerned.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch.fx import GraphModule, Node

from neutronq.backend.scheme import HISTOGRAM_EPS
from neutronq.fx import layer_name

__all__ = ["RangeWarning", "RangeProblem", "range_problems", "check_ranges", "first_overflow"]

# A range spanning fewer int8 steps than this, at the scale floor, is reported.
_FEW_STEPS = 4
# Values beyond this overflow float32 when squared (2^127): the observers' range search and any
# error measure break on them, and float32 arithmetic around them is near its end.
_HUGE = 2.0**60


class RangeWarning(UserWarning):
    """Calibrated values that int8 cannot represent: overflow, or a range below the scale floor."""


class RangeProblem:
    def __init__(self, kind: str, layer: str, low: float, high: float, scale: Optional[float]):
        self.kind, self.layer, self.low, self.high, self.scale = kind, layer, low, high, scale


def _observer(module) -> Optional[torch.nn.Module]:
    """The range observer of an activation observer / fake-quantize module, else None."""
    obs = getattr(module, "activation_post_process", module)
    if not hasattr(obs, "min_val") or not hasattr(obs, "max_val") or not hasattr(obs, "calculate_qparams"):
        return None
    return obs


def _describe(node: Node) -> str:
    if node.op == "placeholder":
        return f"{node.name} (the model's input)"
    return layer_name(node)


def range_problems(prepared: GraphModule) -> list[RangeProblem]:
    """The activation ranges calibration set that int8 cannot represent, in graph order."""
    modules = dict(prepared.named_modules())
    found = []
    for node in prepared.graph.nodes:
        if node.op != "call_module" or not node.args or not isinstance(node.args[0], Node):
            continue
        observed = node.args[0]
        if observed.op == "get_attr":  # weights and biases: constants, checked by the quantizer
            continue
        obs = _observer(modules.get(node.target))
        if obs is None or obs.min_val.numel() != 1 or obs.max_val.numel() != 1:
            continue
        low, high = float(obs.min_val), float(obs.max_val)
        if low > high:  # never observed (min +inf, max -inf)
            continue
        if not (math.isfinite(low) and math.isfinite(high)) or max(abs(low), abs(high)) > _HUGE:
            found.append(RangeProblem("overflow", _describe(observed), low, high, None))
            continue
        try:
            scale = float(obs.calculate_qparams()[0].reshape(-1)[0])
        except Exception:  # an observer that cannot compute its parameters: the range is unusable
            scale = math.nan
        if not math.isfinite(scale) or scale <= 0:
            found.append(RangeProblem("overflow", _describe(observed), low, high, scale))
            continue
        span = max(high, 0.0) - min(low, 0.0)
        if span > 0 and scale <= HISTOGRAM_EPS * 1.001 and span / scale < _FEW_STEPS:
            found.append(RangeProblem("floor", _describe(observed), low, high, scale))
    return found


class _WithoutObservers(torch.fx.Interpreter):
    """Runs a prepared graph with its observers passed through, each node's output checked."""

    def __init__(self, module: GraphModule):
        super().__init__(module)
        self.first: Optional[str] = None

    def call_module(self, target, args, kwargs):
        if _observer(self.fetch_attr(target)) is not None:
            return args[0]
        return super().call_module(target, args, kwargs)

    def run_node(self, n):
        out = super().run_node(n)
        if self.first is None and n.op in ("call_function", "placeholder"):
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() and \
                        not (torch.isfinite(t).all() and t.abs().max() <= _HUGE):
                    self.first = _describe(n)
                    break
        return out


def first_overflow(prepared: GraphModule, inputs: tuple) -> Optional[str]:
    """The first layer whose float output overflows (inf / NaN, or beyond 2^60) on ``inputs``."""
    runner = _WithoutObservers(prepared)
    try:
        with torch.no_grad():
            runner.run(*inputs)
    except Exception:  # the run itself fails further on: what overflowed before is the answer
        pass
    return runner.first


def check_ranges(prepared: GraphModule) -> list[RangeProblem]:
    """``range_problems`` said as warnings (one per kind); returns them."""
    problems = range_problems(prepared)
    overflow = [p for p in problems if p.kind == "overflow"]
    floor = [p for p in problems if p.kind == "floor"]
    if overflow:
        first = overflow[0]
        names = ", ".join(p.layer for p in overflow[:3]) + (f" and {len(overflow) - 3} more" if len(overflow) > 3 else "")
        warnings.warn(
            f"calibration values overflow what int8 (with a float32 scale) can represent at {names}: "
            f"{first.layer} saw [{first.low:.3g}, {first.high:.3g}]; the int8 model's outputs there are "
            "wrong (zeros). Scale the inputs into a normal range (e.g. [0, 1] or [-1, 1]) as the model "
            "expects, or check the model for values growing without bound.", RangeWarning, stacklevel=2)
    if floor:
        first = floor[0]
        names = ", ".join(p.layer for p in floor[:3]) + (f" and {len(floor) - 3} more" if len(floor) > 3 else "")
        warnings.warn(
            f"the values at {names} lie below int8's smallest step: {first.layer} spans only "
            f"[{first.low:.3g}, {first.high:.3g}] with the minimum scale {first.scale:.3g} (2^-12), so it "
            f"quantizes to at most {_FEW_STEPS} levels around its zero point (often all to the zero point). "
            "Scale the inputs up to the range the model expects.", RangeWarning, stacklevel=2)
    return problems
