"""convert_pt2e after QAT: neutronq's conv+BN representation vs torchao's own, side by side.

torchao's QAT fuses conv + BN with its own pattern rewrite at prepare and folds it at
convert_pt2e (``_fold_conv_bn_qat``), which re-exports 96 pattern graphs. neutronq rewrites
conv/linear + BN itself before annotation (``aten_passes/fuse_batch_norm_for_qat.py``) so that
torchao finds no batch norm, and folds it after convert (``QuantizeFusedConvBnBiasAtenPass``).

Run: .venv/bin/python benchmarks/bench_qat_convert.py [--repeats 3]
Prints seconds per step for both paths on the same models, in the same process, and the ratio.

Measured 2026-11-22 (--repeats 2, 2-core machine under a load average of ~30), convert_pt2e +
QuantizeFusedConvBnBiasAtenPass: 2 conv+BN: neutronq 0.43 s, torchao 300.7 s (694x);
fashion_cnn, 5 conv+BN: neutronq 0.60 s, torchao 171.0 s (285x). Same int8-vs-fake-quant error.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec, QuantizeFusedConvBnBiasAtenPass
from neutronq.aten_passes.relax_batch_guard import RelaxBatchGuardPass
from neutronq.data.fashion_mnist import fashion_cnn
from neutronq.quantizer.qat import check_prepare_function


class TorchaoConvBnQuantizer(NeutronQuantizer):
    """NeutronQuantizer without neutronq's conv+BN rewrite: torchao's QAT conv-BN path."""

    def _pre_annotation_transforms(self) -> list:
        return [check_prepare_function(True), RelaxBatchGuardPass()]


def small_conv_bn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3), nn.BatchNorm2d(16), nn.ReLU6())


MODELS = {
    "small_conv_bn (2 conv+BN)": (small_conv_bn, (1, 3, 16, 16)),
    "fashion_cnn (5 conv+BN, depthwise)": (fashion_cnn, (1, 1, 28, 28)),
}


def run(quantizer_cls, make, shape):
    torch.manual_seed(0)
    model = make().eval()
    gm = torch.export.export(model, (torch.randn(shape),)).module()
    t0 = time.perf_counter()
    prepared = prepare_qat_pt2e(gm, quantizer_cls(NeutronTargetSpec("imxrt700"), is_qat=True))
    t_prepare = time.perf_counter() - t0
    prepared = move_exported_model_to_train(prepared)
    opt = torch.optim.SGD(prepared.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        prepared(torch.randn((4,) + shape[1:])).sum().backward()
        opt.step()
    prepared = move_exported_model_to_eval(prepared)
    x = torch.randn((8,) + shape[1:])
    with torch.no_grad():
        fake = prepared(x)
    t0 = time.perf_counter()
    converted = convert_pt2e(prepared)
    t_convert = time.perf_counter() - t0
    t0 = time.perf_counter()
    converted = QuantizeFusedConvBnBiasAtenPass(default_zero_bias=True)(converted).graph_module
    t_pass = time.perf_counter() - t0
    with torch.no_grad():
        err = (converted(x) - fake).abs().max().item()
    return t_prepare, t_convert, t_pass, err


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"torch threads: {torch.get_num_threads()}; median of {args.repeats} runs; seconds")
    print(f"{'model':38s} {'path':9s} {'prepare':>8s} {'convert':>8s} {'bias pass':>9s} {'convert+pass':>12s} {'max |int8-fq|':>13s}")
    for name, (make, shape) in MODELS.items():
        totals = {}
        for label, cls in (("neutronq", NeutronQuantizer), ("torchao", TorchaoConvBnQuantizer)):
            runs = [run(cls, make, shape) for _ in range(args.repeats)]
            p, c, b, e = (statistics.median(r[i] for r in runs) for i in range(4))
            totals[label] = c + b
            print(f"{name:38s} {label:9s} {p:8.2f} {c:8.2f} {b:9.3f} {c + b:12.2f} {e:13.4f}")
        print(f"{'':38s} torchao / neutronq convert+pass: {totals['torchao'] / totals['neutronq']:.0f}x")


if __name__ == "__main__":
    main()
