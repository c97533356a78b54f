"""Python scalars of element-wise arithmetic become constant tensors, so they can be quantized.

``torch.export`` records ``x + 1.0``, ``0.5 * x``, ``x - 0.5``, ``x / 6`` as
``aten.add/mul/sub/div.Tensor(x, <python float>)`` and ``1 - x`` as ``aten.rsub.Scalar(x, 1)``:
the scalar is a plain argument, no node, so no observer can see it, and at the edge dialect it
becomes an unquantized float constant that keeps the op off the NPU. This pass rewrites, before
annotation:

  * ``add`` / ``sub`` / ``mul`` (``.Tensor``, ``.Scalar``, in-place forms) with a number operand
    -> the same op on a ``get_attr`` constant of shape ``[1] * x.dim()`` (``alpha`` folded into
    the constant of ``add`` / ``sub``);
  * ``rsub.Scalar(x, c, alpha)`` (``c - alpha * x``) -> ``sub.Tensor(const c, x, alpha)``;
    ``rsub.Tensor(x, y, alpha)`` -> ``sub.Tensor(y, x, alpha)``;
  * ``div`` by a number or by a constant tensor without zeros -> ``mul`` by its reciprocal
    (TFLite's int8 DIV is defective in LiteRT's reference kernels for small numerators and
    large divisors, and NXP's NPU runs division only by a static divisor, as a multiplication).
    Division by an activation is left as it is.

The quantizer's rules then quantize the constant like a weight (int8 symmetric, its own
parameters: a scalar c is held as 127 with scale |c| / 127, c itself to float32 precision).
"""

from __future__ import annotations

import numbers
from typing import Optional

import torch
from torch.fx import GraphModule, Node

from neutronq.fx import get_attr_value, is_float_tensor, register_constant

__all__ = ["ScalarsToConstantsPass"]

aten = torch.ops.aten

# op -> (the .Tensor op it becomes, in place or not)
_ADD_SUB_MUL = {
    aten.add.Tensor: aten.add.Tensor,
    aten.add.Scalar: aten.add.Tensor,
    aten.add_.Tensor: aten.add_.Tensor,
    aten.add_.Scalar: aten.add_.Tensor,
    aten.sub.Tensor: aten.sub.Tensor,
    aten.sub.Scalar: aten.sub.Tensor,
    aten.sub_.Tensor: aten.sub_.Tensor,
    aten.sub_.Scalar: aten.sub_.Tensor,
    aten.mul.Tensor: aten.mul.Tensor,
    aten.mul.Scalar: aten.mul.Tensor,
    aten.mul_.Tensor: aten.mul_.Tensor,
    aten.mul_.Scalar: aten.mul_.Tensor,
}
_WITH_ALPHA = {aten.add.Tensor, aten.add_.Tensor, aten.sub.Tensor, aten.sub_.Tensor}
_DIV = {
    aten.div.Tensor: aten.mul.Tensor,
    aten.div.Scalar: aten.mul.Tensor,
    aten.div_.Tensor: aten.mul_.Tensor,
    aten.div_.Scalar: aten.mul_.Tensor,
}
_RSUB = (aten.rsub.Scalar, aten.rsub.Tensor)


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _float_input(node: Node) -> Optional[Node]:
    x = node.args[0] if node.args else None
    return x if isinstance(x, Node) and is_float_tensor(x) else None


class ScalarsToConstantsPass:
    """Rewrites the scalar operands of add / sub / mul / div / rsub into constants (module doc)."""

    def __call__(self, model: GraphModule) -> GraphModule:
        changed = False
        for node in list(model.graph.nodes):
            if node.op != "call_function":
                continue
            if node.target in _ADD_SUB_MUL:
                changed |= self._scalar_operand(model, node)
            elif node.target in _DIV:
                changed |= self._division(model, node)
            elif node.target in _RSUB:
                changed |= self._rsub(model, node)
        if changed:
            model.graph.lint()
            model.recompile()
        return model

    # --- rewrites ---------------------------------------------------------------------------
    @staticmethod
    def _constant(model: GraphModule, like: Node, value, before: Node, name: str) -> Node:
        """A ``get_attr`` of ``value`` (a number: shape ``[1] * like.dim()``) in ``like``'s dtype."""
        val = like.meta["val"]
        if isinstance(value, torch.Tensor):
            tensor = value.detach().to(val.dtype)
        else:
            tensor = torch.full((1,) * val.dim(), float(value), dtype=val.dtype)
        return register_constant(model, name, tensor, before)

    def _scalar_operand(self, model: GraphModule, node: Node) -> bool:
        x = _float_input(node)
        other = node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
        if x is None or not _number(other):
            return False
        target = _ADD_SUB_MUL[node.target]
        alpha = node.kwargs.get("alpha", node.args[2] if len(node.args) > 2 else 1)
        if not _number(alpha):
            return False
        value = float(other) * float(alpha) if target in _WITH_ALPHA else float(other)
        const = self._constant(model, x, value, node, f"{node.name}_scalar")
        node.target = target
        node.args = (x, const)
        node.kwargs = {}
        return True

    def _division(self, model: GraphModule, node: Node) -> bool:
        x = _float_input(node)
        divisor = node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
        if x is None or node.kwargs.get("rounding_mode") is not None:
            return False
        if _number(divisor):
            if float(divisor) == 0.0:
                return False
            reciprocal = 1.0 / float(divisor)
        else:
            value = get_attr_value(model, divisor)
            if value is None or not value.is_floating_point() or bool((value == 0).any()):
                return False  # division by an activation (or by zero) stays a division
            reciprocal = 1.0 / value.detach()
        const = self._constant(model, x, reciprocal, node, f"{node.name}_reciprocal")
        node.target = _DIV[node.target]
        node.args = (x, const)
        node.kwargs = {}
        return True

    def _rsub(self, model: GraphModule, node: Node) -> bool:
        x = _float_input(node)
        other = node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
        alpha = node.kwargs.get("alpha", node.args[2] if len(node.args) > 2 else 1)
        if x is None or not _number(alpha):
            return False
        if _number(other):
            other = self._constant(model, x, float(other), node, f"{node.name}_scalar")
        elif not (isinstance(other, Node) and is_float_tensor(other)):
            return False
        node.target = aten.sub.Tensor
        node.args = (other, x)
        node.kwargs = {} if float(alpha) == 1.0 else {"alpha": alpha}
        return True
