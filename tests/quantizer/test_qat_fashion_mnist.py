"""QAT on real data: Fashion-MNIST (Debian package dataset-fashion-mnist), a small CNN with
bias-less conv + BN units and depthwise blocks.

Same epoch budget on every side: float training for N epochs; PTQ of that model; QAT
fine-tuning for k epochs; float fine-tuning for the same k epochs as the control. Fixed seed,
10,000 training images, the first 2,000 test images, one thread (deterministic, and far faster
than two threads on a loaded 2-core machine). The full 60k / 10k run is
benchmarks/bench_qat_fashion_mnist.py. If the data is missing these tests fail with the hint
`apt-get install -y dataset-fashion-mnist`.
"""

from __future__ import annotations

import pytest
import torch
from qat_vs_ptq import compare_qat_ptq

from neutronq.data.fashion_mnist import DEFAULT_DIR, load_fashion_mnist, read_idx

N_TRAIN, N_TEST = 10_000, 2_000
FLOAT_EPOCHS, FINETUNE_EPOCHS = 2, 1


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_loader_reads_the_debian_files():
    x, y = load_fashion_mnist("test", limit=100)
    assert x.shape == (100, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (100,) and int(y.min()) >= 0 and int(y.max()) <= 9
    assert read_idx(DEFAULT_DIR / "t10k-labels-idx1-ubyte.gz").shape == (10_000,)
    assert read_idx(DEFAULT_DIR / "train-images-idx3-ubyte.gz").shape == (60_000, 28, 28)


def test_missing_files_name_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist("train", directory=tmp_path)


def test_qat_beats_ptq_and_matches_float_control(one_thread):
    r = compare_qat_ptq(n_train=N_TRAIN, n_test=N_TEST, float_epochs=FLOAT_EPOCHS,
                        finetune_epochs=FINETUNE_EPOCHS, seed=0)
    assert r["n_test"] == N_TEST
    summary = ", ".join(f"{k} {r[k]:.2f}" for k in ("float", "ptq", "qat_fake_quant", "qat", "float_control"))
    print(f"Fashion-MNIST {N_TRAIN} train / {N_TEST} test: {summary}")
    assert r["float"] > 70, summary  # the float model learned something
    assert r["qat"] >= r["ptq"] - 0.3, summary
    assert r["qat"] >= r["float_control"] - 1.0, summary
    # the converted int8 model agrees with the fake-quantized one it came from
    assert abs(r["qat"] - r["qat_fake_quant"]) <= 0.5, summary
