"""The Neutron int8 scheme's numbers, defined once for the quantizer, the graph passes and the
lowering.

Static int8, as NXP documents it for the eIQ Neutron flow (the seed texts) and as TFLite's int8
quantization specification fixes it for the converter's input:
  * activations: int8 asymmetric [-128, 127];
  * weights: int8 symmetric [-127, 127] (zero point 0), per tensor or per output channel;
  * bias: int32, scale = input scale x weight scale, zero point 0, range +-2^30 (the other half
    of int32 is the accumulator's headroom; see BIAS_QMAX);
  * LOGISTIC and SOFTMAX outputs: scale 1/256, zero point -128; TANH: scale 1/128, zero point 0
    (TFLite's int8 quantization spec; the int8 kernels require them);
  * relu, relu6 and relu_n1_to_1 fuse into conv and fully connected (TFLite's fused activations).
"""

from __future__ import annotations

import math

__all__ = [
    "ACT_QMIN",
    "ACT_QMAX",
    "WEIGHT_QMIN",
    "WEIGHT_QMAX",
    "BIAS_QMIN",
    "BIAS_QMAX",
    "HISTOGRAM_EPS",
    "BIAS_HEADROOM",
    "SIGMOID_SCALE",
    "SIGMOID_ZERO_POINT",
    "SOFTMAX_SCALE",
    "SOFTMAX_ZERO_POINT",
    "TANH_SCALE",
    "TANH_ZERO_POINT",
    "FUSED_ACTIVATION_RANGES",
    "CLAMP_KERNEL_RANGES",
]

ACT_QMIN, ACT_QMAX = -128, 127
WEIGHT_QMIN, WEIGHT_QMAX = -127, 127
# The int32 bias of a weighted op keeps within +-2^30, leaving the other half of int32 to the
# accumulator (the NPU's and TFLite's int32 sum of bias and products wraps on overflow).
BIAS_HEADROOM = 2**30
# The bias's quantization range: a bias too large for its scale saturates here, with its sign.
# Not +-(2^31 - 1): torchao quantizes a float32 bias in float32, where 2^31 - 1 rounds to 2^31,
# and the cast of a saturated positive bias to int32 wraps to -2^31. +-2^30 is exact in float32,
# and a saturated bias still leaves the accumulator its headroom, so the lowered program adds
# the same bias as the convert_pt2e model.
BIAS_QMIN, BIAS_QMAX = -BIAS_HEADROOM, BIAS_HEADROOM
# The smallest activation scale the observers give (torchao's eps): a constant input does not
# get a zero scale.
HISTOGRAM_EPS = 2**-12
# Fixed output parameters of the int8 kernels (TFLite's int8 quantization spec).
SIGMOID_SCALE, SIGMOID_ZERO_POINT = 1.0 / 256.0, -128
SOFTMAX_SCALE, SOFTMAX_ZERO_POINT = 1.0 / 256.0, -128
TANH_SCALE, TANH_ZERO_POINT = 1.0 / 128.0, 0
# Activations that conv / fully connected carry fused, by TFLite name, as their clamp range.
FUSED_ACTIVATION_RANGES = {
    "RELU": (0.0, math.inf),
    "RELU6": (0.0, 6.0),
    "RELU_N1_TO_1": (-1.0, 1.0),
}
# Clamp ranges with an int8 TFLite activation op of their own (the fused ones and RELU_0_TO_1);
# other ranges are MAXIMUM / MINIMUM with constants, which do not requantize.
CLAMP_KERNEL_RANGES = {**FUSED_ACTIVATION_RANGES, "RELU_0_TO_1": (0.0, 1.0)}
