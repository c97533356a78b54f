"""The versioned payload format: round trip, layout flags, and clear errors on bad bytes."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from neutronq.lowering.payload import (
    MAGIC,
    NeutronPayload,
    PayloadError,
    decode_payload,
    encode_payload,
    run_payload,
)
from neutronq.lowering.tflite_builder import QParams, TFLiteBuilder, tfl


def _transpose_model() -> bytes:
    """A TFLite model whose output is its NHWC input, transposed to NCHW: checks the flags."""
    b = TFLiteBuilder()
    qp = QParams.per_tensor(0.1, 3)
    x = b.tensor([1, 2, 3, 4], np.int8, qp, "x")  # NHWC of a [1, 4, 2, 3] tensor
    y = b.tensor([1, 4, 2, 3], np.int8, qp, "y")
    b.op("TRANSPOSE", [x, b.const_int32([0, 3, 1, 2])], [y], tfl.TransposeOptionsT())
    b.inputs, b.outputs = [x], [y]
    return b.finish()


def test_round_trip():
    data = encode_payload(b"model-bytes", [True, False], [False])
    p = decode_payload(data)
    assert p == NeutronPayload(1, "tflite", b"model-bytes", (True, False), (False,))


def test_run_payload_applies_layout_flags():
    model = _transpose_model()
    x = np.arange(24, dtype=np.int8).reshape(1, 4, 2, 3)  # PyTorch layout
    # input channels last: the runtime feeds NHWC; output as PyTorch (the model transposed it)
    (y,) = run_payload(encode_payload(model, [True], [False]), [x])
    np.testing.assert_array_equal(y, x)
    # a mismatched flag is caught by the shape check
    with pytest.raises(ValueError, match="TFLite shape"):
        run_payload(encode_payload(model, [False], [False]), [x])


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: d[:5], "truncated"),
        (lambda d: b"XXXX" + d[4:], "magic"),
        (lambda d: d[:4] + bytes([9]) + d[5:], "version 9"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: d + b"\0", "padded"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 0xFF]), "CRC"),
        (lambda d: d[:5] + bytes([7]) + d[6:], "kind"),
        (lambda d: d[:6] + struct.pack("<H", 500) + d[8:], "truncated"),
    ],
)
def test_corrupt_bytes_raise_payload_error(corrupt, message):
    data = encode_payload(b"some model", [True], [True, False])
    with pytest.raises(PayloadError, match=message):
        decode_payload(corrupt(data))


def test_payload_error_is_a_value_error():
    assert issubclass(PayloadError, ValueError)
    assert encode_payload(b"", [], []).startswith(MAGIC)
