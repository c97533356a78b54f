"""Emulated LiteRT reference kernels (``neutronq.runtime.emulate``) against LiteRT itself and the
float model, on EfficientNet-Lite0's delegate payload.

    .venv/bin/python benchmarks/bench_emulate.py [--batch 32] [--threads 1,2] [--compile]
    .venv/bin/python benchmarks/bench_emulate.py --payload effnet.payload     # reuse a payload
    .venv/bin/python benchmarks/bench_emulate.py --save-payload effnet.payload

Without ``--payload`` it quantizes EfficientNet-Lite0 (pretrained; per channel unless
``--per-tensor``) on ``--calibration`` benchmark crops and lowers it for imxrt700 first. Then,
for each thread count (``torch.set_num_threads``; LiteRT's interpreter gets the same count, its
reference kernels are single threaded anyway):

1. the emulation (``emulate_payload``) on a batch of ``--batch`` crops, int8 in and out;
2. LiteRT (``BUILTIN_REF``) on the same crops one sample at a time (``--litert-samples`` of them
   are timed; the per-sample median is scaled to the batch);
3. the float PyTorch model on the same batch (NCHW, as it comes).

Rounds of the three alternate (``--repeats``), so changes in machine load hit them alike; the
figures are medians. The emulation's outputs are checked against LiteRT's on the timed samples
(identical int8, every element). ``--compile`` also times the emulation with its requantization
compiled by ``torch.compile`` (``TFLiteModule(..., compile=True)``; compile time reported apart).
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch


def _payload(args):
    from neutronq.lowering.payload import decode_payload

    if args.payload:
        return decode_payload(open(args.payload, "rb").read())
    from executorch.exir import to_edge_transform_and_lower
    from executorch.exir.lowered_backend_module import LoweredBackendModule

    from neutronq import (
        NeutronPartitioner,
        NeutronQuantizer,
        NeutronTargetSpec,
        calibrate_and_quantize,
        generate_neutron_compile_spec,
    )
    from neutronq.data.models import efficientnet_lite0
    from neutronq.data.photos import benchmark_split
    from neutronq.lowering.edge import compile_config

    calibration, _ = benchmark_split(args.calibration, 0)
    example = (calibration[:1],)
    quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), per_channel=not args.per_tensor)
    converted = calibrate_and_quantize(torch.export.export(efficientnet_lite0(), example),
                                       [(c[None],) for c in calibration], quantizer)
    partitioner = NeutronPartitioner(compile_spec=generate_neutron_compile_spec("imxrt700"))
    exported = torch.export.export(converted, example)
    edge = to_edge_transform_and_lower(exported, partitioner=[partitioner], compile_config=compile_config(exported))
    payloads = [m.processed_bytes for _, m in edge.exported_program().graph_module.named_children()
                if isinstance(m, LoweredBackendModule)]
    if len(payloads) != 1:
        raise SystemExit(f"expected one delegate, got {len(payloads)}")
    if args.save_payload:
        open(args.save_payload, "wb").write(payloads[0])
    return decode_payload(payloads[0])


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--litert-samples", type=int, default=4, help="LiteRT samples timed per round (default 4)")
    parser.add_argument("--calibration", type=int, default=16, help="calibration crops when quantizing (default 16)")
    parser.add_argument("--per-tensor", action="store_true", help="quantize per tensor (default per channel)")
    parser.add_argument("--payload", help="a saved payload to time (skips quantizing)")
    parser.add_argument("--save-payload", help="save the payload made here")
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd requantization")
    args = parser.parse_args()

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from neutronq.data.models import efficientnet_lite0
    from neutronq.data.photos import benchmark_split
    from neutronq.lowering.payload import quantize_inputs, to_channels_last
    from neutronq.runtime.emulate import emulate_payload

    payload = _payload(args)
    _, crops = benchmark_split(0, args.batch)
    x8 = np.concatenate([quantize_inputs(payload, [c[None].numpy()])[0] for c in crops])
    xt = torch.from_numpy(x8)
    float_model = efficientnet_lite0()
    variants = {"emulation": emulate_payload(payload)}
    compile_seconds = None
    if args.compile:
        from neutronq.runtime.emulate import PayloadModule

        compiled = PayloadModule(payload, compile=True)
        compile_seconds = _timed(lambda: compiled(xt[:2]))
        variants["emulation (compiled)"] = compiled

    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        interp = Interpreter(model_content=payload.tflite, num_threads=threads,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

        def litert(i):
            x = x8[i:i + 1]
            interp.set_tensor(inp["index"], to_channels_last(x) if payload.input_channels_last[0] else x)
            interp.invoke()
            return interp.get_tensor(out["index"]).copy()

        times = {name: [] for name in variants}
        times["float"] = []
        times["litert"] = []
        with torch.no_grad():
            for name, module in variants.items():  # warm up
                got = module(xt)
            float_model(crops)
            litert(0)
            for r in range(args.repeats):
                for name, module in variants.items():
                    times[name].append(_timed(lambda: module(xt)))
                times["float"].append(_timed(lambda: float_model(crops)))
                for k in range(args.litert_samples):
                    i = (r * args.litert_samples + k) % args.batch
                    times["litert"].append(_timed(lambda: litert(i)))
            for name, module in variants.items():  # exactness on the timed samples
                got = module(xt).numpy()
                for i in range(min(args.batch, args.repeats * args.litert_samples)):
                    if not np.array_equal(got[i:i + 1], litert(i)):
                        raise SystemExit(f"{name}: sample {i} differs from LiteRT")
        per_sample = {name: statistics.median(v) / (1 if name == "litert" else args.batch)
                      for name, v in times.items()}
        rows.append((threads, per_sample))

    mode = "per tensor" if args.per_tensor else "per channel"
    print(f"EfficientNet-Lite0 ({mode}) payload, batch {args.batch}: median seconds per sample "
          f"(LiteRT: {args.litert_samples} x {args.repeats} samples; others: {args.repeats} batches)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end of the run")
    if compile_seconds is not None:
        print(f"torch.compile of the requantization: {compile_seconds:.1f} s (first call)")
    for threads, ps in rows:
        print(f"\n{threads} thread(s):")
        for name in ["litert", *variants, "float"]:
            print(f"  {name:22s} {ps[name] * 1e3:9.2f} ms/sample")
        for name in variants:
            print(f"  {name}: {ps['litert'] / ps[name]:.2f}x faster than LiteRT per sample, "
                  f"{ps[name] / ps['float']:.2f}x the float model's time")
    print("\nEmulated outputs identical to LiteRT's on every checked sample.")


if __name__ == "__main__":
    main()
