"""Graph passes on ATen graphs, one per file; the file name says what the pass does.

QAT and batch size (run by ``NeutronQuantizer`` before annotation, see ``quantizer/qat.py``):
  * ``relax_batch_guard``: the exported batch size stops being a guard where nothing needs it.
  * ``fuse_batch_norm_for_qat``: conv / linear + BN train folded, quantized after the BN.
After ``convert_pt2e``:
  * ``fold_qat_batch_norm``: the QAT batch norms become float conv / linear biases.
  * ``quantize_fused_conv_bn_bias``: ``QuantizeFusedConvBnBiasAtenPass``, int32 conv biases.
"""
