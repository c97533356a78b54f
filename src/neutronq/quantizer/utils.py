"""The seeds' import path ``neutronq.quantizer.utils.calibrate_and_quantize``.

A re-export only: the flow lives in ``neutronq.ptq.flow``, above the quantizer. Nothing inside
neutronq imports this module (the import-layer test checks), so it adds no upward dependency.
"""

from neutronq.ptq.flow import calibrate_and_quantize, prepare_and_calibrate  # compatibility re-export

__all__ = ["calibrate_and_quantize", "prepare_and_calibrate"]
