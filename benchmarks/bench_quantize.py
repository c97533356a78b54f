"""Time each PTQ phase on EfficientNet-Lite0 and measure int8 fidelity against float.

Image set (see neutronq.data.photos): 600 random-resized crops of real photos, numpy seed 0;
the first 100 calibrate at batch 1, the next 500 evaluate.

    .venv/bin/python benchmarks/bench_quantize.py [--per-channel] [--strict] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec
from neutronq._progress import progress
from neutronq.data.models import efficientnet_lite0
from neutronq.data.photos import benchmark_split
from neutronq.metrics import sqnr_db, top1_agreement


def run(per_channel: bool = False, strict: bool = False, evaluation: int = 500) -> dict:
    calibration, images = benchmark_split(evaluation=evaluation)
    model = efficientnet_lite0()
    times = {}

    t = time.perf_counter()
    exported = torch.export.export(model, (calibration[:1],), strict=strict)
    times["export_s"] = time.perf_counter() - t

    t = time.perf_counter()
    quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), per_channel=per_channel)
    prepared = prepare_pt2e(exported.module(), quantizer)
    times["prepare_s"] = time.perf_counter() - t

    t = time.perf_counter()
    with torch.no_grad():
        for i in progress(range(len(calibration)), desc="calibrating"):
            prepared(calibration[i : i + 1])
    times["calibrate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    quantized = convert_pt2e(prepared)
    times["convert_s"] = time.perf_counter() - t

    with torch.no_grad():
        float_logits = torch.cat([model(images[i : i + 50]) for i in range(0, len(images), 50)])
        int8_logits = torch.cat(
            [quantized(images[i : i + 1]) for i in progress(range(len(images)), desc="evaluating")]
        )
    return {
        "model": "efficientnet-lite0",
        "weights": "per-channel" if per_channel else "per-tensor",
        "export": "strict" if strict else "non-strict",
        "calibration_images": len(calibration),
        "evaluation_images": len(images),
        **{k: round(v, 3) for k, v in times.items()},
        "top1_agreement": round(top1_agreement(float_logits, int8_logits), 4),
        "logits_sqnr_db": round(sqnr_db(float_logits, int8_logits), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-channel", action="store_true")
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--evaluation", type=int, default=500)
    parser.add_argument("--json", help="write the result here too")
    args = parser.parse_args()
    result = run(args.per_channel, args.strict, args.evaluation)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
