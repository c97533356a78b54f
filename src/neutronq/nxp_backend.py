"""The Neutron backend: compile spec and the ExecuTorch ``BackendDetails`` that turns each
delegated partition into its payload.

``generate_neutron_compile_spec(target, operators_not_to_delegate=None,
neutron_converter_flavor=None, intermediates_dir=None, extra_flags=None)``:

  * ``target``: a Neutron target name (``"imxrt700"`` ...); unknown names raise ``ValueError``
    listing the known ones.
  * ``operators_not_to_delegate``: op names kept on the CPU, written either as
    ``"aten.conv2d.default"`` (namespace.op.overload, the overload optional) or as
    ``"aten::conv2d"`` (namespace::op). Names a user knows from PyTorch (``conv2d``, ``linear``,
    ``max_pool2d``, ``softmax``, ``view`` ...) match the edge-dialect ops that carry them
    (``convolution``, ``addmm``, ``max_pool2d_with_indices``, ``_softmax``, ``view_copy``).
  * ``neutron_converter_flavor``: which NXP converter module (``neutron_converter_<flavor>``) to
    run when it is installed; ``None`` means the newest known flavor.
  * ``intermediates_dir``: each partition's ``.tflite`` (the converter's input) is written there.
  * ``extra_flags``: passed to NXP's converter as they are.

``NeutronBackend.preprocess`` builds the partition's int8 TFLite model; with NXP's converter
installed it converts it and lays the payload out as a board's runtime reads it (an untested
seam: ``neutronq.lowering.nxp_sdk``); otherwise the payload is our versioned header +
the TFLite model (``neutronq.lowering.payload``), which a board's runtime rejects at load, and
the user is told so once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from executorch.exir.backend.backend_details import BackendDetails, PreprocessResult
from executorch.exir.backend.compile_spec_schema import CompileSpec

from neutronq.backend.neutron_target_spec import check_flavor, check_target
from neutronq.lowering import nxp_sdk
from neutronq.lowering.payload import encode_payload
from neutronq.lowering.support import parse_op_name
from neutronq.lowering.to_tflite import partition_to_tflite

__all__ = [
    "generate_neutron_compile_spec",
    "NeutronCompileOptions",
    "NeutronBackend",
    "NeutronConverterMissingWarning",
]

log = logging.getLogger(__name__)

_KEYS = ("target", "neutron_converter_flavor", "operators_not_to_delegate", "intermediates_dir", "extra_flags")


class NeutronConverterMissingWarning(UserWarning):
    """NXP's converter is not installed: payloads hold the TFLite model, not NPU microcode."""


@dataclass(frozen=True)
class NeutronCompileOptions:
    target: str
    neutron_converter_flavor: str
    operators_not_to_delegate: tuple[str, ...] = ()
    intermediates_dir: Optional[str] = None
    extra_flags: Optional[str] = None

    @staticmethod
    def from_compile_specs(specs: Sequence[CompileSpec]) -> "NeutronCompileOptions":
        values = {}
        for s in specs:
            if s.key not in _KEYS:
                raise ValueError(f"Unknown Neutron compile spec key {s.key!r}; known keys: {', '.join(_KEYS)}. "
                                 "Make the compile spec with generate_neutron_compile_spec().")
            values[s.key] = bytes(s.value).decode("utf-8")
        if "target" not in values:
            raise ValueError("The Neutron compile spec has no target; make it with "
                             "generate_neutron_compile_spec(target, ...).")
        ops = tuple(o for o in values.get("operators_not_to_delegate", "").split(",") if o)
        return NeutronCompileOptions(
            target=check_target(values["target"]).name,
            neutron_converter_flavor=check_flavor(values.get("neutron_converter_flavor") or None),
            operators_not_to_delegate=ops,
            intermediates_dir=values.get("intermediates_dir") or None,
            extra_flags=values.get("extra_flags") or None,
        )


def generate_neutron_compile_spec(
    target: str,
    operators_not_to_delegate: Optional[Union[Sequence[str], str]] = None,
    neutron_converter_flavor: Optional[str] = None,
    intermediates_dir: Optional[Union[str, os.PathLike]] = None,
    extra_flags: Optional[str] = None,
) -> list[CompileSpec]:
    """The compile spec of ``NeutronPartitioner`` and ``NeutronBackend`` (see the module doc)."""
    info = check_target(target)
    flavor = check_flavor(neutron_converter_flavor)
    if isinstance(operators_not_to_delegate, str):
        operators_not_to_delegate = [operators_not_to_delegate]
    ops = [parse_op_name(str(o)).text for o in (operators_not_to_delegate or [])]
    specs = [
        CompileSpec("target", info.name.encode()),
        CompileSpec("neutron_converter_flavor", flavor.encode()),
        CompileSpec("operators_not_to_delegate", ",".join(ops).encode()),
    ]
    if intermediates_dir is not None:
        specs.append(CompileSpec("intermediates_dir", os.fspath(intermediates_dir).encode()))
    if extra_flags:
        specs.append(CompileSpec("extra_flags", str(extra_flags).encode()))
    return specs


_WARNED: set = set()


def _warn_no_converter(flavor: str) -> None:
    if flavor in _WARNED:
        return
    _WARNED.add(flavor)
    msg = (f"NXP's Neutron converter (module neutron_converter_{flavor}) is not installed: the "
           "Neutron delegates hold neutronq's int8 TFLite payload, which runs on the host "
           "(neutronq.simulate / LiteRT) but which a board's Neutron runtime rejects at load. "
           "Install NXP's eIQ SDK converter and lower again to get NPU microcode.")
    log.warning(msg)
    warnings.warn(msg, NeutronConverterMissingWarning, stacklevel=3)


class NeutronBackend(BackendDetails):
    """ExecuTorch backend id ``NeutronBackend`` (ExecuTorch names a backend after its class:
    ``NEUTRON_BACKEND_ID``): a partition -> its Neutron delegate payload.

    ``preprocess_seconds`` / ``preprocess_calls``: the time spent building payloads and the
    number of partitions built, summed over this process (``reset_timing()`` sets them to 0),
    for benchmarks that split the lowering time."""

    preprocess_seconds: float = 0.0
    preprocess_calls: int = 0

    @classmethod
    def reset_timing(cls) -> None:
        cls.preprocess_seconds, cls.preprocess_calls = 0.0, 0

    @staticmethod
    def preprocess(edge_program, compile_specs: list[CompileSpec]) -> PreprocessResult:
        start = time.perf_counter()
        try:
            return NeutronBackend._payload(edge_program, compile_specs)
        finally:
            NeutronBackend.preprocess_seconds += time.perf_counter() - start
            NeutronBackend.preprocess_calls += 1

    @staticmethod
    def _payload(edge_program, compile_specs: list[CompileSpec]) -> PreprocessResult:
        opts = NeutronCompileOptions.from_compile_specs(compile_specs)
        part = partition_to_tflite(edge_program, description=f"neutronq partition for {opts.target}")
        if opts.intermediates_dir:
            os.makedirs(opts.intermediates_dir, exist_ok=True)
            digest = hashlib.sha256(part.tflite).hexdigest()[:12]
            path = os.path.join(opts.intermediates_dir, f"neutron_partition_{digest}.tflite")
            with open(path, "wb") as f:
                f.write(part.tflite)
            log.info("wrote %s", path)
        module = nxp_sdk.load_converter(opts.neutron_converter_flavor)
        if module is None:
            _warn_no_converter(opts.neutron_converter_flavor)
            return PreprocessResult(processed_bytes=encode_payload(
                part.tflite, part.input_channels_last, part.output_channels_last))
        converted = nxp_sdk.convert(module, part.tflite, opts.target, opts.extra_flags)
        microcode, weights, kernels = nxp_sdk.extract_neutron_graph(converted)
        return PreprocessResult(processed_bytes=nxp_sdk.layout_payload(
            microcode, weights, kernels, part.input_channels_last, part.output_channels_last))
