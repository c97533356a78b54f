"""PT2E quantization for the eIQ Neutron NPU."""

from neutronq.quantizer.neutron_quantizer import NeutronQuantizer, UnquantizedOpWarning
from neutronq.quantizer.utils import calibrate_and_quantize

__all__ = ["NeutronQuantizer", "UnquantizedOpWarning", "calibrate_and_quantize"]
