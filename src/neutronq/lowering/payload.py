"""The delegate payload: our small versioned header followed by the partition's int8 TFLite model.

Layout (little endian), version 1::

    offset  size  field
    0       4     magic b"NQNP" (NeutronQ Neutron Payload)
    4       1     version (1)
    5       1     kind: 0 = "tflite" (the NPU converter's input), 1 = "neutron" (reserved)
    6       2     number of inputs  (n_in)
    8       2     number of outputs (n_out)
    10      n_in  input layout flags: 1 = channels last, 0 = as PyTorch
    ..      n_out output layout flags
    ..      pad to a multiple of 4
    ..      4     model length in bytes (L)
    ..      4     CRC-32 of the model bytes
    ..      L     the model (a TFLite flatbuffer for kind "tflite")

``channels_last`` means: the TFLite tensor is the PyTorch tensor with dim 1 moved last
(NCHW -> NHWC; the same rule for rank 3 and 5). A rank <= 2 tensor is never channels last.

A board's Neutron runtime does not read this layout: it reads NXP's converter output, which
only NXP's SDK produces (see ``neutronq.nxp_backend``). This payload is for host checks
(``run_payload`` and ``neutronq.runtime``) and for NXP's own tools, which take the TFLite.

``neutronq.runtime`` depends on ``encode_payload``, ``decode_payload``, ``NeutronPayload``,
``PayloadError`` and ``run_payload`` exactly as they are here.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAGIC",
    "VERSION",
    "NeutronPayload",
    "PayloadError",
    "encode_payload",
    "decode_payload",
    "run_payload",
    "payload_io",
    "quantize_inputs",
    "to_channels_last",
    "from_channels_last",
    "delegate_payloads",
]

MAGIC = b"NQNP"
VERSION = 1
_KINDS = {0: "tflite", 1: "neutron"}
_KIND_CODES = {v: k for k, v in _KINDS.items()}
_HEAD = struct.Struct("<4sBBHH")
_TAIL = struct.Struct("<II")


class PayloadError(ValueError):
    """The bytes are not a valid neutronq delegate payload."""


@dataclass(frozen=True)
class NeutronPayload:
    version: int
    kind: str  # "tflite" or "neutron"
    tflite: bytes  # the model
    input_channels_last: tuple[bool, ...]
    output_channels_last: tuple[bool, ...]


def _pad4(n: int) -> int:
    return (-n) % 4


def encode_payload(tflite: bytes, input_channels_last: list[bool], output_channels_last: list[bool]) -> bytes:
    """Our header followed by ``tflite``."""
    model = bytes(tflite)
    flags = bytes(int(bool(f)) for f in list(input_channels_last) + list(output_channels_last))
    head = _HEAD.pack(MAGIC, VERSION, _KIND_CODES["tflite"], len(input_channels_last), len(output_channels_last))
    head += flags + b"\0" * _pad4(len(head) + len(flags))
    return head + _TAIL.pack(len(model), zlib.crc32(model)) + model


def decode_payload(data: bytes) -> NeutronPayload:
    """The payload in ``data``; ``PayloadError`` naming what is wrong otherwise."""
    data = bytes(data)
    if len(data) < _HEAD.size:
        raise PayloadError(
            f"Neutron payload truncated: {len(data)} bytes, shorter than the {_HEAD.size}-byte header."
        )
    magic, version, kind, n_in, n_out = _HEAD.unpack_from(data, 0)
    if magic != MAGIC:
        raise PayloadError(
            f"Not a neutronq payload: magic {magic!r}, expected {MAGIC!r}. NXP-converted payloads "
            "(made with NXP's SDK) are read by a board's runtime, not by neutronq."
        )
    if version != VERSION:
        raise PayloadError(
            f"Unsupported neutronq payload version {version} (this neutronq reads version {VERSION}). "
            "Lower the model again with this neutronq version."
        )
    if kind not in _KINDS:
        raise PayloadError(f"Corrupt neutronq payload: unknown kind code {kind}.")
    offset = _HEAD.size + n_in + n_out
    offset += _pad4(offset)
    if len(data) < offset + _TAIL.size:
        raise PayloadError(f"Neutron payload truncated: header says {n_in} inputs and {n_out} outputs, "
                           f"but only {len(data)} bytes are present.")
    flags = data[_HEAD.size : _HEAD.size + n_in + n_out]
    if any(f > 1 for f in flags):
        raise PayloadError("Corrupt neutronq payload: layout flags must be 0 or 1.")
    length, crc = _TAIL.unpack_from(data, offset)
    offset += _TAIL.size
    if len(data) != offset + length:
        raise PayloadError(
            f"Neutron payload truncated or padded: the model should be {length} bytes, "
            f"{len(data) - offset} are present."
        )
    model = data[offset:]
    if zlib.crc32(model) != crc:
        raise PayloadError("Corrupt neutronq payload: the model's CRC-32 does not match the header.")
    return NeutronPayload(
        version=version,
        kind=_KINDS[kind],
        tflite=model,
        input_channels_last=tuple(bool(f) for f in flags[:n_in]),
        output_channels_last=tuple(bool(f) for f in flags[n_in:]),
    )


def delegate_payloads(edge_manager) -> list[bytes]:
    """The processed bytes of each delegate of a lowered ``EdgeProgramManager`` (graph order)."""
    gm = edge_manager.exported_program().graph_module
    return [m.processed_bytes for _, m in gm.named_children()
            if hasattr(m, "processed_bytes") and hasattr(m, "backend_id")]


# ----------------------------------------------------------------------------------------------
# layout helpers
# ----------------------------------------------------------------------------------------------
def to_channels_last(a: np.ndarray) -> np.ndarray:
    """PyTorch layout -> TFLite layout: dim 1 moved last (NCHW -> NHWC)."""
    if a.ndim < 3:
        return a
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def from_channels_last(a: np.ndarray) -> np.ndarray:
    """TFLite layout -> PyTorch layout: last dim moved to 1 (NHWC -> NCHW)."""
    if a.ndim < 3:
        return a
    return np.ascontiguousarray(np.moveaxis(a, -1, 1))


# ----------------------------------------------------------------------------------------------
# host execution with TFLite's reference kernels
# ----------------------------------------------------------------------------------------------
_INTERPRETERS: "OrderedDict[bytes, object]" = OrderedDict()
_CACHE_SIZE = 32


def _interpreter(model: bytes):
    key = hashlib.sha256(model).digest()
    interp = _INTERPRETERS.get(key)
    if interp is None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        interp = Interpreter(
            model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF
        )
        interp.allocate_tensors()
        _INTERPRETERS[key] = interp
        while len(_INTERPRETERS) > _CACHE_SIZE:
            _INTERPRETERS.popitem(last=False)
    else:
        _INTERPRETERS.move_to_end(key)
    return interp


def payload_io(payload) -> tuple[list[tuple], list[tuple]]:
    """(inputs, outputs) of a payload's TFLite model, each as (numpy dtype, shape in PyTorch
    layout, scale, zero point); scale 0.0 where a tensor is not quantized."""
    if not isinstance(payload, NeutronPayload):
        payload = decode_payload(payload)
    interp = _interpreter(payload.tflite)

    def describe(details, channels_last):
        out = []
        for d, cl in zip(details, channels_last):
            shape = tuple(int(s) for s in d["shape"])
            if cl and len(shape) >= 3:
                shape = (shape[0], shape[-1], *shape[1:-1])
            scale, zero_point = d["quantization"]
            out.append((np.dtype(d["dtype"]), shape, float(scale), int(zero_point)))
        return out

    inputs, outputs = interp.get_input_details(), interp.get_output_details()
    if len(inputs) != len(payload.input_channels_last) or len(outputs) != len(payload.output_channels_last):
        raise PayloadError(f"Corrupt neutronq payload: the header declares {len(payload.input_channels_last)} "
                           f"inputs and {len(payload.output_channels_last)} outputs, the model has "
                           f"{len(inputs)} and {len(outputs)}.")
    return describe(inputs, payload.input_channels_last), describe(outputs, payload.output_channels_last)


def quantize_inputs(payload, inputs: list) -> list:
    """Float inputs (PyTorch layout) as the int8 arrays ``run_payload`` takes, rounded with the
    quantization parameters of the payload's own TFLite inputs."""
    if not isinstance(payload, NeutronPayload):
        payload = decode_payload(payload)
    details = _interpreter(payload.tflite).get_input_details()
    if len(inputs) != len(details):
        raise ValueError(f"The payload takes {len(details)} inputs; got {len(inputs)}.")
    out = []
    for d, x in zip(details, inputs):
        scale, zero_point = d["quantization"]
        x = np.asarray(x, np.float64)
        out.append(np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8))
    return out


def run_payload(payload, int8_inputs: list) -> list:
    """Run a payload's TFLite model with LiteRT's reference kernels (``BUILTIN_REF``).

    ``payload`` is a ``NeutronPayload`` or its encoded bytes; inputs and outputs are int8 numpy
    arrays in PyTorch layout (the transposes the layout flags call for are done here).
    Interpreters are cached per model.
    """
    if not isinstance(payload, NeutronPayload):
        payload = decode_payload(payload)
    if payload.kind != "tflite":
        raise PayloadError(f"run_payload runs TFLite payloads; this one is {payload.kind!r}.")
    interp = _interpreter(payload.tflite)
    details = interp.get_input_details()
    if len(int8_inputs) != len(details):
        raise ValueError(f"The payload takes {len(details)} inputs; got {len(int8_inputs)}.")
    for i, (d, x, cl) in enumerate(zip(details, int8_inputs, payload.input_channels_last)):
        x = np.asarray(x)
        if cl:
            x = to_channels_last(x)
        if x.dtype != d["dtype"] or tuple(x.shape) != tuple(d["shape"]):
            raise ValueError(
                f"Payload input {i}: expected {np.dtype(d['dtype']).name} of TFLite shape "
                f"{tuple(d['shape'])}, got {x.dtype.name} of shape {tuple(x.shape)} "
                f"(after the channels-last transpose: {cl})."
            )
        interp.set_tensor(d["index"], x)
    interp.invoke()
    outs = []
    for d, cl in zip(interp.get_output_details(), payload.output_channels_last):
        y = interp.get_tensor(d["index"]).copy()
        outs.append(from_channels_last(y) if cl else y)
    return outs
