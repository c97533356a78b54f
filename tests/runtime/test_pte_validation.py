"""A damaged .pte is checked before anything runs: quantization parameters and tensor metadata
that no program has raise ``ProgramError`` naming the value and the instruction, instead of
aborting the process in ExecuTorch's quantize kernel (quant_max out of bound) or running with an
output zero point of 42501 (every logit off by -65.7).

The damage is made on the deserialized program and serialized again, so each case hits one field;
tests/runtime/test_pte_fuzz.py flips random bytes.
"""

from __future__ import annotations

import pytest
import torch
from executorch.exir import schema as S
from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary
from fuzz_pte import build_small_program

from neutronq.runtime import ProgramError, load_program


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    pte, inputs = build_small_program(tmp_path_factory.mktemp("small"))
    data = pte.read_bytes()
    x = torch.load(inputs)
    return data, x, load_program(data)(x)


def _edit(data: bytes, edit) -> bytes:
    pte = deserialize_pte_binary(data)
    plan = pte.program.execution_plan[0]
    kernels = [(i.instr_args, plan.operators[i.instr_args.op_index].name) for i in plan.chains[0].instructions
               if isinstance(i.instr_args, S.KernelCall)]
    quantize = next(a for a, n in kernels if n.endswith("::quantize_per_tensor"))
    dequantize = [a for a, n in kernels if n.endswith("::dequantize_per_tensor")][-1]
    edit(plan, quantize, dequantize)
    return bytes(serialize_pte_binary(pte_file=pte))


def _set(index_of, value):
    def edit(plan, q, dq):
        plan.values[index_of(q, dq)].val = value
    return edit


CASES = {
    "output zero point 42501": (_set(lambda q, dq: dq.args[2], S.Int(42501)),
                                r"instruction \d+ \(quantized_decomposed::dequantize_per_tensor.out\): the zero point "
                                r"\[42501.0\] \(value \d+ \(Int\)\) lies outside the quantization range \[-128, 127\]"),
    "input quant_max 1000": (_set(lambda q, dq: q.args[4], S.Int(1000)),
                             r"quant_max 1000 \(value \d+ \(Int\)\) lies outside int8 \[-128, 127\]"),
    "input quant_min above quant_max": (_set(lambda q, dq: q.args[3], S.Int(127)), r"quant_min 127 is not below quant_max"),
    "input scale -0.1": (_set(lambda q, dq: q.args[1], S.Double(-0.1)), r"the scale \[-0.1\] .* is not a positive finite"),
    "input scale NaN": (_set(lambda q, dq: q.args[1], S.Double(float("nan"))), r"the scale \[nan\]"),
    "input scale inf": (_set(lambda q, dq: q.args[1], S.Double(float("inf"))), r"the scale \[inf\]"),
    "quantized dtype float": (_set(lambda q, dq: q.args[5], S.Int(6)), r"the quantized dtype 6 \(torch.float32\)"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_damaged_quantization_parameters_are_named(small, name):
    data, x, _ = small
    edit, message = CASES[name]
    with pytest.raises(ProgramError, match=message):
        load_program(_edit(data, edit))


def test_a_scale_that_disagrees_with_the_payload_is_named(small):
    """The output dequantize's scale doubled: valid on its own, but not the scale of the payload's
    output it reads (the payload is CRC-protected)."""
    data, _, _ = small

    def edit(plan, q, dq):
        plan.values[dq.args[1]].val = S.Double(plan.values[dq.args[1]].val.double_val * 2)

    with pytest.raises(ProgramError, match=r"dequantize_per_tensor.out\) quantizes value \d+ \(tensor int8\[1, 3\], "
                                           r"argument 'input'.*the payload's TFLite output it meets has scale"):
        load_program(_edit(data, edit))


def test_damaged_tensor_metadata_is_named(small):
    data, _, _ = small
    cases = {
        "a size": (lambda plan, q, dq: plan.values[plan.outputs[0]].val.sizes.__setitem__(-1, 7),
                   r"value 8 \(tensor float32\[1, 7\], output 0 of method .forward.\)"),
        "a dim order": (lambda plan, q, dq: plan.values[plan.inputs[0]].val.dim_order.__setitem__(0, 3),
                        r"has the dim order \[3, 1, 2, 3\]"),
        "a dtype": (lambda plan, q, dq: setattr(plan.values[plan.outputs[0]].val, "scalar_type", 12),
                    r"has the dtype code .*QINT8"),
        "a memory offset": (lambda plan, q, dq: setattr(plan.values[plan.inputs[0]].val.allocation_info,
                                                        "memory_offset_low", 1 << 30),
                            r"value 0 \(tensor float32\[1, 3, 16, 16\], input 0 of method 'forward'\) lies at bytes"),
        "an argument index": (lambda plan, q, dq: q.args.__setitem__(1, 10_000), r"refers to value 10000"),
        "an overlap": (lambda plan, q, dq: setattr(plan.values[dq.args[-1]].val.allocation_info, "memory_offset_low",
                                                   plan.values[dq.args[0]].val.allocation_info.memory_offset_low),
                       r"overlap in memory buffer"),
    }
    for name, (edit, message) in cases.items():
        with pytest.raises(ProgramError, match=message):
            load_program(_edit(data, edit))


def test_an_undamaged_round_trip_runs_to_the_same_outputs(small):
    data, x, expected = small
    assert torch.equal(load_program(_edit(data, lambda plan, q, dq: None))(x), expected)
