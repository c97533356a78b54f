"""neutronq: open eIQ Neutron NPU quantization (PT2E) and ExecuTorch lowering.

The most used names are importable from here; they load on first use, so ``import neutronq``
stays cheap (executorch and LiteRT load only when lowering or simulating).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "NeutronTargetSpec": "neutronq.backend.neutron_target_spec",
    "NeutronQuantizer": "neutronq.quantizer.neutron_quantizer",
    "calibrate_and_quantize": "neutronq.ptq.flow",
    "prepare_and_calibrate": "neutronq.ptq.flow",
    "error_budget": "neutronq.ptq.error_budget",
    "recommended": "neutronq.ptq.presets",
    "QuantizeFusedConvBnBiasAtenPass": "neutronq.aten_passes.quantize_fused_conv_bn_bias",
    "QATSchedule": "neutronq.quantizer.qat",
    "NeutronPartitioner": "neutronq.neutron_partitioner",
    "generate_neutron_compile_spec": "neutronq.nxp_backend",
    "simulate": "neutronq.runtime",
    "run_on_host": "neutronq.runtime",
    "load_program": "neutronq.runtime",
    "evaluate": "neutronq.runtime",
    "emulate": "neutronq.runtime",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'neutronq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
