"""Helpers for the emulation tests: one-op int8 TFLite models and LiteRT's reference run of them."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pytest
import torch
from pipelines import payloads, run_lowered

import neutronq
from neutronq.lowering.payload import run_payload
from neutronq.lowering.tflite_builder import QParams, TFLiteBuilder, tfl
from neutronq.runtime.emulate import emulate_payload

# int8 versions LiteRT's reference resolver accepts (ops the lowering does not emit)
VERSIONS = {"SUB": 2, "MAXIMUM": 2, "MINIMUM": 2, "LEAKY_RELU": 2, "HARD_SWISH": 1, "SQUARED_DIFFERENCE": 2,
            "REDUCE_MAX": 2, "REDUCE_MIN": 2, "SUM": 1, "SLICE": 2, "PADV2": 2, "SQUEEZE": 1,
            "EXPAND_DIMS": 1, "RELU_0_TO_1": 1, "PRELU": 1, "EXP": 2, "LOG": 1, "RSQRT": 2, "NEG": 1,
            "GELU": 1, "TRANSPOSE_CONV": 3, "BATCH_MATMUL": 2, "RESIZE_BILINEAR": 2,
            "RESIZE_NEAREST_NEIGHBOR": 2, "DEPTH_TO_SPACE": 1, "SPACE_TO_DEPTH": 2, "ELU": 2,
            "SQRT": 1, "SQUARE": 1, "DIV": 1, "FULLY_CONNECTED": 4, "MEAN": 2}


class OneOp:
    """Build a model with ``TFLiteBuilder``: activations are int8 per tensor unless given."""

    def __init__(self):
        self.b = TFLiteBuilder("emulate-test")

    def act(self, shape, scale: float, zp: int, name: str = "", dtype=np.int8) -> int:
        return self.b.tensor(shape, dtype, QParams.per_tensor(scale, zp), name)

    def const(self, data: np.ndarray, qparams: Optional[QParams] = None, name: str = "") -> int:
        data = np.asarray(data)
        return self.b.tensor(data.shape, data.dtype, qparams, name, data)

    def op(self, name: str, inputs: Sequence[int], outputs: Sequence[int], options=None,
           options_type: Optional[str] = None) -> None:
        self.b.op(name, inputs, outputs, options, options_type)

    def finish(self, inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
        self.b.inputs = list(inputs)
        self.b.outputs = list(outputs)
        for oc in self.b.opcodes:
            name = next(k for k, v in vars(tfl.BuiltinOperator).items() if v == oc.builtinCode)
            if name in VERSIONS:
                oc.version = VERSIONS[name]
        return self.b.finish()


def run_litert(tflite: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """LiteRT's reference kernels on one model-shaped input set (TFLite layout)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    for d, x in zip(interp.get_input_details(), inputs):
        interp.set_tensor(d["index"], np.ascontiguousarray(x))
    interp.invoke()
    return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]


class LiteRT:
    """One interpreter, many runs (``run_litert`` allocates each time)."""

    def __init__(self, tflite: bytes):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.interp = Interpreter(model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        self.interp.allocate_tensors()

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        for d, x in zip(self.interp.get_input_details(), inputs):
            self.interp.set_tensor(d["index"], np.ascontiguousarray(x))
        self.interp.invoke()
        return [self.interp.get_tensor(d["index"]).copy() for d in self.interp.get_output_details()]


def random_int8(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(-128, 128, size=shape, dtype=np.int64).astype(np.int8)


def emulate_and_compare(payload, input_sets: list[list[np.ndarray]]) -> None:
    """LiteRT per input set vs the emulation of all sets stacked on dim 0 and of each alone."""
    module = emulate_payload(payload)
    ref = [run_payload(payload, s) for s in input_sets]
    batch = [torch.from_numpy(np.concatenate([s[i] for s in input_sets])) for i in range(len(input_sets[0]))]
    got = module(*batch)
    got = got if isinstance(got, tuple) else (got,)
    for j, g in enumerate(got):
        want = np.concatenate([r[j].reshape(1) if r[j].ndim == 0 else r[j] for r in ref])  # a scalar: one per set
        assert g.dtype == torch.int8 and g.shape == want.shape
        diff = int((g.numpy() != want).sum())
        assert diff == 0, f"output {j}: {diff} of {want.size} elements differ from LiteRT"
    for k, s in enumerate(input_sets):  # a batch equals its samples
        single = module(*[torch.from_numpy(x) for x in s])
        single = single if isinstance(single, tuple) else (single,)
        for j, g in enumerate(single):
            rows = g.shape[0]
            assert torch.equal(g, got[j][k * rows:(k + 1) * rows])


# ----------------------------------------------------------------------------------------------
# a lowered program against LiteRT (every per-op case: tests/lowering/test_ops.py)
# ----------------------------------------------------------------------------------------------
def _float_inputs(calibration, count: int, seed: int = 1):
    """``count`` samples of each input (stacked on dim 0), uniform within its calibrated [min, max]
    and a little beyond (saturation)."""
    g = torch.Generator().manual_seed(seed)
    stacked = [torch.stack([c[i] for c in calibration]) for i in range(len(calibration[0]))]
    out = []
    for s in stacked:
        lo, hi = s.min(), s.max()
        span = hi - lo
        shape = (count * s.shape[1], *s.shape[2:]) if s.dim() > 1 else (count,)
        out.append(lo - 0.1 * span + 1.2 * span * torch.rand(shape, generator=g))
    return out


def check_emulated_identical_to_litert(name: str, edge, example: tuple, calibration: list) -> None:
    """An op case's lowered program emulated (``neutronq.emulate``) against LiteRT's host run:
    identical outputs, sample by sample and batched, and each payload on random int8 inputs.
    ``tests/lowering/test_ops.py`` calls it on every op case it lowers (one lowering per case)."""

    # the program: float in, float out, batch of 6 against the host run of each sample
    batch = example[0].shape[0] if example[0].dim() else 1
    rows = [t.shape[0] if t.dim() else 1 for t in example]  # each input's leading dim
    inputs = _float_inputs(calibration, 6)
    module = neutronq.emulate(edge)
    if module.batched:
        got = [torch.as_tensor(t) for t in torch.utils._pytree.tree_leaves(module(*inputs))]
    else:  # an input or output without the batch (a reduction over everything, a 2-D matmul): one by one
        with pytest.raises(ValueError, match="runs only at its exported shapes"):
            module(*inputs)
    for k in range(6):
        sample = tuple(t[k * r : (k + 1) * r] for t, r in zip(inputs, rows))
        want = run_lowered(edge, sample)
        if not module.batched:
            got = [torch.as_tensor(t) for t in torch.utils._pytree.tree_leaves(module(*sample))]
        assert len(want) == len(got)
        for j, (w, g) in enumerate(zip(want, got)):
            part = g[k * batch : (k + 1) * batch] if module.batched else g
            assert part.shape == w.shape and part.dtype == w.dtype, (j, part.shape, w.shape)
            assert torch.equal(part, w), f"{name} output {j} sample {k}: {int((part != w).sum())} elements differ"

    # each payload on random int8 inputs (beyond what the program's input quantize produces)
    rng = np.random.default_rng(0)
    for payload in payloads(edge):
        shapes = _payload_input_shapes(payload)
        sets = [[random_int8(rng, s) for s in shapes] for _ in range(4)]
        for batch_of_sets in ([sets] if module.batched else [[s] for s in sets]):
            emulate_and_compare(payload, batch_of_sets)


def _payload_input_shapes(payload) -> list[tuple]:
    """The payload's input shapes in PyTorch layout (as run_payload takes them)."""
    from ai_edge_litert.interpreter import Interpreter

    shapes = []
    for d, channels_last in zip(Interpreter(model_content=payload.tflite).get_input_details(),
                                payload.input_channels_last):
        s = tuple(int(v) for v in d["shape"])
        shapes.append((s[0], s[-1], *s[1:-1]) if channels_last and len(s) >= 3 else s)
    return shapes
