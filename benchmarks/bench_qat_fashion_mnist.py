"""QAT vs PTQ vs float on the full Fashion-MNIST (60k train / 10k test).

Same epoch budget on every side: float training for N epochs; PTQ of that model (16 x 32
calibration images); QAT fine-tuning for k epochs (QATSchedule freezes observers and BN
statistics before the last epoch when k > 1); float fine-tuning for the same k epochs as the
control. Exported with batch 1 as in the QAT guide, trained with batch 64.

Run: .venv/bin/python benchmarks/bench_qat_fashion_mnist.py [--float-epochs 4] [--finetune-epochs 2]
Needs the Debian package dataset-fashion-mnist (scripts/setup.sh installs it).

Measured 2026-11-22 (one thread, 2-core machine under a load average of ~30, 916 s) with
--float-epochs 1 --finetune-epochs 1: float 85.89 %, PTQ 85.88 %, QAT fake-quantized 86.50 %,
QAT int8 86.47 %, float control 86.57 %.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from qat_vs_ptq import compare_qat_ptq


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--float-epochs", type=int, default=4)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=None, help="default: all 60,000")
    ap.add_argument("--n-test", type=int, default=None, help="default: all 10,000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a shared 2-core machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    r = compare_qat_ptq(n_train=args.n_train, n_test=args.n_test, float_epochs=args.float_epochs,
                        finetune_epochs=args.finetune_epochs, seed=args.seed,
                        log=lambda m: print(f"[{time.perf_counter() - t0:7.1f} s] {m}", flush=True))
    r["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"Fashion-MNIST, {r['n_train']} train / {r['n_test']} test images, "
          f"float {r['float_epochs']} epochs, fine-tuning {r['finetune_epochs']} epochs, seed {args.seed}")
    for key, label in (("float", f"float ({r['float_epochs']} epochs)"),
                       ("ptq", "PTQ int8 of it"),
                       ("qat_fake_quant", f"QAT +{r['finetune_epochs']} epochs, fake-quantized"),
                       ("qat", f"QAT +{r['finetune_epochs']} epochs, int8 (converted + bias pass)"),
                       ("float_control", f"float +{r['finetune_epochs']} epochs (control)")):
        print(f"  {label:50s} {r[key]:6.2f} %")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
