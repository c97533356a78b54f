"""Memory and compute floor of lowered programs (neutronq.lowering.memory), and the target facts
they use (neutronq.backend.neutron_target_spec)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neutronq.backend.neutron_target_spec import KNOWN_TARGETS, NeutronTargetSpec, TargetInfo
from neutronq.lowering.memory import (
    MemoryNeed,
    compute_floor,
    fits,
    program_memory,
    tflite_arena_plan,
    tflite_macs,
    tflite_weight_bytes,
)
from neutronq.lowering.tflite_builder import QParams, TFLiteBuilder, tfl

QP = QParams.per_tensor(0.05, 0)


def _conv(b, x, out_shape, weight_shape, name, per_channel=False):
    cout = weight_shape[0]
    wq = QParams(tuple([0.01] * cout), tuple([0] * cout), 0) if per_channel else QParams.per_tensor(0.01, 0)
    bq = QParams(tuple([0.0005] * cout), tuple([0] * cout), 0) if per_channel else QParams.per_tensor(0.0005, 0)
    w = b.tensor(weight_shape, np.int8, wq, f"{name}_w", np.ones(weight_shape, np.int8))
    bias = b.tensor([cout], np.int32, bq, f"{name}_b", np.zeros([cout], np.int32))
    y = b.tensor(out_shape, np.int8, QP, name)
    opts = tfl.Conv2DOptionsT()
    opts.padding = tfl.Padding.SAME
    opts.strideH = opts.strideW = opts.dilationHFactor = opts.dilationWFactor = 1
    b.op("CONV_2D", [x, w, bias], [y], opts)
    return y


def chain_model() -> bytes:
    """conv -> add -> reshape, int8 activations, per-channel conv weights.

    Tensors (bytes): x [1,8,8,4] = 256 (graph input), c = conv(x) [1,8,8,8] = 512,
    a = add(c, c) [1,8,8,8] = 512, r = reshape(a) [1,512] = 512 (graph output; RESHAPE output is
    its own tensor). Ops 0 conv, 1 add, 2 reshape. Lifetimes: x [-1,0], c [0,1], a [1,2], r [2,3].

    Live bytes per op: op0 x+c = 768, op1 c+a = 1024, op2 a+r = 1024 -> peak 1024, first at op 1
    (ADD). Greedy, largest first (ties: earlier first use): c -> 0; a overlaps c -> 512;
    r overlaps only a (at 512) -> 0 fits below it; x overlaps only c (0..512) -> 512.
    Total max(0+512, 512+512, 0+512, 512+256) = 1024.
    Without graph inputs/outputs: c and a only -> peak 1024 at op 1, greedy 1024.

    Constants: conv weights [8,3,3,4] int8 = 288, bias [8] int32 = 32, reshape shape [2] int32 = 8
    -> 328 data bytes. Quantization: weights 8 scales x 4 + 8 zero points x 8 = 96, bias the same
    96, shape none -> 192. Activations x, c, a, r: one scale + one zero point each = 4 x 12 = 48.
    MACs: conv 512 outputs x 3*3*4 = 18432; add, reshape 0.
    """
    b = TFLiteBuilder()
    x = b.tensor([1, 8, 8, 4], np.int8, QP, "x")
    c = _conv(b, x, [1, 8, 8, 8], [8, 3, 3, 4], "c", per_channel=True)
    a = b.tensor([1, 8, 8, 8], np.int8, QP, "a")
    b.op("ADD", [c, c], [a], tfl.AddOptionsT())
    r = b.tensor([1, 512], np.int8, QP, "r")
    opts = tfl.ReshapeOptionsT()
    opts.newShape = [1, 512]
    b.op("RESHAPE", [a, b.const_int32([1, 512], "shape")], [r], opts)
    b.inputs, b.outputs = [x], [r]
    return b.finish()


def branch_model() -> bytes:
    """Two 1x1 convs on one input, concatenated.

    x [1,4,4,8] = 128 (input), b1 = conv(x) [1,4,4,16] = 256, b2 = conv(x) [1,4,4,8] = 128,
    y = concat(b1, b2, axis 3) [1,4,4,24] = 384 (output). Ops 0 conv b1, 1 conv b2, 2 concat.
    Lifetimes: x [-1,1], b1 [0,2], b2 [1,2], y [2,3].

    Live bytes: op0 x+b1 = 384, op1 x+b1+b2 = 512, op2 b1+b2+y = 768 -> peak 768 at op 2
    (CONCATENATION). Greedy (y 384, b1 256, x 128 (first -1), b2 128): y -> 0; b1 overlaps y
    (0..384) -> 384; x overlaps b1 only (384..640) -> 0; b2 overlaps y, x and b1 -> 640.
    Total 768. Without inputs/outputs: b1 [0,2], b2 [1,2] -> peak 384 (first at op 1),
    greedy b1 -> 0, b2 -> 256, total 384.
    MACs: 256 x 8 + 128 x 8 = 2048 + 1024.
    """
    b = TFLiteBuilder()
    x = b.tensor([1, 4, 4, 8], np.int8, QP, "x")
    b1 = _conv(b, x, [1, 4, 4, 16], [16, 1, 1, 8], "b1")
    b2 = _conv(b, x, [1, 4, 4, 8], [8, 1, 1, 8], "b2")
    y = b.tensor([1, 4, 4, 24], np.int8, QP, "y")
    opts = tfl.ConcatenationOptionsT()
    opts.axis = 3
    b.op("CONCATENATION", [b1, b2], [y], opts)
    b.inputs, b.outputs = [x], [y]
    return b.finish()


def _loadable(model: bytes):
    """LiteRT accepts the hand-built graph (so the plans are of a valid model)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF).allocate_tensors()


# ----------------------------------------------------------------------------------------------
# arena plans and weights of hand-built graphs
# ----------------------------------------------------------------------------------------------
def test_chain_arena_plan():
    model = chain_model()
    _loadable(model)
    plan = tflite_arena_plan(model)
    assert plan.op_names == ("CONV_2D", "ADD", "RESHAPE")
    assert plan.live_bytes == (768, 1024, 1024)
    assert (plan.peak_bytes, plan.peak_op, plan.peak_op_name) == (1024, 1, "ADD")
    byname = {t.name: t for t in plan.tensors}
    assert {n: (t.nbytes, t.first, t.last, t.offset) for n, t in byname.items()} == {
        "x": (256, -1, 0, 512), "c": (512, 0, 1, 0), "a": (512, 1, 2, 512), "r": (512, 2, 3, 0)}
    assert {plan.tensor(i).name for i in plan.peak_tensors} == {"c", "a"}
    assert byname["r"].kind == "output" and byname["x"].kind == "input"
    assert plan.greedy_bytes == 1024
    internal = tflite_arena_plan(model, include_io=False)
    assert (internal.peak_bytes, internal.peak_op, internal.greedy_bytes) == (1024, 1, 1024)
    assert {t.name for t in internal.tensors} == {"c", "a"}


def test_chain_weights_and_macs():
    w = tflite_weight_bytes(chain_model())
    assert (w.data_bytes, w.qparam_bytes, w.activation_qparam_bytes) == (328, 192, 48)
    assert w.total_bytes == 520 and w.buffer_bytes == 328
    per = {t.name: (t.dtype, t.data_bytes, t.qparam_bytes, t.per_channel) for t in w.tensors}
    assert per == {"c_w": ("INT8", 288, 96, True), "c_b": ("INT32", 32, 96, True),
                   "shape": ("INT32", 8, 0, False)}
    assert w.by_dtype() == {"INT8": 288, "INT32": 40}
    assert [(m.name, m.macs) for m in tflite_macs(chain_model())] == [
        ("CONV_2D", 18432), ("ADD", 0), ("RESHAPE", 0)]


def test_branch_concat_arena_plan():
    model = branch_model()
    _loadable(model)
    plan = tflite_arena_plan(model)
    assert plan.live_bytes == (384, 512, 768)
    assert (plan.peak_bytes, plan.peak_op_name) == (768, "CONCATENATION")
    assert {t.name: (t.first, t.last, t.offset) for t in plan.tensors} == {
        "x": (-1, 1, 0), "b1": (0, 2, 384), "b2": (1, 2, 640), "y": (2, 3, 0)}
    assert plan.greedy_bytes == 768
    internal = tflite_arena_plan(model, include_io=False)
    assert (internal.peak_bytes, internal.peak_op, internal.greedy_bytes) == (384, 1, 384)
    assert [m.macs for m in tflite_macs(model)] == [2048, 1024, 0]


def test_greedy_alignment_and_lower_bound():
    """Odd sizes: the greedy plan pads each offset to the alignment and never beats the peak."""
    b = TFLiteBuilder()
    x = b.tensor([1, 3, 3, 3], np.int8, QP, "x")  # 27 bytes
    y = b.tensor([1, 3, 3, 3], np.int8, QP, "y")
    z = b.tensor([1, 3, 3, 3], np.int8, QP, "z")
    b.op("RELU", [x], [y])
    b.op("RELU", [y], [z])
    b.inputs, b.outputs = [x], [z]
    model = b.finish()
    exact = tflite_arena_plan(model, alignment=1)
    padded = tflite_arena_plan(model, alignment=16)
    assert exact.peak_bytes == padded.peak_bytes == 54  # two 27-byte tensors at each op
    assert exact.greedy_bytes == 54 and padded.greedy_bytes == 64  # 27 -> 32 per slot
    with pytest.raises(ValueError, match="alignment"):
        tflite_arena_plan(model, alignment=0)
    with pytest.raises(ValueError, match="TFL3"):
        tflite_arena_plan(b"not a model")


# ----------------------------------------------------------------------------------------------
# lowered programs
# ----------------------------------------------------------------------------------------------
class TinyConv(torch.nn.Module):
    def __init__(self, cin=3, cout=8):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(cout, 4, 3)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv(x)))


@pytest.fixture(scope="module")
def tiny_lowered():
    from pipelines import quantize_and_lower

    torch.manual_seed(0)
    torch.set_num_threads(1)
    _, edge, _, _ = quantize_and_lower(TinyConv(), (torch.randn(1, 3, 8, 8),))
    return edge


def _raw_buffer_bytes(model: bytes) -> tuple[int, int]:
    """(bytes of all buffers, bytes of all quantization arrays) read straight off the flatbuffer
    with the generated accessors, independently of the object API memory.py uses."""
    m = tfl.Model.GetRootAs(model, 0)
    data = sum(m.Buffers(i).DataLength() for i in range(m.BuffersLength()))
    sg = m.Subgraphs(0)
    q = 0
    for i in range(sg.TensorsLength()):
        qp = sg.Tensors(i).Quantization()
        if qp is not None:
            q += 4 * qp.ScaleLength() + 8 * qp.ZeroPointLength() + 4 * (qp.MinLength() + qp.MaxLength())
    return data, q


def test_weight_bytes_equal_the_payload_buffers(tiny_lowered):
    from pipelines import payloads

    (payload,) = payloads(tiny_lowered)
    w = tflite_weight_bytes(payload.tflite)
    data, q = _raw_buffer_bytes(payload.tflite)
    assert w.data_bytes == w.buffer_bytes == data
    assert w.qparam_bytes + w.activation_qparam_bytes == q
    # int8 weights + int32 biases of the two convs: 8*3*3*3 + 8*4 + 4*8*3*3 + 4*4
    assert w.by_dtype() == {"INT8": 216 + 288, "INT32": 32 + 16}


def test_program_memory_of_a_lowered_program(tiny_lowered, tmp_path):
    from executorch.exir._serialize._program import deserialize_pte_binary
    from pipelines import payloads

    et = tiny_lowered.to_executorch()
    pm = program_memory(et)
    plan = deserialize_pte_binary(et.buffer).program.execution_plan[0]
    assert pm.method == "forward" and pm.program_bytes == len(et.buffer)
    assert list(pm.cpu_arena_buffers) == list(plan.non_const_buffer_sizes)
    assert pm.cpu_arena_bytes == sum(plan.non_const_buffer_sizes) > 0
    # the delegate's inputs and outputs are planned values of the CPU arena
    (call,) = [i.instr_args for c in plan.chains for i in c.instructions
               if type(i.instr_args).__name__ == "DelegateCall"]
    io = [plan.values[a].val for a in call.args]
    assert io and all(v.allocation_info is not None and v.allocation_info.memory_id >= 1 for v in io)

    (part,) = pm.partitions
    (payload,) = payloads(tiny_lowered)
    assert part.backend_id == "NeutronBackend"
    assert part.weights == tflite_weight_bytes(payload.tflite)
    assert part.internal.peak_bytes == 8 * 8 * 8  # the only intermediate: conv output [1,8,8,8]
    assert part.arena.peak_bytes == 8 * 8 * 3 + 8 * 8 * 8  # input + intermediate at the first conv
    assert part.transpose_bytes == 8 * 8 * 3 + 6 * 6 * 4  # NHWC copies of input and output
    assert pm.peak_activation_bytes == pm.cpu_arena_bytes + part.temp_bytes
    assert pm.weight_bytes == pm.cpu_constant_bytes + part.weights.total_bytes
    assert [m.macs for m in pm.npu_macs] == [8 * 8 * 8 * 27, 6 * 6 * 4 * 72]
    # the same from bytes and from a path
    path = tmp_path / "m.pte"
    path.write_bytes(et.buffer)
    assert program_memory(path) == program_memory(et.buffer) == pm
    with pytest.raises(TypeError, match="to_executorch"):
        program_memory(tiny_lowered)
    with pytest.raises(ValueError, match="no method"):
        program_memory(et, method="nope")


def test_model_too_large_for_mcxn94x():
    """A float 1x3x256x256 input is 768 KiB in the CPU arena alone: over the MCX N94x's 512 KiB
    SRAM, well inside the i.MX RT700's 7.5 MiB."""
    from pipelines import quantize_and_lower

    torch.manual_seed(0)
    example = (torch.randn(1, 3, 256, 256),)
    _, edge, _, _ = quantize_and_lower(TinyConv(), example, calibration=[example])
    pm = program_memory(edge.to_executorch())
    assert pm.peak_activation_bytes > 3 * 256 * 256 * 4 > 512 * 1024

    report = fits(pm, "mcxn94x")
    assert report.status == "does not fit" and report.fits is False
    (sram,) = [c for c in report.checks if c.memory == "sram"]
    assert (sram.status, sram.need_bytes, sram.capacity_bytes) == (
        "does not fit", pm.peak_activation_bytes, 512 * 1024)
    (flash,) = [c for c in report.checks if c.memory == "flash"]
    assert (flash.status, flash.need_bytes, flash.capacity_bytes) == ("fits", pm.program_bytes, 2 * 1024 * 1024)

    rt = fits(pm, "imxrt700")
    (sram,) = [c for c in rt.checks if c.memory == "sram"]
    assert sram.status == "fits" and sram.need_bytes == pm.peak_activation_bytes + pm.npu_weight_bytes
    assert rt.status == "unknown"  # the external flash's size is the board's: never "fits"


def test_fits_with_numbers_and_unknowns():
    big_weights = MemoryNeed(weight_bytes=3 * 1024 * 1024, activation_bytes=100_000)
    r = fits(big_weights, NeutronTargetSpec("mcxn54x"))
    assert r.status == "does not fit"
    assert [(c.memory, c.status) for c in r.checks] == [("flash", "does not fit"), ("sram", "fits")]
    small = MemoryNeed(weight_bytes=10_000, activation_bytes=10_000, program_bytes=30_000)
    assert fits(small, "mcxn94x").status == "fits"
    assert fits(small, "imx95").status == "fits"  # against the board's DRAM
    unknown = fits(small, "s32n79")
    assert unknown.status == "unknown" and all(c.capacity_bytes is None for c in unknown.checks)
    # weights that only fit in SRAM without the activations: the note on prefetching
    rt = fits(MemoryNeed(weight_bytes=7 * 1024 * 1024, activation_bytes=1024 * 1024), "imxrt700")
    assert rt.status == "does not fit" and "fetch_constants_to_sram" in rt.notes[0]
    prefetched = fits(MemoryNeed(weight_bytes=7 * 1024 * 1024, activation_bytes=1024 * 1024), "imxrt700",
                      prefetch_weights=True)
    (sram,) = [c for c in prefetched.checks if c.memory == "sram"]
    assert (sram.status, sram.need_bytes) == ("fits", 1024 * 1024)
    assert prefetched.status == "unknown"  # the weights now need the board's external flash
    assert fits(MemoryNeed(weight_bytes=1, activation_bytes=None), "mcxn94x").status == "unknown"


# ----------------------------------------------------------------------------------------------
# compute floor
# ----------------------------------------------------------------------------------------------
def test_compute_floor_known_and_unknown_target():
    macs = [("conv", 1_800_000_000), ("fc", 600_000_000)]
    known = compute_floor(macs, "mcxn94x")  # 16 MACs/cycle x 150 MHz = 2.4e9 MAC/s
    assert known.known and known.macs_per_second == 16 * 150e6
    assert known.basis == "16 MACs/cycle x 150 MHz"
    assert known.seconds == pytest.approx(1.0)
    assert [(o.name, o.seconds) for o in known.ops] == [("conv", pytest.approx(0.75)), ("fc", pytest.approx(0.25))]

    unknown = compute_floor(macs, "imxrt700")  # 64 MACs/cycle, clock not published
    assert not unknown.known and unknown.seconds is None
    assert all(o.seconds is None for o in unknown.ops) and "npu_clock_mhz" in unknown.basis
    assert unknown.total_macs == known.total_macs == 2_400_000_000

    tops = compute_floor(2_000_000_000, "imx95")  # 2 TOPS = 1e12 MAC/s
    assert tops.seconds == pytest.approx(2e-3) and "TOPS" in tops.basis
    # a what-if target from a TargetInfo, and the TFLite MAC count straight in
    info = TargetInfo("what-if", "x", "Neutron-C", None, None, None, 8, None, npu_clock_mhz=100.0)
    f = compute_floor(tflite_macs(chain_model()), info)
    assert f.seconds == pytest.approx(18432 / 8e8) and [o.name for o in f.ops] == ["CONV_2D", "ADD", "RESHAPE"]


# ----------------------------------------------------------------------------------------------
# target facts
# ----------------------------------------------------------------------------------------------
MEMORY_FIELDS = ("sram_bytes", "flash_bytes", "flash_on_chip", "npu_weights_from", "activations_in",
                 "npu_clock_mhz", "peak_tops", "dram_bytes")


@pytest.mark.parametrize("name", sorted(KNOWN_TARGETS))
def test_every_published_fact_has_a_source(name):
    info = KNOWN_TARGETS[name]
    for f in MEMORY_FIELDS:
        if getattr(info, f) is not None:
            assert info.sources.get(f), f"{name}.{f} = {getattr(info, f)!r} has no source"
    assert info.npu_weights_from in (None, "flash", "sram", "dram")
    assert info.activations_in in (None, "sram", "dram")
    spec = NeutronTargetSpec(name)
    assert spec.sram_bytes == info.sram_bytes and spec.npu_clock_mhz == info.npu_clock_mhz
    hash(info)  # sources do not make TargetInfo unhashable


def test_existing_hardware_numbers_unchanged():
    rt = NeutronTargetSpec("imxrt700")
    assert (rt.num_macs, rt.num_pipes, rt.total_macs, rt.is_neutron_c) == (8, 8, 64, True)
    assert NeutronTargetSpec("mcxn94x").unknown_parameters() == ["num_pipes", "macs_per_pipe"]
    assert KNOWN_TARGETS["imxrt700"] == TargetInfo("imxrt700", "i.MX RT700", "Neutron-C", "N3-64", 8, 8, 64, True,
                                                   **{f: getattr(KNOWN_TARGETS["imxrt700"], f)
                                                      for f in MEMORY_FIELDS})


def test_program_without_npu_partitions_counts_cpu_constants():
    """Convs kept on the CPU: their int8 weights are the program's constants, no partition."""
    from pipelines import quantize_and_lower

    torch.manual_seed(0)
    _, edge, _, _ = quantize_and_lower(TinyConv(), (torch.randn(1, 3, 8, 8),),
                                       operators_not_to_delegate=["aten::conv2d"])
    pm = program_memory(edge.to_executorch())
    assert pm.partitions == () and pm.npu_temp_peak_bytes == 0
    assert pm.peak_activation_bytes == pm.cpu_arena_bytes
    assert pm.cpu_constant_bytes >= 216 + 288  # at least the int8 weights of both convs
    assert pm.weight_bytes == pm.cpu_constant_bytes
