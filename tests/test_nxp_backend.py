"""Compile spec, NeutronBackend preprocess outputs, intermediates, and the converter seam's layout."""

from __future__ import annotations

import os
import sys
import warnings

import pytest
import torch
import torch.nn as nn
from executorch.exir.backend.compile_spec_schema import CompileSpec

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lowering"))

from helpers import quantize  # noqa: E402
from pipelines import delegates, lower, quantize_and_lower  # noqa: E402

from neutronq import (  # noqa: E402
    NeutronPartitioner,
    generate_neutron_compile_spec,
    nxp_backend,  # noqa: E402
)
from neutronq.backend.neutron_target_spec import KNOWN_FLAVORS, KNOWN_TARGETS  # noqa: E402
from neutronq.lowering.nxp_sdk import layout_payload, load_converter  # noqa: E402
from neutronq.lowering.payload import decode_payload  # noqa: E402


def _model():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval(), (torch.randn(1, 3, 8, 8),)


def test_compile_spec_round_trips():
    specs = generate_neutron_compile_spec("imxrt700", operators_not_to_delegate=["aten::conv2d", "aten.add.Tensor"],
                                          neutron_converter_flavor="SDK_25_06", intermediates_dir="/tmp/x")
    assert all(isinstance(s, CompileSpec) for s in specs)
    opts = nxp_backend.NeutronCompileOptions.from_compile_specs(specs)
    assert opts.target == "imxrt700" and opts.neutron_converter_flavor == "SDK_25_06"
    assert opts.operators_not_to_delegate == ("aten::conv2d", "aten.add.Tensor")
    assert opts.intermediates_dir == "/tmp/x"
    # None means the newest flavor
    assert nxp_backend.NeutronCompileOptions.from_compile_specs(
        generate_neutron_compile_spec("mcxn94x")).neutron_converter_flavor == KNOWN_FLAVORS[-1]


def test_unknown_target_lists_known_ones():
    with pytest.raises(ValueError) as e:
        generate_neutron_compile_spec("imx8mp")
    assert all(t in str(e.value) for t in KNOWN_TARGETS)
    # a hand-made compile spec with a bad target fails in the partitioner too
    with pytest.raises(ValueError, match="imxrt700"):
        NeutronPartitioner([CompileSpec("target", b"imx8mp")])


def test_unknown_flavor_and_bad_op_name():
    with pytest.raises(ValueError, match="SDK_25_12"):
        generate_neutron_compile_spec("imxrt700", neutron_converter_flavor="SDK_24_01")
    with pytest.raises(ValueError, match="aten::conv2d"):
        generate_neutron_compile_spec("imxrt700", operators_not_to_delegate=["conv2d"])


def test_backend_id_and_payload(tmp_path):
    model, example = _model()
    _, edge, _, _ = quantize_and_lower(model, example, intermediates_dir=tmp_path)
    (lowered,) = delegates(edge)
    assert lowered.backend_id == "NeutronBackend"
    payload = decode_payload(lowered.processed_bytes)
    assert payload.input_channels_last == (True,) and payload.output_channels_last == (True,)
    dumped = list(tmp_path.glob("*.tflite"))
    assert len(dumped) == 1 and dumped[0].read_bytes() == payload.tflite


def test_preprocess_time_is_counted_per_partition():
    model, example = _model()
    _, converted, _ = quantize(model, example)
    nxp_backend.NeutronBackend.reset_timing()
    edge, _ = lower(converted, example)
    assert nxp_backend.NeutronBackend.preprocess_calls == len(delegates(edge)) == 1
    assert nxp_backend.NeutronBackend.preprocess_seconds > 0
    nxp_backend.NeutronBackend.reset_timing()
    assert nxp_backend.NeutronBackend.preprocess_calls == 0 == nxp_backend.NeutronBackend.preprocess_seconds


def test_missing_converter_warns_once():
    assert load_converter("SDK_25_12") is None  # NXP's SDK is not installed here
    model, example = _model()
    _, converted, _ = quantize(model, example)
    nxp_backend._WARNED.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lower(converted, example)
        lower(converted, example)
    msgs = [w for w in caught if issubclass(w.category, nxp_backend.NeutronConverterMissingWarning)]
    assert len(msgs) == 1 and "rejects" in str(msgs[0].message)


def test_nxp_layout_pads_each_section_to_16_bytes():
    # Only the layout arithmetic: NXP's converter itself cannot run here (see nxp_sdk.py).
    data = layout_payload(b"m" * 5, b"w" * 17, b"k" * 16, [True], [False, True])
    assert len(data) % 16 == 0
    assert data[:3] == bytes([1, 1, 2])
    assert data[16:21] == b"m" * 5 and data[32:49] == b"w" * 17 and data[64:80] == b"k" * 16
