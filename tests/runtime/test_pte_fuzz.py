"""200 seeded byte flips over a real lowered program, each loaded and run in a worker subprocess:
no flip aborts the process, and each one either raises one of neutronq's clear errors for a
damaged program or runs to outputs identical to the original's.

Before the checks of ``neutronq.runtime._validate`` (same flips, seed 0): 2 aborts (ExecuTorch's
quantize kernel: quant_min / quant_max out of bound), 95 errors that did not say the file was
damaged (IndexError, KeyError, a kernel failing mid-run, a SignatureError blaming the input).
The figures and the time are printed; the small program holds the input quantize, one NPU
delegate and the output dequantize (``benchmarks/fuzz_pte.py``).
"""

from __future__ import annotations

from fuzz_pte import build_small_program, fuzz, make_flips, summarize


def test_200_byte_flips_never_abort_and_never_give_other_numbers(tmp_path):
    pte, inputs = build_small_program(tmp_path)
    flips = make_flips(pte.read_bytes(), 200, seed=0)
    run = fuzz(pte, inputs, flips)
    figures = summarize(run["results"])
    print(f"\n200 flips over {pte.stat().st_size} bytes: {figures['all']} in {run['seconds']:.0f} s, "
          f"{run['restarts']} worker restarts")
    bad = [r for r in run["results"] if r["outcome"] in ("abort", "hang", "different")
           or (r["outcome"] == "error" and not _clear(r))]
    assert not bad, "\n".join(f"flip {r['id']} {r['flips']}: {r['outcome']} {r.get('error', '')} "
                              f"{r.get('detail', '')[:300]}" for r in bad)
    assert run["restarts"] == 0
    assert figures["all"].get("identical", 0) + figures["all"].get("clear error", 0) == 200
    # the checks do not refuse everything: harmless flips (padding, names the host runner does
    # not read) still run
    assert figures["all"].get("identical", 0) >= 10


def _clear(result: dict) -> bool:
    return result.get("error") in ("ProgramError", "PayloadError", "UnsupportedDelegateError", "NotImplementedError") \
        and "neutronq" in result.get("origin", "") and len(result.get("detail", "")) > 30
