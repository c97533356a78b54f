"""The order of the graph passes, one list per mode: a reader sees every transformation here.

Before annotation (``NeutronQuantizer.transform_for_annotation``, inside torchao's
``prepare_pt2e`` / ``prepare_qat_pt2e``):
  1. ``RelaxBatchGuardPass``: the exported batch size stops being a guard where nothing needs it
     (both flows: a model exported with batch 1 trains and evaluates batches);
  2. ``ScalarsToConstantsPass`` (both flows): the Python scalars of add / sub / mul / rsub become
     constant tensors the rules quantize; division by a constant becomes a multiplication;
  3. ``FuseBatchNormForQATPass`` (QAT only): conv / linear + BN train folded, quantized after BN;
     ``BatchNormToDepthwiseConvPass`` (PTQ only): a batch norm that torchao did not fold into a
     conv / linear becomes a depthwise 1x1 conv (the NPU runs it);
  4. ``CrossLayerEqualization`` (``equalization=True``): conv -> activation -> conv chains
     rescaled so per-tensor weight scales fit every channel;
  5. ``DecomposeLayerNormPass`` (``decompose_layer_norm=True``, the default): LayerNorm as
     mean / sub / mul / linear / add / rsqrt / mul / mul / add, each piece quantized for the NPU.
After ``convert_pt2e`` (QAT; ``calibrate_and_quantize`` runs it, the QAT guide calls it itself):
  1. ``QuantizeFusedConvBnBiasAtenPass``: QAT batch norms folded, int32 biases for every conv.
"""

from __future__ import annotations

from neutronq.aten_passes.batch_norm_to_depthwise_conv import BatchNormToDepthwiseConvPass
from neutronq.aten_passes.cross_layer_equalization import CrossLayerEqualization
from neutronq.aten_passes.decompose_layer_norm import DecomposeLayerNormPass
from neutronq.aten_passes.fuse_batch_norm_for_qat import FuseBatchNormForQATPass
from neutronq.aten_passes.quantize_fused_conv_bn_bias import QuantizeFusedConvBnBiasAtenPass
from neutronq.aten_passes.relax_batch_guard import RelaxBatchGuardPass
from neutronq.aten_passes.scalars_to_constants import ScalarsToConstantsPass

__all__ = ["passes_before_annotation", "passes_after_convert"]


def passes_before_annotation(is_qat: bool, equalization: bool = False, decompose_layer_norm: bool = True) -> list:
    """The graph passes run before annotation, in order."""
    passes: list = [RelaxBatchGuardPass(), ScalarsToConstantsPass()]
    if is_qat:
        passes.append(FuseBatchNormForQATPass())
    else:
        passes.append(BatchNormToDepthwiseConvPass())
    if equalization:
        passes.append(CrossLayerEqualization())
    if decompose_layer_norm:
        passes.append(DecomposeLayerNormPass())
    return passes


def passes_after_convert(is_qat: bool) -> list:
    """The graph passes ``calibrate_and_quantize`` runs on the converted model, in order."""
    return [QuantizeFusedConvBnBiasAtenPass(default_zero_bias=True)] if is_qat else []
