"""Accuracy techniques, alone and combined, on two real models: int8 vs float agreement and SQNR.

Models:
  * ``efficientnet``: EfficientNet-Lite0 with its ImageNet weights, on the benchmark image set
    (``neutronq.data.photos.benchmark_split``): the first 100 crops calibrate at batch 1, the
    next ``--evaluate`` (500) evaluate;
  * ``mobilenet_v2_imagenet``: MobileNetV2 with its ImageNet weights (``neutronq.data.models``),
    on the same split photo set with ImageNet normalisation;
  * ``mobilenet_v2``: torchvision's MobileNetV2 (ReLU6, depthwise-separable, residuals), width
    0.5, trained briefly here on real Fashion-MNIST (Debian ``dataset-fashion-mnist``, 28 x 28
    grey images repeated on three channels); 100 test images calibrate, the next 500 evaluate.
    Its trained weights are cached in ``--cache`` so reruns skip the training.

Rows: each technique alone (observers, equalization, bias correction) and the preset
``neutronq.ptq.presets.recommended``, per-tensor and per-channel weights. Columns: top-1
agreement with the float model, logits SQNR in dB (and, for Fashion-MNIST, int8 accuracy against
the labels); with ``--budget N``, the error budget (``neutronq.error_budget``: SQNR with only the
weights int8, and with only the activations int8) on the first N evaluation samples, and its cost
against one int8 pass over the whole evaluation set. Prints a markdown table and writes JSON.

    .venv/bin/python benchmarks/bench_accuracy.py --model efficientnet --json out.json
    .venv/bin/python benchmarks/bench_accuracy.py --model mobilenet_v2 --scheme per_tensor
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec, error_budget, prepare_and_calibrate
from neutronq.metrics import sqnr_db, top1_agreement
from neutronq.ptq.presets import recommended_options

warnings.filterwarnings("ignore")

# name -> NeutronQuantizer options (per_channel is added per scheme)
TECHNIQUES = {
    "baseline": {},
    "weights mse": {"weight_observer": "mse"},
    "activations mse": {"activation_observer": "mse"},
    "activations percentile": {"activation_observer": "percentile"},
    # histogram, mse or percentile, whichever measures best on the held-out calibration crops
    "activations auto": {"activation_observer": "auto"},
    "equalization": {"equalization": True},
    "bias correction": {"bias_correction": True},
    "adaround": {"adaround": True},
    "adaround + bias correction": {"adaround": True, "bias_correction": True},
    "recommended": None,  # recommended_options(per_channel)
    "recommended + activations auto": {"activation_observer": "auto"},  # on top of recommended_options
    "recommended + distillation": {"distillation": True},  # on top of recommended_options
    "recommended + flip distillation": {"distillation": {"augment": "flip"}},
}


def options(technique: str, per_channel: bool, distillation: dict | None = None) -> dict:
    """The technique's options; ``distillation``: settings added to its distillation step's."""
    opts = TECHNIQUES[technique]
    if opts is None:
        return recommended_options(per_channel)
    if distillation and opts.get("distillation"):
        base = opts["distillation"] if isinstance(opts["distillation"], dict) else {}
        opts = {**opts, "distillation": {**base, **distillation}}
    if technique.startswith("recommended + "):
        return {**recommended_options(per_channel), **opts}
    return {**opts, "per_channel": per_channel}


# --------------------------------------------------------------------------------------------
# models and data
# --------------------------------------------------------------------------------------------
def efficientnet(calibrate: int, evaluate: int):
    from neutronq.data.models import efficientnet_lite0
    from neutronq.data.photos import benchmark_split

    cal, ev = benchmark_split(calibrate, evaluate)
    return efficientnet_lite0(), cal, ev, None


def mobilenet_v2_imagenet(calibrate: int, evaluate: int):
    from neutronq.data.models import mobilenet_v2
    from neutronq.data.photos import benchmark_split

    cal, ev = benchmark_split(calibrate, evaluate, normalization="imagenet")
    return mobilenet_v2(), cal, ev, None


def _import_torchvision():
    """torchvision's CPU ops are missing here: define the two op schemas it needs at import."""
    for name, schema in (("nms", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"),
                         ("qnms", "(Tensor qdets, Tensor qscores, float iou_threshold) -> Tensor")):
        try:
            torch.library.define(f"torchvision::{name}", schema)
        except RuntimeError:
            pass  # already defined
    try:
        import torchvision
    except ImportError:
        sys.exit("bench_accuracy.py --model mobilenet_v2 needs torchvision (the model definition): install "
                 "it with  .venv/bin/pip install -c .venv/constraints.txt -e '.[bench]'")

    return torchvision


def _fashion_mnist(split: str):
    try:
        from neutronq.data.fashion_mnist import load_fashion_mnist

        return load_fashion_mnist(split)
    except ImportError:  # read the Debian package's IDX files directly
        import gzip

        import numpy as np

        folder = Path("/usr/share/datasets/fashion-mnist")
        prefix = "train" if split == "train" else "t10k"
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz") as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz") as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
        x = (torch.from_numpy(images.copy()).float() / 255.0 - 0.2860) / 0.3530
        return x, torch.from_numpy(labels.copy()).long()


def mobilenet_v2(calibrate: int, evaluate: int, cache: Path, train_images: int = 6_000, epochs: int = 2):
    tv = _import_torchvision()
    torch.manual_seed(0)
    model = tv.models.mobilenet_v2(num_classes=10, width_mult=0.5)
    weights = cache / f"mobilenet_v2_fmnist_{train_images}_{epochs}.pt"
    test_x, test_y = _fashion_mnist("test")
    test_x = test_x.repeat(1, 3, 1, 1)
    if weights.is_file():
        model.load_state_dict(torch.load(weights))
    else:
        x, y = _fashion_mnist("train")
        x, y = x[:train_images].repeat(1, 3, 1, 1), y[:train_images]
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        g = torch.Generator().manual_seed(0)
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(x), generator=g)
            for start in range(0, len(x), 128):
                idx = order[start : start + 128]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
            print(f"  trained epoch {epoch + 1}/{epochs}", file=sys.stderr, flush=True)
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), weights)
    model.eval()
    cal = test_x[:calibrate]
    ev, labels = test_x[calibrate : calibrate + evaluate], test_y[calibrate : calibrate + evaluate]
    return model, cal, ev, labels


# --------------------------------------------------------------------------------------------
def run(model_name: str, schemes: list[str], techniques: list[str], calibrate: int, evaluate: int,
        cache: Path, batch: int = 25, budget: int = 0, distillation: dict | None = None) -> list[dict]:
    if model_name == "efficientnet":
        model, cal, ev, labels = efficientnet(calibrate, evaluate)
    elif model_name == "mobilenet_v2_imagenet":
        model, cal, ev, labels = mobilenet_v2_imagenet(calibrate, evaluate)
    else:
        model, cal, ev, labels = mobilenet_v2(calibrate, evaluate, cache)
    with torch.no_grad():
        reference = torch.cat([model(x) for x in ev.split(batch)])
    # a dynamic batch dimension: calibration runs at batch 1, evaluation in batches
    batch_dim = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.export.export(model, (cal[:2],), dynamic_shapes=({0: batch_dim},))
    rows = []
    float_acc = None if labels is None else (reference.argmax(1) == labels).double().mean().item()
    for scheme in schemes:
        for technique in techniques:
            opts = options(technique, scheme == "per_channel", distillation)
            start = time.perf_counter()
            quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), **opts)
            prepared = prepare_and_calibrate(exported.module(), [x[None] for x in cal], quantizer)
            quantize_s = time.perf_counter() - start
            found = None
            if budget:
                start = time.perf_counter()
                found = error_budget(prepared, ev[:budget].split(batch))
                budget_s = time.perf_counter() - start
            converted = convert_pt2e(prepared)
            start = time.perf_counter()
            with torch.no_grad():  # the converted graph takes any batch size (batch guard relaxed)
                out = torch.cat([converted(x) for x in ev.split(batch)])
            evaluate_s = time.perf_counter() - start
            row = {
                "model": model_name, "scheme": scheme, "technique": technique, "options": opts,
                "calibrate": len(cal), "evaluate": len(ev),
                "top1_agreement": top1_agreement(reference, out), "sqnr_db": sqnr_db(reference, out),
                "quantize_s": quantize_s, "evaluate_s": evaluate_s,
            }
            if found is not None:
                row["budget"] = {**found.as_dict(), "seconds": budget_s,
                                 "seconds_per_sample_vs_int8_pass": (budget_s / budget) / (evaluate_s / len(ev))}
            if labels is not None:
                row["int8_accuracy"] = (out.argmax(1) == labels).double().mean().item()
                row["float_accuracy"] = float_acc
            rows.append(row)
            extra = "" if found is None else (f"; weights only {found.weights_only_db:5.2f} dB, activations "
                                              f"only {found.activations_only_db:5.2f} dB")
            print(f"  {scheme:11s} {technique:24s} agreement {100 * row['top1_agreement']:5.1f} % "
                  f"SQNR {row['sqnr_db']:5.2f} dB ({quantize_s:.0f} s){extra}", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    has_acc = any("int8_accuracy" in r for r in rows)
    has_budget = any("budget" in r for r in rows)
    head = "| model | weights | technique | top-1 agreement | logits SQNR |" + (" int8 accuracy |" if has_acc else "")
    if has_budget:
        head += " only weights int8 | only activations int8 |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = (f"| {r['model']} | {r['scheme'].replace('_', '-')} | {r['technique']} | "
                f"{100 * r['top1_agreement']:.1f} % | {r['sqnr_db']:.1f} dB |")
        if has_acc:
            line += f" {100 * r['int8_accuracy']:.1f} % (float {100 * r['float_accuracy']:.1f} %) |"
        if has_budget:
            b = r.get("budget")
            line += (f" {b['weights_only_db']:.1f} dB | {b['activations_only_db']:.1f} dB |" if b else " | |")
        lines.append(line)
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["efficientnet", "mobilenet_v2_imagenet", "mobilenet_v2"], default="efficientnet")
    p.add_argument("--scheme", choices=["per_tensor", "per_channel", "both"], default="both")
    p.add_argument("--techniques", default=",".join(TECHNIQUES),
                   help=f"comma-separated, from: {', '.join(TECHNIQUES)}")
    p.add_argument("--calibrate", type=int, default=100)
    p.add_argument("--evaluate", type=int, default=500)
    p.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "neutronq")
    p.add_argument("--budget", type=int, default=0, metavar="N",
                   help="also the error budget on the first N evaluation samples (0: off)")
    p.add_argument("--distillation", type=json.loads, default=None, metavar="JSON",
                   help='settings for the distillation techniques, e.g. \'{"learning_rate": 3e-5}\'')
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="only print the table of these JSON files (runs split over processes)")
    args = p.parse_args(argv)
    if args.merge:
        rows = [r for f in args.merge for r in json.loads(f.read_text())]
        order = {t: i for i, t in enumerate(TECHNIQUES)}
        rows.sort(key=lambda r: (r["model"], r["scheme"] != "per_tensor", order.get(r["technique"], 99)))
        print(markdown(rows))
        return
    os.environ.setdefault("NEUTRONQ_PROGRESS", "0")
    schemes = ["per_tensor", "per_channel"] if args.scheme == "both" else [args.scheme]
    techniques = [t.strip() for t in args.techniques.split(",") if t.strip()]
    unknown = [t for t in techniques if t not in TECHNIQUES]
    if unknown:
        p.error(f"unknown techniques {unknown}; choose from {', '.join(TECHNIQUES)}")
    if args.distillation is not None and not isinstance(args.distillation, dict):
        p.error('--distillation takes a JSON object of distill settings, e.g. \'{"learning_rate": 3e-5}\'')
    rows = run(args.model, schemes, techniques, args.calibrate, args.evaluate, args.cache,
               budget=args.budget, distillation=args.distillation)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
