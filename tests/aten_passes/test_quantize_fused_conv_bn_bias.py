"""QuantizeFusedConvBnBiasAtenPass: int32 biases for convs whose bias is float or missing."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from helpers import Q, quantize
from torch.export import ExportedProgram
from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

import neutronq
from neutronq import NeutronQuantizer, NeutronTargetSpec, QuantizeFusedConvBnBiasAtenPass
from neutronq.aten_passes.fuse_batch_norm_for_qat import qat_batch_norm

aten = torch.ops.aten
BIAS_RANGE = (-(2**30), 2**30)


def _ops(gm, targets):
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target in targets]


def _bias(op):
    return op.args[2] if len(op.args) > 2 else None


def _check_int32_bias(gm, op):
    b = _bias(op)
    assert b is not None and b.target == Q.dequantize_per_tensor.default, op.format_node()
    scale, zp, qmin, qmax, dtype = b.args[1:6]
    assert (zp, (qmin, qmax), dtype) == (0, BIAS_RANGE, torch.int32)
    x_scale, w_scale = float(op.args[0].args[1]), float(op.args[1].args[1])
    assert scale == pytest.approx(x_scale * w_scale, rel=1e-6)
    assert getattr(gm, b.args[0].target).dtype == torch.int32


def test_public_name_resolves():
    from neutronq.aten_passes.quantize_fused_conv_bn_bias import QuantizeFusedConvBnBiasAtenPass as P

    assert neutronq.QuantizeFusedConvBnBiasAtenPass is P


@pytest.mark.parametrize("default_zero_bias", [True, False])
def test_biasless_conv_without_bn(default_zero_bias, strict):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU())
    _, converted, cal = quantize(model, (torch.randn(1, 3, 8, 8),), strict)
    with torch.no_grad():
        before = converted(*cal[0])
    result = QuantizeFusedConvBnBiasAtenPass(default_zero_bias=default_zero_bias)(converted)
    gm = result.graph_module
    (conv,) = _ops(gm, (aten.conv2d.default,))
    if default_zero_bias:
        _check_int32_bias(gm, conv)
        assert not getattr(gm, _bias(conv).args[0].target).any()  # a zero bias
        assert result.modified
    else:
        assert _bias(conv) is None and not result.modified
    with torch.no_grad():
        torch.testing.assert_close(gm(*cal[0]), before)


def test_float_bias_gets_quantized(strict):
    """The shape torchao's own QAT fold leaves: a float bias on a quantized conv."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True))
    _, converted, cal = quantize(model, (torch.randn(1, 3, 8, 8),), strict)
    (conv,) = _ops(converted, (aten.conv2d.default,))
    float_bias = torch.randn(4) * 0.1
    converted.register_buffer("float_bias", float_bias)
    with converted.graph.inserting_before(conv):
        attr = converted.graph.get_attr("float_bias")
    conv.args = (conv.args[0], conv.args[1], attr) + tuple(conv.args[3:])
    converted.graph.eliminate_dead_code()
    converted.recompile()
    with torch.no_grad():
        before = converted(*cal[0])
    gm = QuantizeFusedConvBnBiasAtenPass()(converted).graph_module
    (conv,) = _ops(gm, (aten.conv2d.default,))
    _check_int32_bias(gm, conv)
    q = getattr(gm, _bias(conv).args[0].target)
    torch.testing.assert_close(q.float() * _bias(conv).args[1], float_bias, atol=_bias(conv).args[1], rtol=0)
    with torch.no_grad():
        out = gm(*cal[0])
    out_scale = next(n for n in gm.graph.nodes if n.op == "output").args[0][0].args[1]
    assert (out - before).abs().max() <= out_scale * 1.001


def test_already_int32_bias_is_left_alone(strict):
    _, converted, _ = quantize(nn.Sequential(nn.Conv2d(3, 4, 3)), (torch.randn(1, 3, 8, 8),), strict)
    code = converted.code
    result = QuantizeFusedConvBnBiasAtenPass()(converted)
    assert not result.modified and result.graph_module.code == code


def test_float_conv_is_left_alone():
    gm = torch.export.export(nn.Conv2d(3, 4, 3, bias=False), (torch.randn(1, 3, 8, 8),)).module()
    assert not QuantizeFusedConvBnBiasAtenPass()(gm).modified


def _qat_converted(strict=False):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU())
    gm = torch.export.export(model.eval(), (torch.randn(1, 3, 8, 8),), strict=strict).module()
    prepared = move_exported_model_to_train(prepare_qat_pt2e(gm, NeutronQuantizer(NeutronTargetSpec("imxrt700"), is_qat=True)))
    with torch.no_grad():
        prepared(torch.randn(4, 3, 8, 8))
    return convert_pt2e(move_exported_model_to_eval(prepared))


def test_qat_batch_norm_is_folded_then_quantized(strict):
    converted = _qat_converted(strict)
    assert _ops(converted, (qat_batch_norm,))
    gm = QuantizeFusedConvBnBiasAtenPass()(converted).graph_module
    assert not _ops(gm, (qat_batch_norm,))
    (conv,) = _ops(gm, (aten.conv2d.default,))
    _check_int32_bias(gm, conv)


def test_exported_program_input():
    converted = _qat_converted()
    program = torch.export.export(converted, (torch.randn(1, 3, 8, 8),))
    result = QuantizeFusedConvBnBiasAtenPass()(program)
    assert isinstance(result.exported_program, ExportedProgram)
    (conv,) = _ops(result.graph_module, (aten.conv2d.default,))
    _check_int32_bias(result.graph_module, conv)
    conv_ep = _ops(result.exported_program.graph_module, (aten.conv2d.default,))
    assert conv_ep and _bias(conv_ep[0]).target == Q.dequantize_per_tensor.default


def test_rejects_other_inputs():
    with pytest.raises(TypeError, match="GraphModule"):
        QuantizeFusedConvBnBiasAtenPass()(nn.Conv2d(1, 1, 1))
