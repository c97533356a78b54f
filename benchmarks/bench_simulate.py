"""Host simulation throughput: EfficientNet-Lite0 lowered for imxrt700, run three ways side by side.

    .venv/bin/python benchmarks/bench_simulate.py [--samples 20] [--calibration 100] [--full]
    .venv/bin/python benchmarks/bench_simulate.py --pte model.pte --quantized q.pt2   # reuse artefacts

Without ``--pte`` it quantizes (per channel) and lowers EfficientNet-Lite0 first and can save
both with ``--save DIR`` (``efficientnet_lite0.pte``, ``quantized.pt2``: the convert_pt2e model,
re-exported) for later runs.

1. ``neutronq.runtime`` on the ``.pte`` (plan executor; the Neutron payload in LiteRT with the
   reference kernels, input quantize / output dequantize on the CPU), and on the in-memory edge
   program;
2. LiteRT running the model's int8 TFLite directly (the delegate payload's TFLite: with one
   partition it is the whole model but its input quantize and output dequantize), reference
   kernels (``BUILTIN_REF``), int8 in and out;
3. the float PyTorch model.

The three run in turn on each sample in one process, so machine load hits them alike; figures
are medians per sample and ratios of those medians. ``--full`` also evaluates the simulated
program on all 500 evaluation crops (top-1 agreement and SQNR against the float and int8 models).
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _payload_tflites(pte: bytes) -> list[bytes]:
    """The TFLite model of every Neutron delegate in the .pte."""
    from neutronq.lowering.payload import decode_payload
    from neutronq.runtime import read_pte

    program = read_pte(pte).program
    return [decode_payload(program.backend_delegate_data[d.processed.index].data).tflite
            for plan in program.execution_plan for d in plan.delegates]


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20, help="evaluation crops timed (default 20)")
    parser.add_argument("--calibration", type=int, default=100, help="calibration crops (default 100)")
    parser.add_argument("--full", action="store_true", help="also evaluate on all 500 evaluation crops")
    parser.add_argument("--pte", help="a lowered EfficientNet-Lite0 .pte to time (skips quantizing)")
    parser.add_argument("--quantized", help="its convert_pt2e model saved with torch.export.save (for --full)")
    parser.add_argument("--save", help="directory to save the .pte and the quantized model to")
    args = parser.parse_args()

    import executorch.kernels.quantized  # noqa: F401
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from executorch.exir import to_edge_transform_and_lower

    from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize
    from neutronq.data.models import efficientnet_lite0
    from neutronq.data.photos import benchmark_split
    from neutronq.neutron_partitioner import NeutronPartitioner
    from neutronq.nxp_backend import generate_neutron_compile_spec
    from neutronq.runtime import evaluate, load_program

    torch.manual_seed(0)
    calibration, evaluation = benchmark_split(args.calibration, 500 if args.full else args.samples)
    model = efficientnet_lite0()
    sample = (calibration[:1],)
    runners = {}
    if args.pte:
        buffer = open(args.pte, "rb").read()
        quantized = torch.export.load(args.quantized).module() if args.quantized else None
    else:
        quantized = calibrate_and_quantize(
            torch.export.export(model, sample), [(c[None],) for c in calibration],
            NeutronQuantizer(NeutronTargetSpec("imxrt700"), per_channel=True))
        edge = to_edge_transform_and_lower(
            torch.export.export(quantized, sample),
            partitioner=[NeutronPartitioner(generate_neutron_compile_spec("imxrt700"))])
        runners["simulate (edge)"] = load_program(edge)
        buffer = edge.to_executorch().buffer
        if args.save:
            from pathlib import Path

            out = Path(args.save)
            out.mkdir(parents=True, exist_ok=True)
            (out / "efficientnet_lite0.pte").write_bytes(buffer)
            torch.export.save(torch.export.export(quantized, sample), out / "quantized.pt2")
    pte = load_program(buffer)

    tflites = _payload_tflites(buffer)
    print(f"delegates: {len(tflites)}; payload TFLite sizes: {[len(t) for t in tflites]} bytes")
    interp = Interpreter(model_content=max(tflites, key=len),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    (inp,), (outp,) = interp.get_input_details(), interp.get_output_details()
    in_scale, in_zp = inp["quantization"]

    def litert(x: torch.Tensor):
        nhwc = x.numpy().transpose(0, 2, 3, 1) if len(inp["shape"]) == 4 else x.numpy()
        q = np.clip(np.round(nhwc / in_scale) + in_zp, -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        return interp.get_tensor(outp["index"])

    runners.update({"simulate (.pte)": pte, "LiteRT TFLite (ref)": litert, "float PyTorch": model})
    timings = {name: [] for name in runners}
    with torch.no_grad():
        for name, run in runners.items():  # warm-up
            run(evaluation[:1])
        for i in range(args.samples):
            x = evaluation[i : i + 1]
            for name, run in runners.items():
                timings[name].append(_timed(run, x))

    median = {k: statistics.median(v) for k, v in timings.items()}
    print(f"\nEfficientNet-Lite0, imxrt700, {args.samples} crops, median time per sample:")
    for name, t in median.items():
        print(f"  {name:22s} {1000 * t:9.1f} ms   {1 / t:7.2f} samples/s")
    sim = median["simulate (.pte)"]
    print("ratios (simulated .pte time / other):")
    print(f"  vs LiteRT on the TFLite: {sim / median['LiteRT TFLite (ref)']:.3f}x")
    print(f"  vs float PyTorch:        {sim / median['float PyTorch']:.3f}x")
    if "simulate (edge)" in median:
        print(f"  edge / .pte:             {median['simulate (edge)'] / sim:.3f}x")

    if args.full:
        start = time.perf_counter()
        result = evaluate(pte, evaluation, float_model=model, quantized_model=quantized)
        print(f"\n{result}\n(evaluation took {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
