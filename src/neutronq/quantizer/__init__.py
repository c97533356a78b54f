"""PT2E quantization for the eIQ Neutron NPU: the quantizer annotates, nothing more.

    neutron_quantizer.py  NeutronQuantizer (torchao PT2E Quantizer)
    rules.py              one declarative entry per op family
    specs.py              the int8 scheme as quantization specs (PTQ observers, QAT fake-quantize)
    observers.py          percentile and MSE observers
    overrides.py          per-module / per-op scheme changes
    steps.py              the post-calibration steps a quantizer asks for (values; run by neutronq.ptq)
    qat.py                QAT units: the prepare-function check, QATSchedule, freeze_bn_stats
    utils.py              the seed's import path of calibrate_and_quantize (a re-export)
"""

from neutronq.quantizer.neutron_quantizer import NeutronQuantizer, UnquantizedOpWarning

__all__ = ["NeutronQuantizer", "UnquantizedOpWarning", "calibrate_and_quantize"]


def __getattr__(name: str):
    # the seed's flow function lives above the quantizer (neutronq.ptq); loaded on first use so
    # that importing the quantizer never imports the layer above it
    if name == "calibrate_and_quantize":
        import importlib

        return importlib.import_module("neutronq.ptq.flow").calibrate_and_quantize
    raise AttributeError(f"module 'neutronq.quantizer' has no attribute {name!r}")
