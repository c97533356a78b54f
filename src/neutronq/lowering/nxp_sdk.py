"""The seam to NXP's proprietary Neutron converter, for users who have NXP's eIQ SDK.

UNTESTED: NXP's converter is not on any public registry, so nothing here has run against it.
The seam is kept narrow on purpose:

  * ``load_converter(flavor)`` imports ``neutron_converter_<flavor>`` (e.g.
    ``neutron_converter_SDK_25_12``) and returns the module, or ``None`` when it is not installed.
  * ``convert(module, tflite, target, extra_flags)`` calls the module's ``convertModel`` with the
    partition's int8 TFLite model and the target name, and expects the converted model back
    as bytes (a TFLite model whose one operator is the custom ``NeutronGraph``, holding
    microcode, weights and kernels in its input buffers). A failing converter raises
    ``NeutronConverterError`` carrying the converter's own message.
  * ``layout_payload`` lays out what a board's runtime reads: a header (a version byte, input
    and output counts, one layout flag per tensor, index maps) then microcode, weights and
    kernels, each padded to 16 bytes.

If your SDK's converter has another entry point, adapt ``convert`` only; everything else in
neutronq works on the TFLite model, which is the converter's input either way.
"""

from __future__ import annotations

import importlib
import struct
from typing import Optional

__all__ = ["NeutronConverterError", "load_converter", "convert", "layout_payload", "extract_neutron_graph"]

_ALIGN = 16
NXP_LAYOUT_VERSION = 1


class NeutronConverterError(RuntimeError):
    """NXP's converter rejected a partition; the message is the converter's."""


def load_converter(flavor: str):
    """The module ``neutron_converter_<flavor>``, or ``None`` when it is not importable."""
    try:
        return importlib.import_module(f"neutron_converter_{flavor}")
    except ImportError:
        return None


def convert(module, tflite: bytes, target: str, extra_flags: Optional[str] = None) -> bytes:
    entry = getattr(module, "convertModel", None)
    if entry is None:
        raise NeutronConverterError(
            f"{module.__name__} has no convertModel(); adapt neutronq.lowering.nxp_sdk.convert "
            "to your SDK's entry point")
    try:
        args = [bytes(tflite), target] + ([extra_flags] if extra_flags else [])
        return bytes(entry(*args))
    except Exception as e:  # the converter's diagnostics reach the user unchanged
        raise NeutronConverterError(f"NXP's Neutron converter ({module.__name__}) failed: {e}") from e


def extract_neutron_graph(converted: bytes) -> tuple[bytes, bytes, bytes]:
    """(microcode, weights, kernels): the constant inputs of the converted model's NeutronGraph op."""
    from ai_edge_litert import schema_py_generated as tfl

    model = tfl.ModelT.InitFromPackedBuf(converted, 0)
    sg = model.subgraphs[0]
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.customCode == "NeutronGraph":
            blobs = []
            for i in op.inputs:
                buf = model.buffers[sg.tensors[i].buffer]
                if buf.data is not None and len(buf.data):
                    blobs.append(bytes(bytearray(buf.data)))
            if len(blobs) >= 3:
                return blobs[0], blobs[1], blobs[2]
    raise NeutronConverterError("the converted model holds no NeutronGraph operator with microcode, "
                                "weights and kernels")


def _pad16(b: bytes) -> bytes:
    return b + b"\0" * ((-len(b)) % _ALIGN)


def layout_payload(microcode: bytes, weights: bytes, kernels: bytes, input_channels_last: list[bool],
                   output_channels_last: list[bool]) -> bytes:
    """Header + microcode + weights + kernels, each padded to 16 bytes (unverified on a board)."""
    n_in, n_out = len(input_channels_last), len(output_channels_last)
    head = struct.pack("<BBB", NXP_LAYOUT_VERSION, n_in, n_out)
    head += bytes(int(f) for f in input_channels_last) + bytes(int(f) for f in output_channels_last)
    head += bytes(range(n_in)) + bytes(range(n_out))  # index maps: partition order
    return _pad16(head) + _pad16(microcode) + _pad16(weights) + _pad16(kernels)
