"""Byte flips over a lowered program: is each damaged ``.pte`` refused with a clear error, or does
it run to the original outputs? Never an aborted process, never other numbers.

    .venv/bin/python benchmarks/fuzz_pte.py [--flips 200] [--seed 0] [--pte model.pte --input x.pt]

Without ``--pte`` it quantizes and lowers a small model (conv -> relu -> pool -> linear, all on the
NPU: the program holds the input quantize, the delegate and the output dequantize). Each flip XORs
one byte with a random non-zero value; three in four land outside the delegate's payload (the
program's own tables: values, quantization parameters, tensor metadata, instructions), one in
four inside it (the payload's header and its CRC-protected TFLite model).

One worker subprocess loads and runs flip after flip (``neutronq.load_program(bytes)(input)``) and
is started again only after a crash (an abort counts against the flip that caused it) or a hang.
Outcomes: ``identical`` (outputs equal to the original's, bit for bit), ``error`` (an exception;
``clear`` when it is one of neutronq's own errors for a damaged program), ``different``,
``abort``, ``hang``. ``tests/runtime/test_pte_fuzz.py`` runs it and asserts the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

# Errors that say the file is damaged: neutronq's own, raised before anything runs.
CLEAR_ERRORS = ("ProgramError", "PayloadError", "UnsupportedDelegateError", "NotImplementedError")

WORKER = r"""
import json, sys, warnings
import torch
import torch.utils._pytree as pytree
torch.set_num_threads(1)
warnings.filterwarnings("ignore")
from neutronq import load_program
data = open(sys.argv[1], "rb").read()
x = torch.load(sys.argv[2])
expected = pytree.tree_leaves(load_program(data)(x))
print("READY", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    buf = bytearray(data)
    for pos, xor in job["flips"]:
        buf[pos] ^= xor
    result = {"id": job["id"]}
    try:
        got = pytree.tree_leaves(load_program(bytes(buf))(x))
        same = len(got) == len(expected) and all(
            isinstance(g, torch.Tensor) and g.dtype == e.dtype and g.shape == e.shape and torch.equal(g, e)
            for g, e in zip(got, expected))
        result["outcome"] = "identical" if same else "different"
        if not same:
            result["detail"] = str([(g - e).abs().max().item() if isinstance(g, torch.Tensor) and g.shape == e.shape
                                    else str(getattr(g, "shape", g)) for g, e in zip(got, expected)])[:300]
    except Exception as e:
        tb = e.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        result.update(outcome="error", error=type(e).__name__, detail=str(e)[:600],
                      origin=tb.tb_frame.f_code.co_filename)
    print(json.dumps(result), flush=True)
"""


@dataclass
class Flip:
    id: int
    flips: list  # [(byte position, xor value)]
    region: str  # "program" or "payload"


def payload_span(data: bytes) -> tuple[int, int]:
    """Where the (first) Neutron delegate payload lies in the file."""
    start = data.find(b"NQNP")
    if start < 0:
        raise ValueError("no neutronq payload in this program")
    length = int.from_bytes(data[start + 6 : start + 8], "little") + int.from_bytes(data[start + 8 : start + 10], "little")
    offset = 10 + length
    offset += (-offset) % 4
    model_len = int.from_bytes(data[start + offset : start + offset + 4], "little")
    return start, start + offset + 8 + model_len


def make_flips(data: bytes, count: int, seed: int) -> list[Flip]:
    rng = np.random.default_rng(seed)
    start, end = payload_span(data)
    outside = np.concatenate([np.arange(0, start), np.arange(end, len(data))])
    inside = np.arange(start, end)
    n_out = count - count // 4
    positions = [(int(p), "program") for p in rng.choice(outside, n_out, replace=False)]
    positions += [(int(p), "payload") for p in rng.choice(inside, count - n_out, replace=False)]
    return [Flip(i, [(p, int(rng.integers(1, 256)))], region) for i, (p, region) in enumerate(positions)]


class _Worker:
    def __init__(self, pte: Path, inputs: Path, env: dict):
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, str(pte), str(inputs)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()

    @staticmethod
    def _read(stream, q):
        for line in stream:
            q.put(line)
        q.put(None)

    def _drain(self):
        for line in self.proc.stderr:
            self.err.append(line)
            del self.err[:-20]

    def next_line(self, timeout: float) -> Optional[str]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return "TIMEOUT"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def fuzz(pte: Path, inputs: Path, flips: list[Flip], timeout: float = 120.0, src: Optional[str] = None) -> dict:
    """Run every flip; returns {"results": [...], "restarts": n, "seconds": s}."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if src:
        env["PYTHONPATH"] = src
    start = time.perf_counter()
    results, restarts, worker = [], 0, None
    for flip in flips:
        if worker is None:
            worker = _Worker(pte, inputs, env)
            ready = worker.next_line(600)
            if ready != "READY\n":
                raise RuntimeError(f"the fuzz worker did not start: {ready!r} {''.join(worker.err)[-2000:]}")
        worker.proc.stdin.write(json.dumps({"id": flip.id, "flips": flip.flips}) + "\n")
        worker.proc.stdin.flush()
        line = worker.next_line(timeout)
        if line is None or line == "TIMEOUT":
            outcome = "hang" if line == "TIMEOUT" else "abort"
            worker.stop()
            tail = [l.strip() for l in worker.err if l.strip()][-1:]
            results.append({"id": flip.id, "outcome": outcome, "detail": f"exit {worker.proc.returncode}: {tail}"})
            worker, restarts = None, restarts + 1
        else:
            results.append(json.loads(line))
        results[-1].update(region=flip.region, flips=flip.flips)
    if worker is not None:
        worker.proc.stdin.close()
        worker.stop()
    return {"results": results, "restarts": restarts, "seconds": time.perf_counter() - start}


def summarize(results: list[dict]) -> dict:
    """Counts per outcome (errors split into clear and unclear), overall and per region."""
    def label(r):
        if r["outcome"] != "error":
            return r["outcome"]
        return "clear error" if r.get("error") in CLEAR_ERRORS and "neutronq" in r.get("origin", "") else "unclear error"

    out = {"all": Counter(label(r) for r in results)}
    for region in sorted({r["region"] for r in results}):
        out[region] = Counter(label(r) for r in results if r["region"] == region)
    return {k: dict(v) for k, v in out.items()}


def build_small_program(folder: Path) -> tuple[Path, Path]:
    """A small conv -> relu -> pool -> linear model, quantized and lowered (all on the NPU); its
    .pte and an input, saved in ``folder``."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from executorch.exir import to_edge_transform_and_lower

    from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize
    from neutronq.neutron_partitioner import NeutronPartitioner
    from neutronq.nxp_backend import generate_neutron_compile_spec

    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1))

    import executorch.kernels.quantized  # noqa: F401  (quantized out variants for to_executorch)

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = Small().eval()
    x = torch.rand(1, 3, 16, 16, generator=g)
    quantized = calibrate_and_quantize(torch.export.export(model, (x,)),
                                       [(torch.rand(1, 3, 16, 16, generator=g),) for _ in range(8)],
                                       NeutronQuantizer(NeutronTargetSpec("imxrt700")))
    edge = to_edge_transform_and_lower(torch.export.export(quantized, (x,)),
                                       partitioner=[NeutronPartitioner(generate_neutron_compile_spec("imxrt700"))])
    pte, inputs = folder / "small.pte", folder / "small_input.pt"
    pte.write_bytes(edge.to_executorch().buffer)
    torch.save(x, inputs)
    return pte, inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flips", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pte", default=None, help="a lowered program (default: a small one built here)")
    parser.add_argument("--input", default=None, help="its input, a tensor saved with torch.save")
    parser.add_argument("--src", default=None, help="the neutronq source the worker runs (default: installed)")
    parser.add_argument("--json", default=None, help="write every flip's outcome here")
    args = parser.parse_args()
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="neutronq_fuzz_"))
    if args.pte:
        pte, inputs = Path(args.pte), Path(args.input)
    else:
        pte, inputs = build_small_program(folder)
    flips = make_flips(pte.read_bytes(), args.flips, args.seed)
    run = fuzz(pte, inputs, flips, src=args.src)
    figures = summarize(run["results"])
    print(f"{len(flips)} flips over {pte.stat().st_size} bytes ({pte.name}), {run['seconds']:.0f} s, "
          f"{run['restarts']} worker restarts")
    for region, counts in figures.items():
        print(f"  {region:8s} " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    for r in run["results"]:
        if r["outcome"] != "identical" and not (r["outcome"] == "error" and r.get("error") in CLEAR_ERRORS):
            print(f"  flip {r['id']} at {r['flips']}: {r['outcome']} {r.get('error', '')} {r.get('detail', '')[:200]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures, **run}, indent=1))


if __name__ == "__main__":
    main()
