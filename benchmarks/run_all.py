"""Every neutronq benchmark in one command: a JSON file and a markdown table.

    .venv/bin/python benchmarks/run_all.py [--out benchmarks/results] [--quick]

Sections (each also callable alone, see the functions below):
  1. PTQ time by phase (export, prepare, calibrate, convert) and fidelity on EfficientNet-Lite0,
     per-tensor and per-channel weights, on the benchmark image set (100 calibration crops,
     500 evaluation crops; benchmarks/bench_quantize.py);
  2. QAT against PTQ on Fashion-MNIST (neutronq.data.fashion_mnist.compare_qat_ptq);
  3. NPU coverage by MACs for imxrt700: EfficientNet-Lite0 (ImageNet weights) and torchvision's
     mobilenet_v2, resnet18 and mobilenet_v3_small (random weights: coverage does not depend on
     them), with the most common reasons ops stay on the CPU;
  4. host simulation speed on EfficientNet-Lite0: the lowered .pte simulated by neutronq.runtime,
     against LiteRT running the payload's TFLite directly (reference kernels) and against the
     float and the convert_pt2e PyTorch models, as ratios of per-sample medians taken in turn in
     this one process (machine load hits them alike).

Needs the `bench` extra for torchvision (pip install -e '.[bench]'). Nothing here asserts a time.
``--quick`` shrinks every section (fewer crops and images, one Fashion-MNIST epoch) for a smoke run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _log(msg: str) -> None:
    print(f"[run_all {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------
# 1. PTQ phases and fidelity
def ptq_phases(evaluation: int = 500) -> list[dict]:
    import bench_quantize

    rows = []
    for per_channel in (False, True):
        _log(f"PTQ EfficientNet-Lite0, {'per-channel' if per_channel else 'per-tensor'}")
        rows.append(bench_quantize.run(per_channel=per_channel, evaluation=evaluation))
    return rows


# ------------------------------------------------------------------------------------------
# 2. QAT vs PTQ
def qat_vs_ptq(quick: bool = False) -> dict:
    from qat_vs_ptq import compare_qat_ptq

    _log("QAT vs PTQ on Fashion-MNIST")
    if quick:
        return compare_qat_ptq(n_train=4000, n_test=1000, float_epochs=1, finetune_epochs=1, log=_log)
    return compare_qat_ptq(n_train=20000, n_test=10000, float_epochs=3, finetune_epochs=1, log=_log)


# ------------------------------------------------------------------------------------------
# 3. NPU coverage
def _import_torchvision():
    for name in ("nms", "qnms"):
        try:
            torch.library.define(f"torchvision::{name}",
                                 "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass  # already defined in this process
    import torchvision

    return torchvision


def _lower(model: torch.nn.Module, calibration: torch.Tensor, target: str = "imxrt700"):
    """PTQ on ``calibration`` [N, ...] at batch 1, then lower with NeutronPartitioner."""
    from executorch.exir import to_edge_transform_and_lower

    from neutronq import (
        NeutronPartitioner,
        NeutronQuantizer,
        NeutronTargetSpec,
        calibrate_and_quantize,
        generate_neutron_compile_spec,
    )

    example = (calibration[:1],)
    quantized = calibrate_and_quantize(torch.export.export(model.eval(), example),
                                       [(c[None],) for c in calibration],
                                       NeutronQuantizer(NeutronTargetSpec(target)))
    partitioner = NeutronPartitioner(generate_neutron_compile_spec(target))
    edge = to_edge_transform_and_lower(torch.export.export(quantized, example), partitioner=[partitioner])
    return quantized, edge, partitioner


def coverage_models(calibration: int = 8):
    """(name, model, calibration inputs) of the coverage section."""
    from neutronq.data.models import efficientnet_lite0
    from neutronq.data.photos import benchmark_split

    crops, _ = benchmark_split(calibration, 1)
    yield "efficientnet-lite0", efficientnet_lite0(), crops
    tv = _import_torchvision()
    imagenet = (crops * 128 + 127) / 255  # back to [0, 1], then torchvision's normalisation
    imagenet = (imagenet - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for name in ("mobilenet_v2", "resnet18", "mobilenet_v3_small"):
        torch.manual_seed(0)
        yield name, getattr(tv.models, name)(weights=None), imagenet


def coverage(calibration: int = 8) -> tuple[list[dict], dict]:
    """NPU coverage rows, and the lowered EfficientNet-Lite0 (for the speed section)."""
    rows, kept = [], {}
    for name, model, crops in coverage_models(calibration):
        _log(f"coverage: {name}")
        start = time.perf_counter()
        try:
            quantized, edge, partitioner = _lower(model, crops)
        except Exception as e:  # one model's failure must not stop the others
            rows.append({"model": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"})
            _log(f"coverage: {name} failed: {rows[-1]['error']}")
            continue
        report = partitioner.report
        reasons = Counter(op.reason for op in report.cpu_ops
                          if "quantize" not in op.op and "dequantize" not in op.op)
        compute_cpu = [op for op in report.cpu_ops if "quantize" not in op.op]
        rows.append({
            "model": name,
            "weights": "ImageNet" if name == "efficientnet-lite0" else "random",
            "macs_total": report.macs_total,
            "macs_npu": report.macs_npu,
            "npu_mac_fraction": report.npu_mac_fraction,
            "partitions": len(report.partitions),
            "cpu_compute_ops": len(compute_cpu),
            "cpu_op_types": dict(Counter(op.op for op in compute_cpu).most_common()),
            "top_cpu_reasons": [{"reason": r, "ops": c} for r, c in reasons.most_common(3)],
            "quantize_and_lower_s": time.perf_counter() - start,
        })
        if name == "efficientnet-lite0":
            kept = {"model": model, "quantized": quantized, "edge": edge}
    return rows, kept


# ------------------------------------------------------------------------------------------
# 4. host simulation speed
def _payload_tflites(edge) -> list[bytes]:
    from executorch.exir.delegate import executorch_call_delegate

    from neutronq.lowering.payload import decode_payload

    gm = edge.exported_program().graph_module
    return [decode_payload(getattr(gm, n.args[0].target).processed_bytes).tflite
            for n in gm.graph.nodes if n.op == "call_function" and n.target is executorch_call_delegate]


def simulation_speed(model, quantized, edge, samples: int = 10) -> dict:
    import executorch.kernels.quantized  # noqa: F401
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from neutronq.data.photos import benchmark_split
    from neutronq.runtime import load_program

    _log(f"host simulation speed, {samples} samples")
    _, images = benchmark_split(1, samples)
    pte = load_program(edge.to_executorch().buffer)
    tflites = _payload_tflites(edge)
    interp = Interpreter(model_content=max(tflites, key=len),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    (inp,), outs = interp.get_input_details(), interp.get_output_details()
    scale, zero_point = inp["quantization"]

    def litert(x):
        nhwc = x.numpy().transpose(0, 2, 3, 1)
        interp.set_tensor(inp["index"], np.clip(np.round(nhwc / scale) + zero_point, -128, 127).astype(np.int8))
        interp.invoke()
        return interp.get_tensor(outs[0]["index"])

    runners = {"simulated .pte": pte, "LiteRT on the payload TFLite": litert, "float PyTorch": model,
               "convert_pt2e PyTorch": quantized}
    times = {k: [] for k in runners}
    with torch.no_grad():
        for run in runners.values():
            run(images[:1])  # warm-up
        for i in range(samples):
            x = images[i : i + 1]
            for name, run in runners.items():
                start = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in times.items()}
    sim = median["simulated .pte"]
    return {
        "samples": samples,
        "payloads": len(tflites),
        "median_ms": {k: 1000 * v for k, v in median.items()},
        "simulated_over": {k: sim / v for k, v in median.items() if k != "simulated .pte"},
    }


# ------------------------------------------------------------------------------------------
def _f(v, digits=2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else str(v)
    return str(v)


def markdown(results: dict) -> str:
    lines = [f"# neutronq benchmarks ({results['created']}, {results['machine']})", ""]
    if "ptq" in results:
        lines += ["## PTQ on EfficientNet-Lite0 (time by phase, fidelity against float)", "",
                  "| weights | export s | prepare s | calibrate s | convert s | calibration / evaluation crops "
                  "| top-1 agreement | logits SQNR dB |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in results["ptq"]:
            lines.append(f"| {r['weights']} | {_f(r['export_s'], 1)} | {_f(r['prepare_s'], 1)} | "
                         f"{_f(r['calibrate_s'], 1)} | {_f(r['convert_s'], 1)} | {r['calibration_images']} / "
                         f"{r['evaluation_images']} | {100 * r['top1_agreement']:.1f} % | {_f(r['logits_sqnr_db'])} |")
        lines.append("")
    if "qat_vs_ptq" in results:
        r = results["qat_vs_ptq"]
        lines += ["## QAT against PTQ on Fashion-MNIST (test accuracy, %)", "",
                  "| train / test images | float | PTQ int8 | QAT int8 | QAT fake-quant | float fine-tuned (control) |",
                  "|---|---|---|---|---|---|",
                  f"| {r.get('n_train')} / {r.get('n_test')} | {_f(r.get('float'))} | {_f(r.get('ptq'))} | "
                  f"{_f(r.get('qat'))} | {_f(r.get('qat_fake_quant'))} | {_f(r.get('float_control'))} |", ""]
    if "coverage" in results:
        lines += ["## NPU coverage (imxrt700)", "",
                  "| model | weights | MMACs | on the NPU | partitions | compute ops on the CPU | main CPU reason |",
                  "|---|---|---|---|---|---|---|"]
        for r in results["coverage"]:
            if "error" in r:
                lines.append(f"| {r['model']} | | | failed: {r['error'].replace('|', '/')} | | | |")
                continue
            reason = r["top_cpu_reasons"][0]["reason"] if r["top_cpu_reasons"] else "-"
            lines.append(f"| {r['model']} | {r['weights']} | {r['macs_total'] / 1e6:.1f} | "
                         f"{100 * r['npu_mac_fraction']:.2f} % | {r['partitions']} | {r['cpu_compute_ops']} | "
                         f"{reason.replace('|', '/')} |")
        lines.append("")
    if "simulation_speed" in results:
        s = results["simulation_speed"]
        lines += [f"## Host simulation speed, EfficientNet-Lite0 ({s['samples']} crops, median per sample)", "",
                  "| runner | ms / sample | simulated .pte time / this |", "|---|---|---|"]
        for name, ms in s["median_ms"].items():
            ratio = s["simulated_over"].get(name)
            lines.append(f"| {name} | {ms:.1f} | {'1.00' if ratio is None else f'{ratio:.2f}'} |")
        lines.append("")
    lines.append("Section times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in results["section_s"].items()))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for run_all.json and run_all.md")
    parser.add_argument("--quick", action="store_true", help="small sizes everywhere (a smoke run)")
    parser.add_argument("--only", nargs="*", choices=["ptq", "qat", "coverage", "speed"],
                        help="run only these sections (speed needs coverage)")
    args = parser.parse_args(argv)
    sections = set(args.only or ["ptq", "qat", "coverage", "speed"])
    if "speed" in sections:
        sections.add("coverage")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "quick": args.quick,
        "section_s": {},
    }

    def timed(name, fn, *a, **kw):
        start = time.perf_counter()
        value = fn(*a, **kw)
        results["section_s"][name] = time.perf_counter() - start
        _write(results, out)
        return value

    if "ptq" in sections:
        results["ptq"] = timed("ptq", ptq_phases, 100 if args.quick else 500)
    if "qat" in sections:
        results["qat_vs_ptq"] = timed("qat", qat_vs_ptq, args.quick)
    if "coverage" in sections:
        rows, kept = timed("coverage", coverage, 4 if args.quick else 8)
        results["coverage"] = rows
        _write(results, out)
        if "speed" in sections and kept:
            results["simulation_speed"] = timed("speed", simulation_speed, kept["model"], kept["quantized"],
                                                kept["edge"], 3 if args.quick else 10)
    _write(results, out)
    print(markdown(results))
    print(f"wrote {out / 'run_all.json'} and {out / 'run_all.md'}")
    return 0


def _write(results: dict, out: Path) -> None:
    (out / "run_all.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "run_all.md").write_text(markdown(results))


if __name__ == "__main__":
    sys.exit(main())
