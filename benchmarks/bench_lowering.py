"""EfficientNet-Lite0 lowered for the Neutron NPU: delegation, payload size, and agreement of the
payloads (LiteRT reference kernels) with the convert_pt2e model on the benchmark image set.

    .venv/bin/python benchmarks/bench_lowering.py [--evaluation 500] [--modes per_tensor per_channel]

Times are measured, never asserted; compare them only within one run (the machines are shared).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from executorch.exir import to_edge_transform_and_lower

from neutronq import (
    NeutronPartitioner,
    NeutronQuantizer,
    NeutronTargetSpec,
    calibrate_and_quantize,
    generate_neutron_compile_spec,
    run_on_host,
)
from neutronq.data.models import efficientnet_lite0
from neutronq.data.photos import benchmark_split
from neutronq.lowering.payload import decode_payload, delegate_payloads, quantize_inputs
from neutronq.lowering.rounding_audit import audit_payload


def weight_bytes(graph_module) -> int:
    """int8 weights + int32 biases of a converted model."""
    total = 0
    for _, t in list(graph_module.named_buffers()) + list(graph_module.named_parameters()):
        if t.dtype in (torch.int8, torch.int32):
            total += t.numel() * t.element_size()
    return total


def output_step(edge) -> float:
    out = next(n for n in edge.exported_program().graph.nodes if n.op == "output")
    return float(out.args[0][0].args[1])


def audit(edge, images) -> list:
    """Each delegated conv/add/mean/FC against exact rounding of its own int8 inputs."""
    audits = []
    for raw in delegate_payloads(edge):
        payload = decode_payload(raw)
        if len(payload.input_channels_last) != 1:
            continue  # EfficientNet's single delegate has one input
        audits += audit_payload(payload, [quantize_inputs(payload, [x[None].numpy()]) for x in images])
    return audits


def run(mode: str, calibration, evaluation) -> dict:
    model = efficientnet_lite0()
    example = (calibration[:1],)
    t0 = time.perf_counter()
    quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), per_channel=(mode == "per_channel"))
    converted = calibrate_and_quantize(torch.export.export(model, example), [(c[None],) for c in calibration],
                                       quantizer)
    t1 = time.perf_counter()
    partitioner = NeutronPartitioner(compile_spec=generate_neutron_compile_spec("imxrt700"))
    edge = to_edge_transform_and_lower(torch.export.export(converted, example), partitioner=[partitioner])
    t2 = time.perf_counter()
    payload_bytes = sum(len(p) for p in delegate_payloads(edge))
    weights = weight_bytes(converted)
    step = output_step(edge)
    top1 = within = total = 0
    t_ref = t_npu = 0.0
    with torch.no_grad():
        for i in range(len(evaluation)):
            x = (evaluation[i : i + 1],)
            a = time.perf_counter()
            ref = converted(*x)
            b = time.perf_counter()
            got = run_on_host(edge, *x)
            c = time.perf_counter()
            t_ref += b - a
            t_npu += c - b
            top1 += int(ref.argmax() == got.argmax())
            within += int(((ref - got).abs() <= step * 1.001).sum())
            total += ref.numel()
    cpu_compute = [c for c in partitioner.cpu_ops if "quantize" not in c.op]
    audits = audit(edge, evaluation[:5])
    return {
        "mode": mode,
        "evaluation_images": len(evaluation),
        "delegates": len(partitioner.report.partitions),
        "cpu_compute_ops": [(c.node, c.op, c.reason) for c in cpu_compute],
        "npu_mac_fraction": partitioner.report.npu_mac_fraction,
        "macs_total": partitioner.report.macs_total,
        "payload_bytes": payload_bytes,
        "weight_bytes": weights,
        "payload_over_weights": payload_bytes / weights,
        "top1_agreement": top1 / len(evaluation),
        "logits_within_one_step": within / total,
        "audited_ops": len(audits),
        "audit_unexplained_ops": [a.name for a in audits if not a.explained],
        "audit_mean_mismatch_rate": sum(a.mismatch_rate for a in audits) / max(len(audits), 1),
        "audit_worst": max(((a.mismatch_rate, a.op, a.name) for a in audits), default=None),
        "quantize_s": t1 - t0,
        "lower_s": t2 - t1,
        "litert_over_pt2e_time_per_image": t_npu / max(t_ref, 1e-9),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evaluation", type=int, default=500)
    ap.add_argument("--modes", nargs="+", default=["per_tensor", "per_channel"])
    args = ap.parse_args()
    calibration, evaluation = benchmark_split(evaluation=args.evaluation)
    for mode in args.modes:
        print(json.dumps(run(mode, calibration, evaluation), indent=1), flush=True)


if __name__ == "__main__":
    main()
