"""Graph passes on ATen graphs, one per file; the file name says what the pass does, and
``pass_manager`` fixes their order per mode.

Before annotation (``NeutronQuantizer`` runs them inside ``prepare_pt2e`` / ``prepare_qat_pt2e``):
  * ``relax_batch_guard``: the exported batch size stops being a guard where nothing needs it.
  * ``scalars_to_constants``: scalars of add / sub / mul / rsub become constant tensors, division
    by a constant a multiplication.
  * ``fuse_batch_norm_for_qat``: conv / linear + BN train folded, quantized after the BN.
  * ``cross_layer_equalization``: conv pairs rescaled for per-tensor weights.
After ``convert_pt2e``:
  * ``fold_qat_batch_norm``: the QAT batch norms become float conv / linear biases.
  * ``quantize_fused_conv_bn_bias``: ``QuantizeFusedConvBnBiasAtenPass``, int32 conv biases.
"""
