"""The quantization flow and its steps after calibration, above the quantizer.

    flow.py            calibrate_and_quantize (PTQ and QAT), prepare_and_calibrate
    samples.py         calibration samples as input tuples, checked
    observed.py        the calibrated model read as its int8 self (ObserverRounding, fake_quantize)
    activation_choice.py  activation ranges chosen on held-out samples (activation_observer="auto")
    adaround.py        adaptive rounding of weights (AdaRound)
    bias_correction.py empirical bias correction
    distill.py         distillation of the calibrated int8 model towards its float self
    error_budget.py    int8 error from weights vs activations
    distributed.py     QAT and PTQ calibration over several processes (torch.distributed; not
                       imported here: ``from neutronq.ptq import distributed``)
    presets.py         the recommended preset (NeutronQuantizer options)

``NeutronQuantizer`` carries which steps to run (``quantizer.steps``); ``prepare_and_calibrate``
runs them after calibration, in the order above (the choice of activation ranges, AdaRound, bias
correction, distillation; ``heldout.py`` guards them with held-out samples).
"""

from neutronq.ptq.activation_choice import choose_activation_ranges
from neutronq.ptq.adaround import adaround_weights
from neutronq.ptq.bias_correction import correct_biases
from neutronq.ptq.distill import distill
from neutronq.ptq.error_budget import ErrorBudget, error_budget
from neutronq.ptq.flow import calibrate_and_quantize, prepare_and_calibrate
from neutronq.ptq.presets import recommended, recommended_options

__all__ = [
    "calibrate_and_quantize",
    "prepare_and_calibrate",
    "choose_activation_ranges",
    "adaround_weights",
    "correct_biases",
    "distill",
    "error_budget",
    "ErrorBudget",
    "recommended",
    "recommended_options",
]
