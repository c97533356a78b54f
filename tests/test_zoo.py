"""The benchmark zoo (benchmarks/zoo.py) and a small run of its coverage benchmark."""

import pytest
import torch
import zoo

# parameter counts of the references: torchvision's mobilenet_v3_small / _large, and the MLPerf
# Tiny DS-CNN's trainable parameters as NXP's eIQ model zoo lists them (23 756)
REFERENCE_PARAMETERS = {"mobilenet-v3-small": 2_542_856, "mobilenet-v3-large": 5_483_032, "ds-cnn": 23_756}
OUTPUT_SHAPES = {
    "resnet8": (1, 10), "ds-cnn": (1, 12), "mobilenet-v1-0.25": (1, 2), "mobilenet-v3-small": (1, 1000),
    "mobilenet-v3-large": (1, 1000), "yolo-tiny": (1, 3 * (10 * 10 + 20 * 20), 85), "unet-small": (1, 2, 128, 128),
    "vit-small": (1, 10), "kws-1d": (1, 12),
}


@pytest.mark.parametrize("name", sorted(OUTPUT_SHAPES))
def test_random_weight_models_shapes_and_sizes(name):
    entry = zoo.ZOO[name]
    assert not entry.real_weights
    model = entry.build()
    data = entry.data(2, 3)
    assert data.calibration.shape[0] == 2 and data.evaluation.shape[0] == 3
    with torch.no_grad():
        assert tuple(model(data.calibration[:1]).shape) == OUTPUT_SHAPES[name]
    if name in REFERENCE_PARAMETERS:
        assert zoo.count_parameters(model) == REFERENCE_PARAMETERS[name]


def test_autoencoder_training_is_deterministic():
    a, b = zoo.train_autoencoder(epochs=1), zoo.train_autoencoder(epochs=1)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    data = zoo.ZOO["fc-autoencoder"].data(4, 6)
    assert data.labels is not None and data.evaluation.shape == (6, 500)


def test_auc():
    assert zoo.auc(torch.tensor([0.1, 0.2, 0.8, 0.9]), torch.tensor([0, 0, 1, 1])) == 1.0
    assert zoo.auc(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])) == 0.5
    assert zoo.auc(torch.tensor([0.9, 0.1, 0.2]), torch.tensor([0, 1, 1])) == 0.0


def test_reasons_group_without_node_names():
    import bench_coverage

    names = ["aten_add_tensor_12", "x"]
    reason = "its float input aten_add_tensor_12 feeds x (input (0.0088, -128), output (0.009, -128))"
    assert bench_coverage._strip_names(reason, names) == "its float input · feeds · (input (…), output (…))"


def test_coverage_row_of_a_small_model():
    import bench_coverage

    row = bench_coverage.measure(zoo.ZOO["ds-cnn"], quick=True, target="imxrt700")
    assert row["npu_mac_fraction"] == 1.0 and row["partitions"] == 1 and row["cpu_compute_ops"] == 0
    assert row["macs_total"] == pytest.approx(2.7e6, rel=0.05)
    assert row["payloads"] == 1 and not row["lowering_failures"]
    assert row["host_within_one_step"] >= 0.99
    assert row["audited_ops"] == 10 and not row["audit_unexplained"]  # 5 conv, 4 depthwise, 1 fully connected
    t = row["lowering_s"]
    assert t["partition"] > 0 and t["payloads"] > 0 and t["with_partitioner"] > t["partition"] + t["payloads"]
    md = bench_coverage.table([row])
    assert "| ds-cnn | random | 2.7 | 100.00 % | 1 | 0 |" in md


def test_vit_linears_and_attention_matmuls_run_on_the_npu():
    """The zoo's small ViT (patch conv, decomposed LayerNorms, attention, GELU): every linear and
    both attention matmuls are delegated, and the host run follows the int8 model. (The split of
    q / k / v once made the capability partitioner cut a float edge, which dropped whole
    partitions and left linears kept from decomposition undelegated: a crash in ExecuTorch.)"""
    from pipelines import quantize_and_lower, run_lowered

    from neutronq.metrics import sqnr_db

    entry = zoo.ZOO["vit-small"]
    data = entry.data(4, 2)
    lowered = quantize_and_lower(entry.build().eval(), (data.calibration[:1],),
                                 calibration=[(c[None],) for c in data.calibration])
    cpu = sorted({c.op for c in lowered.partitioner.cpu_ops})
    for op in ("aten.linear.default", "aten.addmm.default", "aten.mm.default", "aten.bmm.default",
               "aten.convolution.default", "aten._softmax.default"):
        assert op not in cpu, [c for c in lowered.partitioner.cpu_ops if c.op == op]
    x = data.evaluation[:1]
    with torch.no_grad():
        expected = lowered.converted(x)
    (got,) = run_lowered(lowered.edge, (x,))
    assert sqnr_db(expected, got) > 20.0
