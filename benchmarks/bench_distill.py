"""Distillation's speed on EfficientNet-Lite0, three ways in one run (ratios, never assertions):

  * ``before``: one sample at a time, each observer's quantization parameters recomputed on every
    forward (what neutronq did until 2026-11-29: a histogram observer's search takes milliseconds);
  * ``one_by_one``: one sample at a time, parameters read once (``batched=False``);
  * ``batched``: the samples of a step as one batch (the default; the graph's baked batch in the
    classifier's view is freed by ``RelaxBatchGuardPass``).

Each run distils the same calibrated per-channel model for ``--epochs`` epochs on ``--samples``
calibration crops (steps of 10), starting from a copy, so the three do the same work; the
held-out SQNR after each shows they reach the same model.

    .venv/bin/python benchmarks/bench_distill.py [--samples 20] [--epochs 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec, prepare_and_calibrate
from neutronq.data.models import efficientnet_lite0
from neutronq.data.photos import benchmark_split
from neutronq.metrics import sqnr_db
from neutronq.ptq import observed
from neutronq.ptq.distill import distill


def _uncached(self, target):  # the behaviour before: every call recomputes
    return self.module.get_submodule(target).calculate_qparams()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-before", action="store_true", help="skip the slow 'before' run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = efficientnet_lite0()
    calibration, evaluation = benchmark_split(args.samples, 50)
    samples = [calibration[i : i + 1] for i in range(len(calibration))]
    quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), per_channel=True)
    prepared = prepare_and_calibrate(torch.export.export(model, (calibration[:1],)), samples, quantizer)
    with torch.no_grad():
        reference = model(evaluation)

    results = {}
    modes = [("batched", True), ("one_by_one", False)] + ([] if args.skip_before else [("before", False)])
    for name, batched in modes:
        student = copy.deepcopy(prepared)
        original = observed.ObserverRounding.observer_qparams
        if name == "before":
            observed.ObserverRounding.observer_qparams = _uncached
        try:
            start = time.perf_counter()
            distill(student, samples, epochs=args.epochs, batched=batched)
            seconds = time.perf_counter() - start
        finally:
            observed.ObserverRounding.observer_qparams = original
        gm = convert_pt2e(student)
        with torch.no_grad():
            out = torch.cat([gm(evaluation[i : i + 1]) for i in range(len(evaluation))])
        results[name] = {"seconds": seconds, "heldout_sqnr_db": sqnr_db(reference, out)}
        print(f"{name:>11}: {seconds:8.1f} s, held-out SQNR {results[name]['heldout_sqnr_db']:.3f} dB", flush=True)
    for name in results:
        if name != "batched":
            print(f"batched is {results[name]['seconds'] / results['batched']['seconds']:.1f}x faster than {name}")
    print(json.dumps({"samples": args.samples, "epochs": args.epochs, "threads": torch.get_num_threads(),
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
