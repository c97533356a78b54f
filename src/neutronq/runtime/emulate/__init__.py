"""Bit-exact, batched emulation of LiteRT's int8 reference kernels (``BUILTIN_REF``) in PyTorch.

    from neutronq.runtime.emulate import TFLiteModule, emulate_payload

    module = TFLiteModule(tflite_bytes)          # int8 in / out, TFLite layout, any batch N
    y = module(x)

    module = emulate_payload(payload)            # a neutronq payload: PyTorch layout, as run_payload
    y = module(x_nchw_int8)

Every op is one registration in ``OPS`` (TFLite builtin name -> builder), one module per op
family: ``conv`` (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV,
BATCH_MATMUL), ``elementwise``
(ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE, PRELU, QUANTIZE, RELU, RELU6,
RELU_N1_TO_1, RELU_0_TO_1, ABS, NEG, LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, EXP, LOG, RSQRT,
SQRT, GELU), ``pool`` (AVERAGE_POOL_2D, MAX_POOL_2D), ``reduce`` (MEAN, SUM, REDUCE_MAX, REDUCE_MIN),
``movement`` (RESHAPE, SQUEEZE, EXPAND_DIMS, TRANSPOSE, STRIDED_SLICE, SLICE, PAD, PADV2,
MIRROR_PAD, SPLIT, SPLIT_V, CONCATENATION, DEPTH_TO_SPACE, SPACE_TO_DEPTH), ``resize`` (RESIZE_BILINEAR,
RESIZE_NEAREST_NEIGHBOR), ``softmax``. Adding an op is a builder registered with
``@register("NAME")`` that returns an ``EmulatedOp``. The rounding facts each module reproduces
are in its docstring; ``fixedpoint`` holds TFLite's and gemmlowp's integer primitives.
"""

from neutronq.runtime.emulate.base import OPS, EmulatedOp, EmulationError, OpInfo, TensorInfo, register
from neutronq.runtime.emulate import conv, elementwise, movement, pool, reduce, resize, softmax  # noqa: F401  (registrations)
from neutronq.runtime.emulate.payload import PayloadModule, emulate_payload
from neutronq.runtime.emulate.tflite_module import TFLiteModule, parse_tflite

__all__ = [
    "TFLiteModule",
    "PayloadModule",
    "emulate_payload",
    "parse_tflite",
    "EmulationError",
    "EmulatedOp",
    "OpInfo",
    "TensorInfo",
    "OPS",
    "register",
]
