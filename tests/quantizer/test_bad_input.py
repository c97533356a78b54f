"""Bad input to the quantizer and calibrate_and_quantize: clear errors, no deep crashes."""

import warnings

import pytest
import torch
import torch.nn as nn
from helpers import export, nodes

from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize
from neutronq.quantizer import UnquantizedOpWarning


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).relu()


EXAMPLE = (torch.randn(1, 3, 8, 8),)


def quantizer():
    return NeutronQuantizer(NeutronTargetSpec("imxrt700"))


def test_empty_calibration_inputs():
    with pytest.raises(ValueError, match="calibration_inputs is empty"):
        calibrate_and_quantize(export(Small(), EXAMPLE), [], quantizer())


def test_empty_generator():
    with pytest.raises(ValueError, match="empty"):
        calibrate_and_quantize(export(Small(), EXAMPLE), (x for x in []), quantizer())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_calibration_batch_is_named(bad):
    batches = [torch.randn(1, 3, 8, 8) for _ in range(3)]
    batches[2][0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match=r"batch 2 \(input 0\) contains (NaN|inf)"):
        calibrate_and_quantize(export(Small(), EXAMPLE), batches, quantizer())


def test_bare_tensor_counts_as_one_tuple(strict):
    batches = [torch.randn(1, 3, 8, 8), (torch.randn(1, 3, 8, 8),)]
    gm = calibrate_and_quantize(export(Small(), EXAMPLE, strict), batches, quantizer())
    assert nodes(gm, torch.ops.quantized_decomposed.quantize_per_tensor.default)


def test_graph_module_input_accepted():
    gm = calibrate_and_quantize(export(Small(), EXAMPLE).module(), [EXAMPLE], quantizer())
    assert isinstance(gm, torch.fx.GraphModule)


def test_unexported_model_is_a_clear_error():
    with pytest.raises(TypeError, match="torch.export.export"):
        calibrate_and_quantize(Small(), [EXAMPLE], quantizer())


def test_quantizer_needs_a_target_spec():
    with pytest.raises(TypeError, match="NeutronTargetSpec"):
        NeutronQuantizer("imxrt700")


def test_unknown_observer_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown activation observer 'fancy'"):
        NeutronQuantizer(NeutronTargetSpec("imxrt700"), activation_observer="fancy")


class WithUncoveredOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.sin(self.conv(x)) + 1.0


def test_op_without_rule_stays_float_with_one_warning(strict):
    ep = export(WithUncoveredOp(), EXAMPLE, strict)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gm = calibrate_and_quantize(ep, [EXAMPLE], quantizer())
    ours = [w for w in caught if issubclass(w.category, UnquantizedOpWarning)]
    assert len(ours) == 1 and "aten.sin.default" in str(ours[0].message)
    (sin,) = nodes(gm, torch.ops.aten.sin.default)
    assert sin.args[0].target == torch.ops.quantized_decomposed.dequantize_per_tensor.default
    assert sin.meta["val"].dtype == torch.float32  # computed in float on dequantized input
    out = gm(*EXAMPLE)  # nothing crashes and the result is finite
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.float64])
def test_calibration_inputs_of_another_dtype_are_named(dtype):
    """uint8 pixels died deep in torchao (histogram_cpu not implemented for 'Byte')."""
    batch = (torch.rand(1, 3, 8, 8) * 255).to(dtype)
    with pytest.raises(TypeError, match=rf"batch 0 \(input 0, x\) is {str(dtype)[6:]}; the model was exported "
                                        r"with float32 inputs"):
        calibrate_and_quantize(export(Small(), EXAMPLE), [batch], quantizer())


def test_a_bare_batch_instead_of_a_list_says_so():
    with pytest.raises(TypeError, match=r"one tensor of shape \[8, 3, 8, 8\]; give an iterable of input batches"):
        calibrate_and_quantize(export(Small(), EXAMPLE), torch.rand(8, 3, 8, 8), quantizer())


def test_samples_of_another_shape_or_type_are_named():
    with pytest.raises(ValueError, match=r"has shape \[3, 8, 8\]; the model was exported with \[1, 3, 8, 8\]"):
        calibrate_and_quantize(export(Small(), EXAMPLE), [torch.rand(3, 8, 8)], quantizer())
    import numpy as np

    with pytest.raises(TypeError, match=r"numpy.ndarray, not a torch.Tensor. Convert it with torch.from_numpy"):
        calibrate_and_quantize(export(Small(), EXAMPLE), [(np.zeros((1, 3, 8, 8), np.float32),)], quantizer())
    with pytest.raises(ValueError, match=r"holds 2 input\(s\); the model takes 1"):
        calibrate_and_quantize(export(Small(), EXAMPLE), [(torch.rand(1, 3, 8, 8),) * 2], quantizer())
