"""RelaxBatchGuardPass: .module()'s shape guard leaves the batch free unless the graph needs it."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from neutronq.aten_passes.relax_batch_guard import BatchGuard, BatchSizeError, RelaxBatchGuardPass


class Free(nn.Module):
    def forward(self, x, y):
        return torch.flatten(x, 1) @ y.t()


class Viewed(nn.Module):
    """``x.view(x.size(0), -1)``: the static export records ``view(x, [2, 12])``."""

    def forward(self, x, y):
        return x.view(x.size(0), -1) @ y.t()


class Baked(nn.Module):
    """The batch merged into another dimension: no run-time size can free it."""

    def forward(self, x, y):
        return (x.reshape(x.size(0) * 3, 4) @ y[:, :4].t()).reshape(x.size(0), 15)


def _module(model, batch=2, strict=False, **kw):
    args = (torch.randn(batch, 3, 4), torch.randn(5, 12))
    return torch.export.export(model, args, strict=strict, **kw).module()


def test_view_of_the_batch_gets_its_size_at_run_time(strict):
    gm = RelaxBatchGuardPass()(_module(Viewed(), strict=strict))
    assert gm._guards_fn.batch_size is None
    x, y = torch.randn(7, 3, 4), torch.randn(5, 12)
    torch.testing.assert_close(gm(x, y), Viewed()(x, y))
    assert [n for n in gm.graph.nodes if n.target is torch.ops.aten.sym_size.int]


def test_batch_free_graph_runs_with_any_batch(strict):
    gm = RelaxBatchGuardPass()(_module(Free(), strict=strict))
    assert isinstance(gm._guards_fn, BatchGuard) and gm._guards_fn.batch_size is None
    assert gm(torch.randn(7, 3, 4), torch.randn(5, 12)).shape == (7, 5)
    with pytest.raises(ValueError, match="exported for shape"):
        gm(torch.randn(7, 3, 5), torch.randn(5, 12))
    with pytest.raises(ValueError, match=r"exported for shape \[5, 12\]"):
        gm(torch.randn(7, 3, 4), torch.randn(6, 12))  # not a batched input: its shape is fixed


def test_batch_dependent_graph_keeps_its_batch_and_says_why(strict):
    gm = RelaxBatchGuardPass()(_module(Baked(), strict=strict))
    assert gm._guards_fn.batch_size == 2
    gm(torch.randn(2, 3, 4), torch.randn(5, 12))
    with pytest.raises(BatchSizeError, match="dynamic batch dimension") as err:
        gm(torch.randn(3, 3, 4), torch.randn(5, 12))
    assert "exported with batch size 2" in str(err.value)


def test_dynamic_export_is_left_alone():
    batch = torch.export.Dim("batch")
    gm = _module(Free(), batch=3, dynamic_shapes=({0: batch}, None))
    guard = gm._guards_fn
    assert RelaxBatchGuardPass()(gm)._guards_fn is guard
