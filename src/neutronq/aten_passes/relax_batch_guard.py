"""Let a model exported with one batch size run with another, when nothing depends on it.

``torch.export.export(...).module()`` calls a ``_guards_fn`` that asserts the exported input
shapes, batch size included: a model exported with batch 1 (as the QAT guide does) then fails
in training with batch 5 (``Guard failed: x.size()[0] == 1``).

This pass runs the graph once more on fake tensors whose batch dimension is different. When that
runs and every output that had the batch as its first dimension has the new one, the guard is
replaced by ``BatchGuard``, which checks every input dimension but the batch.

The usual way a graph bakes the batch size in is ``x.view(x.size(0), -1)``, which a static export
records as ``view(x, [1, 16])``. Such a view or reshape keeps its input's batch as its first
dimension, so the pass gives it that size at run time instead (``view(x, [x.size(0), 16])``), the
same result at the exported batch size, and checks again. When something else bakes the batch
size in, ``BatchGuard`` keeps it fixed and its error says how to fix it: export with the
training batch size, or with a dynamic batch dimension.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx import GraphModule, Interpreter, Node

from neutronq.devices import model_device

__all__ = ["RelaxBatchGuardPass", "BatchGuard", "BatchSizeError", "free_batch_in_reshapes"]

_GUARD_TARGET = "_guards_fn"


class BatchSizeError(ValueError):
    """The model was exported with a static batch size that its graph depends on."""


class BatchGuard(torch.nn.Module):
    """Checks the inputs' shapes; the batch (dim 0) is free unless ``batch_size`` is given.

    ``shapes`` holds one entry per graph input: its exported shape, or None for a non-tensor.
    ``reason`` says what in the graph depends on the batch size (when ``batch_size`` is fixed).
    """

    # fx's eliminate_dead_code (torchao's move_exported_model_to_train/_eval and convert_pt2e
    # call it) keeps a call_module node only when its module says it is impure.
    _is_impure = True

    def __init__(self, shapes: Sequence[Optional[tuple]], batch_size: Optional[int] = None,
                 reason: str = ""):
        super().__init__()
        self.shapes = [None if s is None else tuple(s) for s in shapes]
        self.batch_size = batch_size
        # an input is batched when its dim 0 is the first input's (the others keep their shape)
        first = next((s[0] for s in self.shapes if s), None)
        self.batched = [bool(s) and s[0] == first for s in self.shapes]
        self.reason = reason

    def forward(self, *args):
        for index, (arg, shape) in enumerate(zip(args, self.shapes)):
            if shape is None or not isinstance(arg, torch.Tensor):
                continue
            got = tuple(arg.shape)
            if len(got) != len(shape) or got[1:] != shape[1:]:
                raise ValueError(
                    f"Input {index} has shape {list(got)}; the model was exported for shape "
                    f"{list(shape)} ({'batch size ' + str(self.batch_size) if self.batch_size else 'any batch size'} "
                    "in dim 0). Export it again with inputs of the shape you run it with."
                )
            if not self.batched[index] and got != shape:
                raise ValueError(
                    f"Input {index} has shape {list(got)}; the model was exported for shape "
                    f"{list(shape)}. Export it again with inputs of the shape you run it with."
                )
            if self.batch_size is not None and self.batched[index] and got[0] != self.batch_size:
                raise BatchSizeError(
                    f"Input {index} has batch size {got[0]}, but this model was exported with batch "
                    f"size {self.batch_size} and its graph depends on it ({self.reason}). Export it "
                    "with the batch size you train / run it with, or with a dynamic batch dimension: "
                    "torch.export.export(model, inputs, dynamic_shapes=({0: torch.export.Dim('batch')},))."
                )


def _guard_nodes(model: GraphModule) -> list[Node]:
    return [n for n in model.graph.nodes if n.op == "call_module" and n.target == _GUARD_TARGET]


def _placeholder_shapes(model: GraphModule) -> Optional[list[Optional[tuple]]]:
    shapes = []
    for n in model.graph.nodes:
        if n.op != "placeholder":
            continue
        val = n.meta.get("val")
        if not isinstance(val, torch.Tensor):
            shapes.append(None)
            continue
        if not all(isinstance(d, int) for d in val.shape):
            return None  # already exported with dynamic dimensions: its own guard is right
        shapes.append(tuple(val.shape))
    return shapes


def _static_shape(arg) -> Optional[tuple]:
    val = arg.meta.get("val") if isinstance(arg, Node) else None
    return tuple(val.shape) if isinstance(val, torch.Tensor) else None


def _output_shapes(model: GraphModule, inputs: list, skip: Node) -> list:
    class _Run(Interpreter):
        def run_node(self, n):
            if n is skip:
                return None
            return super().run_node(n)

    out = _Run(model).run(*inputs)
    leaves, _ = torch.utils._pytree.tree_flatten(out)
    return [tuple(t.shape) if isinstance(t, torch.Tensor) else None for t in leaves]


def batch_dependence(model: GraphModule, shapes: list, guard: Node) -> Optional[str]:
    """None when the graph runs unchanged with another batch size, else what goes wrong."""
    batch = next((s[0] for s in shapes if s), None)
    if batch is None:
        return "no batched tensor input"
    other = batch + 1
    device = model_device(model)  # the inputs where the weights are (a graph moved to a GPU)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:

        def fake(shape, b):
            if shape is None:
                return None
            size = (b,) + shape[1:] if shape and shape[0] == batch else shape
            return mode.from_tensor(torch.empty(size, device=device))

        placeholders = [n for n in model.graph.nodes if n.op == "placeholder"]
        dtypes = [n.meta["val"].dtype if s is not None else None for n, s in zip(placeholders, shapes)]

        def make(b):
            return [None if s is None else fake(s, b).to(d) for s, d in zip(shapes, dtypes)]

        fake_log = logging.getLogger("torch._subclasses.fake_tensor")
        level, fake_log.level = fake_log.level, logging.CRITICAL  # it logs the failure we expect
        try:
            before = _output_shapes(model, make(batch), guard)
            after = _output_shapes(model, make(other), guard)
        except Exception as e:  # noqa: BLE001 - any failure means the batch size is baked in
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return f"with batch size {other} the graph fails: {first.rstrip('.')}"
        finally:
            fake_log.setLevel(level)
    for b, a in zip(before, after):
        if b and b[0] == batch and (not a or a[0] != other):
            return f"an output of shape {list(b)} does not follow the batch size (got {list(a or ())})"
    return None


_RESHAPES = (torch.ops.aten.view.default, torch.ops.aten.reshape.default, torch.ops.aten._unsafe_view.default)


def free_batch_in_reshapes(model: GraphModule, batch: int) -> int:
    """Views / reshapes whose input and output both start with the exported batch get their
    first size from the input at run time (``aten.sym_size.int(x, 0)``); returns how many."""
    rewritten = 0
    for node in list(model.graph.nodes):
        if node.op != "call_function" or node.target not in _RESHAPES or len(node.args) < 2:
            continue
        source, size = node.args[0], list(node.args[1])
        shape = _static_shape(source)
        if not shape or shape[0] != batch or not size or size[0] != batch or not all(isinstance(d, int) for d in size):
            continue
        with model.graph.inserting_before(node):
            first = model.graph.call_function(torch.ops.aten.sym_size.int, (source, 0))
        first.meta["val"] = batch
        node.args = (source, [first, *size[1:]], *node.args[2:])
        rewritten += 1
    if rewritten:
        model.recompile()
    return rewritten


class RelaxBatchGuardPass:
    """Replaces ``.module()``'s shape guard by one that leaves the batch size free when it can."""

    def __call__(self, model: GraphModule) -> GraphModule:
        guards = _guard_nodes(model)
        if len(guards) != 1:
            return model
        guard = guards[0]
        shapes = _placeholder_shapes(model)
        if shapes is None or not any(shapes):
            return model
        batch = next(s[0] for s in shapes if s)
        reason = batch_dependence(model, shapes, guard)
        if reason is not None and free_batch_in_reshapes(model, batch):
            reason = batch_dependence(model, shapes, guard)
        guarded = [_static_shape(a) for a in guard.args]
        new_guard = BatchGuard(guarded, None if reason is None else batch, reason or "")
        setattr(model, _GUARD_TARGET, new_guard)
        model.recompile()
        return model
