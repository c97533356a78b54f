"""The ``neutronq`` command: quantize a model for the eIQ Neutron NPU and report on it."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

__all__ = ["main"]


def _demo(args) -> int:
    import torch

    from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize
    from neutronq._progress import progress
    from neutronq.data.models import efficientnet_lite0
    from neutronq.data.photos import benchmark_split
    from neutronq.report.metrics import sqnr_db, top1_agreement

    model = efficientnet_lite0()
    calibration, evaluation = benchmark_split(args.calibration_count, args.eval_count)
    t0 = time.perf_counter()
    exported = torch.export.export(model, (calibration[:1],))
    quantized = calibrate_and_quantize(
        exported, [c.unsqueeze(0) for c in calibration], NeutronQuantizer(NeutronTargetSpec(args.target))
    )
    with torch.no_grad():
        ref, act = [], []
        for x in progress(evaluation, desc="evaluating", unit="image"):
            x = x.unsqueeze(0)
            ref.append(model(x))
            act.append(quantized(x))
    ref, act = torch.cat(ref), torch.cat(act)
    print(f"EfficientNet-Lite0, {len(calibration)} calibration / {len(evaluation)} evaluation crops, "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"float vs int8 top-1 agreement: {100 * top1_agreement(ref, act):.1f} %")
    print(f"float vs int8 logits SQNR: {sqnr_db(ref, act):.1f} dB")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neutronq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="EfficientNet-Lite0 on real photo crops: quantize, lower, report")
    demo.add_argument("--target", default="imxrt700")
    demo.add_argument("--calibration-count", type=int, default=100)
    demo.add_argument("--eval-count", type=int, default=500)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
