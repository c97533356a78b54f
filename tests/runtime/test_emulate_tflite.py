"""The PyTorch emulation of LiteRT's int8 reference kernels (``neutronq.runtime.emulate``) against
LiteRT itself (``OpResolverType.BUILTIN_REF``): identical int8 outputs, every element.

* (the per-op lowering cases, ``tests/op_cases.py``, are in ``test_emulated_program.py``: their
  payloads here and their whole programs against ``run_on_host``);
* one-op TFLite models with random parameters (scales, zero points, geometry, fused
  activations, per-tensor and per-channel weights, multipliers above one and tiny ones): the
  binary element-wise ops on all 65,536 int8 pairs, the unary ones on all 256 values, both
  requantization paths of the convolutions;
* the rules where LiteRT differs from the obvious: FULLY_CONNECTED requantizes in double with
  one rounding, MUL computes its multiplier in float;
* EfficientNet-Lite0 (pretrained, per tensor and per channel; the session's shared lowering,
  ``tests/conftest.py``) on a few crops.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from emulate_helpers import LiteRT, OneOp, emulate_and_compare, random_int8

from neutronq.lowering.payload import quantize_inputs
from neutronq.lowering.tflite_builder import QParams, tfl
from neutronq.runtime.emulate import EmulationError, TFLiteModule, conv, requantize
from neutronq.runtime.emulate.fixedpoint import f32, mbqm, quantize_multiplier, round_half_away_tensor

# ----------------------------------------------------------------------------------------------
# one-op models, random parameters
# ----------------------------------------------------------------------------------------------
PAIRS = (np.repeat(np.arange(-128, 128, dtype=np.int8)[:, None], 256, 1)[None],
         np.repeat(np.arange(-128, 128, dtype=np.int8)[None, :], 256, 0)[None])
VALUES = np.arange(-128, 128, dtype=np.int8)[None]


def _scale(rng, lo=1e-3, hi=1.0) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _zp(rng) -> int:
    return int(rng.integers(-128, 128))


def _check_model(model: bytes, input_sets: list[list[np.ndarray]]) -> None:
    litert = LiteRT(model)
    ref = [litert(*s) for s in input_sets]
    module = TFLiteModule(model)
    got = module(*[torch.from_numpy(np.concatenate([s[i] for s in input_sets])) for i in range(len(input_sets[0]))])
    got = got if isinstance(got, tuple) else (got,)
    for j, g in enumerate(got):
        want = np.concatenate([r[j] for r in ref])
        assert g.shape == want.shape, (g.shape, want.shape)
        assert int((g.numpy() != want).sum()) == 0, f"{int((g.numpy() != want).sum())} of {want.size} differ"


BINARY = {"ADD": tfl.AddOptionsT, "SUB": tfl.SubOptionsT, "MUL": tfl.MulOptionsT, "MAXIMUM": None, "MINIMUM": None}


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_op_all_int8_pairs(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    for _ in range(8):
        m = OneOp()
        s1, s2 = _scale(rng), _scale(rng)
        so = max(s1, s2) * rng.uniform(0.6, 4) if name in ("ADD", "SUB") else _scale(rng)
        if name in ("MAXIMUM", "MINIMUM"):
            s2 = so = s1
        a, b = m.act((1, 256, 256), s1, _zp(rng)), m.act((1, 256, 256), s2, _zp(rng))
        o = m.act((1, 256, 256), so, _zp(rng))
        opts = BINARY[name]() if BINARY[name] else None
        if opts is not None:
            opts.fusedActivationFunction = int(rng.choice([0, 1, 2, 3]))
        m.op(name, [a, b], [o], opts)
        _check_model(m.finish([a, b], [o]), [list(PAIRS)])


def test_binary_broadcast_and_constant_operand():
    rng = np.random.default_rng(3)
    m = OneOp()
    a = m.act((1, 4, 5, 6), 0.05, 3)
    b = m.act((1, 1, 5, 1), 0.08, -7)
    c = m.const(random_int8(rng, (6,)), QParams.per_tensor(0.02, 1))
    t = m.act((1, 4, 5, 6), 0.1, -2)
    o = m.act((1, 4, 5, 6), 0.3, 5)
    m.op("ADD", [a, b], [t], tfl.AddOptionsT())
    m.op("MUL", [t, c], [o], tfl.MulOptionsT())
    _check_model(m.finish([a, b], [o]), [[random_int8(rng, (1, 4, 5, 6)), random_int8(rng, (1, 1, 5, 1))]
                                         for _ in range(3)])


UNARY = ["ABS", "QUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH"]


@pytest.mark.parametrize("name", UNARY)
def test_unary_op_all_int8_values(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    for _ in range(12):
        m = OneOp()
        si, so, zo = _scale(rng), _scale(rng), _zp(rng)
        if name == "LOGISTIC":
            so, zo = 1 / 256, -128
        if name == "TANH":
            so, zo = 1 / 128, 0
        if name in ("QUANTIZE", "ABS") and rng.random() < 0.3:
            so = si
        x, o = m.act((1, 256), si, _zp(rng)), m.act((1, 256), so, zo)
        m.op(name, [x], [o])
        _check_model(m.finish([x], [o]), [[VALUES]])


def _conv_model(rng, kind: str):
    m = OneOp()
    h, w, cin = int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.integers(1, 9))
    kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    dh, dw = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if rng.random() < 0.3 else (1, 1)
    if kind == "CONV_2D" and rng.random() < 0.05:
        cin, kh, kw = 1024, 1, 1  # |partial sums| may pass 2^24: float64 accumulation
    same = rng.random() < 0.5 or (kh - 1) * dh + 1 > h or (kw - 1) * dw + 1 > w
    oh, ow = ((-(-h // sh), -(-w // sw)) if same else
              ((h - (kh - 1) * dh - 1) // sh + 1, (w - (kw - 1) * dw - 1) // sw + 1))
    si = _scale(rng)
    if kind == "CONV_2D":
        divisors = [g for g in range(1, cin + 1) if cin % g == 0]
        groups = 1 if rng.random() < 0.85 else int(rng.choice(divisors))
        cout = int(rng.integers(1, 9)) * groups
        wshape, axis = (cout, kh, kw, cin // groups), 0
        opts = tfl.Conv2DOptionsT()
    else:
        cout = cin * int(rng.integers(1, 3))
        wshape, axis = (1, kh, kw, cout), 3
        opts = tfl.DepthwiseConv2DOptionsT()
        opts.depthMultiplier = cout // cin
    wdata = random_int8(rng, wshape)
    ws = [_scale(rng, 1e-4, 1e-1) for _ in range(cout if rng.random() < 0.5 else 1)]
    if len(ws) > 1 and rng.random() < 0.4:  # a dead channel: multiplier ~2^-20 (int64 path)
        ws[int(rng.integers(0, cout))] *= 1e-5
    wi = m.const(wdata, QParams(tuple(ws), (0,) * len(ws), axis))
    hi = 2 ** int(rng.integers(4, 24))
    bi = m.const(rng.integers(-hi, hi, size=cout).astype(np.int32), QParams(tuple(si * s for s in ws), (0,) * len(ws)))
    natural = si * float(np.median(ws)) * np.sqrt(kh * kw * cin) * 40
    so = natural * float(np.exp(rng.uniform(-3, 3) if rng.random() < 0.8 else rng.uniform(-12, 8)))
    xi, oi = m.act((1, h, w, cin), si, _zp(rng)), m.act((1, oh, ow, cout), so, _zp(rng))
    opts.padding = tfl.Padding.SAME if same else tfl.Padding.VALID
    opts.strideH, opts.strideW, opts.dilationHFactor, opts.dilationWFactor = sh, sw, dh, dw
    opts.fusedActivationFunction = int(rng.choice([0, 1, 2, 3]))
    m.op(kind, [xi, wi, bi], [oi], opts)
    return m.finish([xi], [oi]), (1, h, w, cin)


@pytest.mark.parametrize("path", ["f64", "i64", "float-conv", "small-blocks"])
@pytest.mark.parametrize("kind", ["CONV_2D", "DEPTHWISE_CONV_2D"])
def test_conv_random_geometry_and_parameters(kind, path, monkeypatch):
    """Both requantization paths; ungrouped convolutions through the int8 GEMM and, with
    ``float-conv``, through the float convolution (the path where ``_int_mm`` cannot run);
    ``small-blocks``: many GEMM / image blocks and requantization chunks per call."""
    monkeypatch.setattr(requantize, "FORCE_PATH", "i64" if path == "i64" else "f64")
    monkeypatch.setattr(conv, "USE_INT_MM", path != "float-conv")
    if path == "small-blocks":
        monkeypatch.setattr(conv, "BLOCK_ELEMENTS", 97)
        monkeypatch.setattr(requantize, "CHUNK_ELEMENTS", 53)
    rng = np.random.default_rng(11 if kind == "CONV_2D" else 12)
    for _ in range(30):
        model, shape = _conv_model(rng, kind)
        _check_model(model, [[random_int8(rng, shape)] for _ in range(3)])


def _fc_model(rng, rows, depth, units, per_channel):
    m = OneOp()
    si = _scale(rng)
    ws = [_scale(rng, 1e-4, 1e-1) for _ in range(units if per_channel else 1)]
    wi = m.const(random_int8(rng, (units, depth)), QParams(tuple(ws), (0,) * len(ws), 0))
    bi = m.const(rng.integers(-2**20, 2**20, size=units).astype(np.int32), QParams(tuple(si * s for s in ws), (0,) * len(ws)))
    so = si * float(np.median(ws)) * np.sqrt(depth) * 40 * float(np.exp(rng.uniform(-4, 4)))
    xi, oi = m.act((rows, depth), si, _zp(rng)), m.act((rows, units), so, _zp(rng))
    opts = tfl.FullyConnectedOptionsT()
    opts.fusedActivationFunction = int(rng.choice([0, 1, 2, 3]))
    m.op("FULLY_CONNECTED", [xi, wi, bi], [oi], opts)
    return m.finish([xi], [oi])


def test_pad_joins_the_convolution_it_feeds():
    """A PAD read only by a convolution is folded into the convolution's padding; a PAD with
    another reader is not. Both give LiteRT's values."""
    rng = np.random.default_rng(31)
    for shared in (False, True):
        m = OneOp()
        x = m.act((1, 7, 6, 3), 0.05, 9)
        p = m.act((1, 9, 9, 3), 0.05, 9)
        m.op("PAD", [x, m.const(np.array([[0, 0], [1, 1], [2, 1], [0, 0]], np.int32))], [p], tfl.PadOptionsT())
        w = m.const(random_int8(rng, (1, 3, 3, 3)), QParams.per_tensor(0.02, 0))
        b = m.const(rng.integers(-500, 500, 3).astype(np.int32), QParams.per_tensor(0.001, 0))
        o = m.act((1, 4, 4, 3), 0.04, -3)
        opts = tfl.DepthwiseConv2DOptionsT()
        opts.padding, opts.strideH, opts.strideW, opts.depthMultiplier = tfl.Padding.VALID, 2, 2, 1
        m.op("DEPTHWISE_CONV_2D", [p, w, b], [o], opts)
        outs = [o]
        if shared:
            r = m.act((1, 9, 9, 3), 0.05, 9)
            m.op("RELU", [p], [r])
            outs.append(r)
        model = m.finish([x], outs)
        module = TFLiteModule(model)
        assert sum(type(op).__name__ == "PadOp" for op in module.ops) == int(shared)
        _check_model(model, [[random_int8(rng, (1, 7, 6, 3))] for _ in range(3)])


def test_fully_connected_random():
    rng = np.random.default_rng(13)
    for _ in range(30):
        rows, depth, units = int(rng.integers(1, 4)), int(rng.choice([1, 7, 40, 2048])), int(rng.integers(1, 12))
        model = _fc_model(rng, rows, depth, units, rng.random() < 0.5)
        _check_model(model, [[random_int8(rng, (rows, depth))] for _ in range(3)])


def test_fully_connected_requantizes_in_double_with_one_rounding():
    """LiteRT >= 2.2's reference FULLY_CONNECTED computes ``round(double(acc) * s_in * s_w / s_out)``;
    ``MultiplyByQuantizedMultiplier``'s two roundings differ from it here and LiteRT follows the
    former (the emulation implements it)."""
    rng = np.random.default_rng(5)
    si, ws, so = 0.37, 0.021, 0.43
    m = OneOp()
    w = random_int8(rng, (64, 64))
    bias = rng.integers(-5000, 5000, 64).astype(np.int32)
    xi = m.act((256, 64), si, 7)
    wi = m.const(w, QParams.per_tensor(ws, 0))
    bi = m.const(bias, QParams.per_tensor(si * ws, 0))
    oi = m.act((256, 64), so, -3)
    m.op("FULLY_CONNECTED", [xi, wi, bi], [oi], tfl.FullyConnectedOptionsT())
    model = m.finish([xi], [oi])
    x = random_int8(rng, (256, 64))
    ref = LiteRT(model)(x)[0]
    acc = (torch.from_numpy(x.astype(np.int64)) - 7) @ torch.from_numpy(w.astype(np.int64)).T + torch.from_numpy(bias.astype(np.int64))
    eff = float(f32(si)) * float(f32(ws)) / float(f32(so))
    fixed_point = (mbqm(acc, *quantize_multiplier(eff)) - 3).clamp(-128, 127).numpy()
    double = (round_half_away_tensor(acc.double() * eff) - 3).clamp(-128, 127).numpy()
    assert not np.array_equal(fixed_point, double)
    assert np.array_equal(double, ref)
    assert np.array_equal(TFLiteModule(model)(torch.from_numpy(x)).numpy(), ref)


# (s1, s2, s_out) where the float and the double multiplier differ and change some outputs
MUL_FLOAT_SCALES = [(0.430780291557312, 0.011404708959162235, 0.27320268750190735),
                    (0.1415957659482956, 0.2598777413368225, 0.5935195684432983)]


@pytest.mark.parametrize("scales", MUL_FLOAT_SCALES)
def test_mul_multiplier_is_computed_in_float(scales):
    """mul.cc: ``double real_multiplier = s1 * s2 / s_out`` with float operands: the product and
    the quotient round to float. With these scales that changes the 31-bit multiplier and some
    outputs; LiteRT follows the float one (so does the emulation)."""
    s1, s2, so = (f32(s) for s in scales)
    m_float = quantize_multiplier(float(f32(f32(s1 * s2) / so)))
    m_double = quantize_multiplier(float(s1) * float(s2) / float(so))
    x, y = (torch.from_numpy(p.astype(np.int64)) for p in PAIRS)
    by_float = (mbqm(x * y, *m_float) + 1).clamp(-128, 127).numpy()
    by_double = (mbqm(x * y, *m_double) + 1).clamp(-128, 127).numpy()
    m = OneOp()
    a, b, o = m.act((1, 256, 256), float(s1), 0), m.act((1, 256, 256), float(s2), 0), m.act((1, 256, 256), float(so), 1)
    m.op("MUL", [a, b], [o], tfl.MulOptionsT())
    model = m.finish([a, b], [o])
    ref = LiteRT(model)(*PAIRS)[0]
    assert np.array_equal(by_float, ref) and not np.array_equal(by_double, ref)
    _check_model(model, [list(PAIRS)])


@pytest.mark.parametrize("kind", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
def test_pool_random(kind):
    rng = np.random.default_rng(17)
    for _ in range(25):
        m = OneOp()
        h, w, c = int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.integers(1, 6))
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        same = rng.random() < 0.5 or kh > h or kw > w
        oh, ow = (-(-h // sh), -(-w // sw)) if same else ((h - kh) // sh + 1, (w - kw) // sw + 1)
        s, z = _scale(rng), _zp(rng)
        x, o = m.act((1, h, w, c), s, z), m.act((1, oh, ow, c), s, z)
        opts = tfl.Pool2DOptionsT()
        opts.padding = tfl.Padding.SAME if same else tfl.Padding.VALID
        opts.strideH, opts.strideW, opts.filterHeight, opts.filterWidth = sh, sw, kh, kw
        opts.fusedActivationFunction = int(rng.choice([0, 1, 2, 3]))
        m.op(kind, [x], [o], opts)
        _check_model(m.finish([x], [o]), [[random_int8(rng, (1, h, w, c))] for _ in range(3)])


@pytest.mark.parametrize("kind", ["MEAN", "REDUCE_MAX", "REDUCE_MIN"])
def test_reduce_random(kind):
    rng = np.random.default_rng(19)
    for _ in range(25):
        m = OneOp()
        rank = int(rng.integers(2, 5))
        shape = [1] + [int(rng.integers(1, 9)) for _ in range(rank - 1)]
        if rng.random() < 0.2:
            shape[-1] = 300
        axes = sorted({int(a) for a in rng.choice(range(rank), size=int(rng.integers(1, rank)), replace=False)})
        keep = bool(rng.random() < 0.5)
        out = [1 if i in axes else d for i, d in enumerate(shape)] if keep else \
            [d for i, d in enumerate(shape) if i not in axes]
        si, zi = _scale(rng), _zp(rng)
        so, zo = (si * float(np.exp(rng.uniform(-2, 2))), _zp(rng)) if kind == "MEAN" else (si, zi)
        x, o = m.act(shape, si, zi), m.act(out, so, zo)
        opts = tfl.ReducerOptionsT()
        opts.keepDims = keep
        m.op(kind, [x, m.const(np.array(axes, np.int32))], [o], opts)
        _check_model(m.finish([x], [o]), [[random_int8(rng, shape)] for _ in range(3)])


def test_softmax_random():
    rng = np.random.default_rng(23)
    for _ in range(30):
        m = OneOp()
        rank = int(rng.integers(1, 5))
        shape = [int(rng.integers(1, 40))] if rank == 1 else [1] + [int(rng.integers(1, 12)) for _ in range(rank - 1)]
        x, o = m.act(shape, _scale(rng, 1e-3, 2.0), _zp(rng)), m.act(shape, 1 / 256, -128)
        opts = tfl.SoftmaxOptionsT()
        opts.beta = float(rng.choice([1.0, 0.5, 2.0]))
        m.op("SOFTMAX", [x], [o], opts)
        _check_model(m.finish([x], [o]), [[random_int8(rng, shape)] for _ in range(3)])


def test_data_movement_random():
    """TRANSPOSE (also of axis 0), STRIDED_SLICE (masks, negative strides, shrinking), PAD,
    CONCATENATION (also on axis 0), RESHAPE (also folding the leading dim): batched runs equal
    LiteRT's per-sample ones."""
    from neutronq.runtime.emulate.base import OpInfo
    from neutronq.runtime.emulate.movement import strided_slice_indices

    rng = np.random.default_rng(29)
    for _ in range(25):
        m = OneOp()
        rank = int(rng.integers(2, 6))
        shape = [int(rng.integers(1, 5)) for _ in range(rank)]
        perm = [int(p) for p in rng.permutation(rank)]
        s, z = _scale(rng), _zp(rng)
        x, o = m.act(shape, s, z), m.act([shape[p] for p in perm], s, z)
        m.op("TRANSPOSE", [x, m.const(np.array(perm, np.int32))], [o], tfl.TransposeOptionsT())
        _check_model(m.finish([x], [o]), [[random_int8(rng, shape)] for _ in range(3)])
    done = 0
    while done < 25:
        m = OneOp()
        rank = int(rng.integers(1, 5))
        shape = [int(rng.integers(1, 8)) for _ in range(rank)]
        begin = [int(rng.integers(-d, d + 1)) for d in shape]
        end = [int(rng.integers(-d - 1, d + 2)) for d in shape]
        strides = [int(rng.choice([1, 1, 2, 3, -1, -2])) for _ in shape]
        opts = tfl.StridedSliceOptionsT()
        opts.beginMask, opts.endMask = int(rng.integers(0, 2**rank)), int(rng.integers(0, 2**rank))
        opts.shrinkAxisMask = int(rng.integers(0, 2**rank)) if rng.random() < 0.3 else 0
        try:
            dims = strided_slice_indices(OpInfo(0, "STRIDED_SLICE", 1, opts, [], []), shape, begin, end, strides)
        except EmulationError:
            continue
        out = [len(r) for r, shrunk in dims if not shrunk]
        if not out or 0 in out:
            continue
        s, z = _scale(rng), _zp(rng)
        x, o = m.act(shape, s, z), m.act(out, s, z)
        m.op("STRIDED_SLICE", [x, m.const(np.array(begin, np.int32)), m.const(np.array(end, np.int32)),
                               m.const(np.array(strides, np.int32))], [o], opts)
        _check_model(m.finish([x], [o]), [[random_int8(rng, shape)] for _ in range(3)])
        done += 1
    for _ in range(15):
        m = OneOp()
        rank = int(rng.integers(1, 5))
        shape = [int(rng.integers(1, 5)) for _ in range(rank)]
        axis = int(rng.integers(-rank, rank))
        parts = []
        for _ in range(int(rng.integers(1, 4))):
            p = list(shape)
            p[axis] = int(rng.integers(1, 4))
            parts.append(p)
        out = list(shape)
        out[axis] = sum(p[axis] for p in parts)
        s, z = _scale(rng), _zp(rng)
        xs = [m.act(p, s, z) for p in parts]
        o = m.act(out, s, z)
        opts = tfl.ConcatenationOptionsT()
        opts.axis = axis
        m.op("CONCATENATION", xs, [o], opts)
        _check_model(m.finish(xs, [o]), [[random_int8(rng, p) for p in parts] for _ in range(3)])
    for _ in range(10):
        m = OneOp()
        rank = int(rng.integers(1, 5))
        shape = [int(rng.integers(1, 6)) for _ in range(rank)]
        pads = rng.integers(0, 3, size=(rank, 2)).astype(np.int32)
        s, z = _scale(rng), _zp(rng)
        x, o = m.act(shape, s, z), m.act([d + int(p.sum()) for d, p in zip(shape, pads)], s, z)
        m.op("PAD", [x, m.const(pads)], [o], tfl.PadOptionsT())
        _check_model(m.finish([x], [o]), [[random_int8(rng, shape)] for _ in range(3)])
    for out in ([24], [2, 12], [4, 3, 2], [1, 1, 24]):
        m = OneOp()
        x, o = m.act([1, 2, 3, 4], 0.1, 3), m.act(out, 0.1, 3)
        opts = tfl.ReshapeOptionsT()
        opts.newShape = out
        m.op("RESHAPE", [x, m.const(np.array(out, np.int32))], [o], opts)
        _check_model(m.finish([x], [o]), [[random_int8(rng, (1, 2, 3, 4))] for _ in range(3)])


# ----------------------------------------------------------------------------------------------
# ops beyond the lowering's (HARD_SWISH, LEAKY_RELU, PRELU, EXP, LOG, GELU, RSQRT, NEG, DIV,
# SQUARED_DIFFERENCE, SUM, RESIZE_*, TRANSPOSE_CONV, SLICE, PADV2, SQUEEZE, EXPAND_DIMS,
# DEPTH_TO_SPACE, SPACE_TO_DEPTH)
# ----------------------------------------------------------------------------------------------
def _unary_model(rng, name, opts=None, si=None, so=None, zi=None, zo=None):
    m = OneOp()
    x = m.act((1, 256), si or _scale(rng), _zp(rng) if zi is None else zi)
    o = m.act((1, 256), so or _scale(rng), _zp(rng) if zo is None else zo)
    m.op(name, [x], [o], opts)
    return m.finish([x], [o])


EXTRA_UNARY = {
    "EXP": lambda rng: _unary_model(rng, "EXP", si=_scale(rng, 1e-3, 0.05)),
    "LOG": lambda rng: _unary_model(rng, "LOG"),
    "GELU": lambda rng: _unary_model(rng, "GELU", _options(tfl.GeluOptionsT, approximate=bool(rng.random() < 0.5)),
                                     si=_scale(rng, 1e-3, 0.1)),
    "HARD_SWISH": lambda rng: _unary_model(rng, "HARD_SWISH", so=_scale(rng, 0.02, 1.0)),
    "LEAKY_RELU": lambda rng: _unary_model(rng, "LEAKY_RELU", _options(
        tfl.LeakyReluOptionsT, alpha=float(rng.choice([0.1, 0.2, 0.01, -0.3, 1.5])))),
    "RELU_0_TO_1": lambda rng: _unary_model(rng, "RELU_0_TO_1"),
    "NEG": lambda rng: _unary_model(rng, "NEG"),
}


def _options(cls, **fields):
    o = cls()
    for k, v in fields.items():
        setattr(o, k, v)
    return o


@pytest.mark.parametrize("name", list(EXTRA_UNARY))
def test_more_unary_ops_all_int8_values(name):
    rng = np.random.default_rng(sum(map(ord, name)) + 1)
    for _ in range(10):
        _check_model(EXTRA_UNARY[name](rng), [[VALUES]])


def test_hard_swish_with_a_tiny_output_multiplier():
    """An output multiplier below 2^-16 makes the reference's int16 RoundingDivideByPOT narrow its
    mask to -1: every output is the zero point plus the input's sign. LiteRT does that."""
    rng = np.random.default_rng(71)
    for zi, zo in ((-41, -79), (10, 3), (-128, 127)):
        _check_model(_unary_model(rng, "HARD_SWISH", si=0.0013387509, so=0.98300087, zi=zi, zo=zo), [[VALUES]])


def test_batch_matmul_random():
    rng = np.random.default_rng(73)
    for _ in range(15):
        m = OneOp()
        b, n, k, cols = int(rng.integers(1, 4)), int(rng.integers(1, 6)), int(rng.integers(1, 300)), int(rng.integers(1, 6))
        adj_x, adj_y = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        xs = (1, b, k, n) if adj_x else (1, b, n, k)
        ys = (1, b, cols, k) if adj_y else (1, b, k, cols)
        if rng.random() < 0.3:
            ys = ys[2:]
        s1, s2 = _scale(rng), _scale(rng)
        x = m.act(xs, s1, _zp(rng))
        const = rng.random() < 0.4
        y = m.const(random_int8(rng, ys), QParams.per_tensor(s2, _zp(rng))) if const else m.act(ys, s2, _zp(rng))
        o = m.act((1, b, n, cols), s1 * s2 * np.sqrt(k) * 40 * float(np.exp(rng.uniform(-2, 2))), _zp(rng))
        m.op("BATCH_MATMUL", [x, y], [o], _options(tfl.BatchMatMulOptionsT, adjX=adj_x, adjY=adj_y))
        inputs = [x] if const else [x, y]
        _check_model(m.finish(inputs, [o]),
                     [[random_int8(rng, xs)] + ([] if const else [random_int8(rng, ys)]) for _ in range(3)])


def test_rsqrt_all_valid_int8_values():
    """Inputs below the zero point make LiteRT fail the run; every other value is checked."""
    rng = np.random.default_rng(41)
    for _ in range(10):
        zi = _zp(rng)
        model = _unary_model(rng, "RSQRT", zi=zi, so=_scale(rng, 0.01, 1.0))
        values = np.resize(np.arange(zi, 128), 256).astype(np.int8)[None]
        _check_model(model, [[values]])


def test_sqrt_all_valid_int8_values():
    """SQRT truncates (LiteRT's int8 Sqrt); inputs below the zero point make LiteRT fail the run."""
    rng = np.random.default_rng(47)
    for _ in range(40):
        zi = _zp(rng)
        model = _unary_model(rng, "SQRT", zi=zi)
        values = np.resize(np.arange(zi, 128), 256).astype(np.int8)[None]
        _check_model(model, [[values]])


@pytest.mark.parametrize("name", ["SQUARED_DIFFERENCE", "DIV"])
def test_more_binary_ops_all_int8_pairs(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    for _ in range(8):
        m = OneOp()
        z2 = _zp(rng)
        a, b = m.act((1, 256, 256), _scale(rng), _zp(rng)), m.act((1, 256, 256), _scale(rng), z2)
        o = m.act((1, 256, 256), _scale(rng), _zp(rng))
        m.op(name, [a, b], [o], getattr(tfl, f"{''.join(w.title() for w in name.split('_'))}OptionsT")())
        y = PAIRS[1].copy()
        if name == "DIV":  # a divisor at its zero point is undefined in LiteRT
            y[y == z2] = np.int8(z2 + 1 if z2 < 127 else z2 - 1)
        _check_model(m.finish([a, b], [o]), [[PAIRS[0], y]])


def test_prelu_constant_and_dynamic_alpha():
    rng = np.random.default_rng(43)
    for k in range(10):
        m = OneOp()
        c = int(rng.integers(1, 6))
        x = m.act((1, 3, 4, c), _scale(rng), _zp(rng))
        if k % 2:
            alpha = m.const(random_int8(rng, (c,)), QParams.per_tensor(_scale(rng, 1e-3, 0.05), _zp(rng)))
            inputs = [x]
        else:
            alpha = m.act((1, 3, 4, c), _scale(rng, 1e-3, 0.05), _zp(rng))
            inputs = [x, alpha]
        o = m.act((1, 3, 4, c), _scale(rng), _zp(rng))
        m.op("PRELU", [x, alpha], [o])
        _check_model(m.finish(inputs, [o]), [[random_int8(rng, (1, 3, 4, c)) for _ in inputs] for _ in range(3)])


def test_sum_reads_int8_as_uint8_like_litert():
    """LiteRT's reference SUM for int8 sums the bytes as uint8 and stores a uint8 (reduce.cc
    passes ``GetTensorData<uint8_t>`` for every type): the emulation does the same."""
    rng = np.random.default_rng(47)
    for _ in range(15):
        m = OneOp()
        shape = [1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 8))]
        axes = sorted({int(a) for a in rng.choice([1, 2, 3], size=int(rng.integers(1, 4)), replace=False)})
        keep = bool(rng.random() < 0.5)
        out = [1 if i in axes else d for i, d in enumerate(shape)] if keep else \
            [d for i, d in enumerate(shape) if i not in axes]
        si = _scale(rng)
        x, o = m.act(shape, si, _zp(rng)), m.act(out, si * float(np.exp(rng.uniform(0, 3))), _zp(rng))
        m.op("SUM", [x, m.const(np.array(axes, np.int32))], [o], _options(tfl.ReducerOptionsT, keepDims=keep))
        _check_model(m.finish([x], [o]), [[random_int8(rng, shape)] for _ in range(3)])


@pytest.mark.parametrize("name", ["RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"])
def test_resize_random(name):
    rng = np.random.default_rng(53 if name == "RESIZE_BILINEAR" else 59)
    for k in range(15):
        m = OneOp()
        h, w, c = int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 4))
        oh, ow = int(rng.integers(1, 13)), int(rng.integers(1, 13))
        s, z = _scale(rng), _zp(rng)
        x, o = m.act((1, h, w, c), s, z), m.act((1, oh, ow, c), s, z)
        cls = tfl.ResizeBilinearOptionsT if name == "RESIZE_BILINEAR" else tfl.ResizeNearestNeighborOptionsT
        opts = _options(cls, alignCorners=k % 3 == 1, halfPixelCenters=k % 3 == 2)
        m.op(name, [x, m.const(np.array([oh, ow], np.int32))], [o], opts)
        _check_model(m.finish([x], [o]), [[random_int8(rng, (1, h, w, c))] for _ in range(3)])


def test_transpose_conv_random():
    rng = np.random.default_rng(61)
    for _ in range(20):
        m = OneOp()
        h, w, cin, cout = (int(rng.integers(1, 6)) for _ in range(4))
        kh, kw, sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
        same = rng.random() < 0.5
        oh, ow = (h * sh, w * sw) if same else ((h - 1) * sh + kh, (w - 1) * sw + kw)
        si = _scale(rng)
        ws = [_scale(rng, 1e-3, 0.1) for _ in range(cout if rng.random() < 0.5 else 1)]
        x = m.act((1, h, w, cin), si, _zp(rng))
        wt = m.const(random_int8(rng, (cout, kh, kw, cin)), QParams(tuple(ws), (0,) * len(ws), 0))
        inputs = [m.const(np.array([1, oh, ow, cout], np.int32)), wt, x]
        if rng.random() < 0.7:
            inputs.append(m.const(rng.integers(-2000, 2000, cout).astype(np.int32),
                                  QParams(tuple(si * s for s in ws), (0,) * len(ws), 0)))
        o = m.act((1, oh, ow, cout), si * float(np.median(ws)) * 30 * float(np.exp(rng.uniform(-2, 2))), _zp(rng))
        opts = _options(tfl.TransposeConvOptionsT, padding=tfl.Padding.SAME if same else tfl.Padding.VALID,
                        strideH=sh, strideW=sw, fusedActivationFunction=int(rng.choice([0, 1, 3])))
        m.op("TRANSPOSE_CONV", inputs, [o], opts)
        _check_model(m.finish([x], [o]), [[random_int8(rng, (1, h, w, cin))] for _ in range(3)])


def test_more_data_movement():
    rng = np.random.default_rng(67)
    for _ in range(10):  # SLICE
        m = OneOp()
        shape = [int(rng.integers(1, 6)) for _ in range(int(rng.integers(1, 5)))]
        begin = [int(rng.integers(0, d)) for d in shape]
        size = [int(rng.choice([-1, rng.integers(1, d - b + 1)])) for d, b in zip(shape, begin)]
        out = [d - b if n == -1 else n for d, b, n in zip(shape, begin, size)]
        s, z = _scale(rng), _zp(rng)
        x, o = m.act(shape, s, z), m.act(out, s, z)
        m.op("SLICE", [x, m.const(np.array(begin, np.int32)), m.const(np.array(size, np.int32))], [o],
             tfl.SliceOptionsT())
        _check_model(m.finish([x], [o]), [[random_int8(rng, shape)] for _ in range(3)])
    for _ in range(10):  # PADV2
        m = OneOp()
        shape = [int(rng.integers(1, 5)) for _ in range(int(rng.integers(1, 5)))]
        pads = rng.integers(0, 3, (len(shape), 2)).astype(np.int32)
        s, z = _scale(rng), _zp(rng)
        x, o = m.act(shape, s, z), m.act([d + int(p.sum()) for d, p in zip(shape, pads)], s, z)
        value = m.const(np.array([_zp(rng)], np.int8), QParams.per_tensor(s, z))
        m.op("PADV2", [x, m.const(pads), value], [o], tfl.PadV2OptionsT())
        _check_model(m.finish([x], [o]), [[random_int8(rng, shape)] for _ in range(3)])
    for name in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH"):
        for _ in range(6):
            m = OneOp()
            bs, h, w, c = int(rng.integers(2, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
            shapes = ((1, h, w, c * bs * bs), (1, h * bs, w * bs, c))
            ishape, oshape = shapes if name == "DEPTH_TO_SPACE" else shapes[::-1]
            s, z = _scale(rng), _zp(rng)
            x, o = m.act(ishape, s, z), m.act(oshape, s, z)
            cls = tfl.DepthToSpaceOptionsT if name == "DEPTH_TO_SPACE" else tfl.SpaceToDepthOptionsT
            m.op(name, [x], [o], _options(cls, blockSize=bs))
            _check_model(m.finish([x], [o]), [[random_int8(rng, ishape)] for _ in range(3)])
    m = OneOp()
    x, t, o = m.act((1, 3, 1, 4), 0.1, 2), m.act((1, 3, 4), 0.1, 2), m.act((1, 3, 4, 1), 0.1, 2)
    m.op("SQUEEZE", [x], [t], _options(tfl.SqueezeOptionsT, squeezeDims=[2]))
    m.op("EXPAND_DIMS", [t, m.const(np.array([3], np.int32))], [o], tfl.ExpandDimsOptionsT())
    _check_model(m.finish([x], [o]), [[random_int8(rng, (1, 3, 1, 4))] for _ in range(3)])


def test_split_and_mirror_pad_random():
    rng = np.random.default_rng(83)
    for k in range(12):
        rank = int(rng.integers(2, 5))
        shape = (1, *(int(v) for v in rng.integers(2, 7, rank - 1)))
        s, z = _scale(rng), _zp(rng)
        # SPLIT (equal parts) and SPLIT_V (sizes, one -1)
        axis = int(rng.integers(1, rank))
        m = OneOp()
        x = m.act(shape, s, z)
        parts = next(p for p in (3, 2, 1) if shape[axis] % p == 0)
        outs = [m.act(tuple(d // parts if i == axis else d for i, d in enumerate(shape)), s, z) for _ in range(parts)]
        m.op("SPLIT", [m.const(np.array([axis - rank if k % 2 else axis], np.int32)), x], outs,
             _options(tfl.SplitOptionsT, numSplits=parts))
        _check_model(m.finish([x], outs), [[random_int8(rng, shape)] for _ in range(3)])
        if shape[axis] >= 2:
            first = int(rng.integers(1, shape[axis]))
            m = OneOp()
            x = m.act(shape, s, z)
            sizes = [first, shape[axis] - first]
            outs = [m.act(tuple(n if i == axis else d for i, d in enumerate(shape)), s, z) for n in sizes]
            m.op("SPLIT_V", [x, m.const(np.array([first, -1], np.int32)), m.const(np.array([axis], np.int32))],
                 outs, _options(tfl.SplitVOptionsT, numSplits=2))
            _check_model(m.finish([x], outs), [[random_int8(rng, shape)] for _ in range(3)])
        # MIRROR_PAD, both modes, on the dims after the first
        mode = k % 2
        pads = np.zeros((rank, 2), np.int32)
        for d in range(1, rank):
            limit = shape[d] - (1 - mode)  # REFLECT: at most n - 1; SYMMETRIC: at most n
            pads[d] = rng.integers(0, limit + 1, 2)
        m = OneOp()
        x = m.act(shape, s, z)
        o = m.act(tuple(int(d + p.sum()) for d, p in zip(shape, pads)), s, z)
        m.op("MIRROR_PAD", [x, m.const(pads)], [o], _options(tfl.MirrorPadOptionsT, mode=mode))
        _check_model(m.finish([x], [o]), [[random_int8(rng, shape)] for _ in range(3)])


def test_per_sample_fallback():
    """An op emulation that declares ``per_sample`` runs one sample at a time, same results."""
    rng = np.random.default_rng(79)
    m = OneOp()
    x, t, o = m.act((1, 4, 6), 0.1, 3), m.act((1, 6, 4), 0.1, 3), m.act((1, 6, 4), 0.05, -2)
    m.op("TRANSPOSE", [x, m.const(np.array([0, 2, 1], np.int32))], [t], tfl.TransposeOptionsT())
    m.op("RELU", [t], [o])
    model = m.finish([x], [o])
    module = TFLiteModule(model)
    batch = torch.from_numpy(random_int8(rng, (5, 4, 6)))
    batched = module(batch)
    for op in module.ops:
        op.per_sample = True
    assert torch.equal(module(batch), batched)
    _check_model(model, [[random_int8(rng, (1, 4, 6))] for _ in range(3)])


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
def test_unknown_op_raises_naming_op_and_tensor():
    m = OneOp()
    x, o = m.act((1, 8), 0.1, 0, name="my_input"), m.act((1, 8), 0.1, 0, name="the_output")
    m.op("SIN", [x], [o])
    with pytest.raises(EmulationError, match=r"SIN .*the_output"):
        TFLiteModule(m.finish([x], [o]))


def test_bad_inputs_raise():
    m = OneOp()
    x, o = m.act((2, 8), 0.1, 0), m.act((2, 8), 0.1, 0)
    m.op("RELU", [x], [o])
    module = TFLiteModule(m.finish([x], [o]))
    assert module(torch.zeros(6, 8, dtype=torch.int8)).shape == (6, 8)  # three model-sized samples
    with pytest.raises(EmulationError, match="multiple of 2"):
        module(torch.zeros(3, 8, dtype=torch.int8))
    with pytest.raises(EmulationError, match="float32"):
        module(torch.zeros(2, 8))


# ----------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_efficientnet_lite0_payload_matches_litert(efficientnet_int8, benchmark_images, per_channel):
    from pipelines import payloads

    edge, _ = efficientnet_int8.lowered(per_channel)
    (payload,) = payloads(edge)
    crops = benchmark_images[1][:4]
    sets = [quantize_inputs(payload, [c[None].numpy()]) for c in crops]
    emulate_and_compare(payload, sets)
