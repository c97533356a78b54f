"""The report a person reads (HTML with PNG plots) and the one a machine reads (JSON).

Files written into the output folder:
  report.json   every figure of the report (non-finite numbers as the strings "inf" / "-inf")
  report.html   the same, with tables and the plots below
  plots/*.png   per-layer SQNR, what each layer loses, NPU/CPU placement, final outputs

Each plot sits in a ``<figure class="plot">`` with a frame of colour ``FRAME_COLOR``, so a
screenshot can find it (tests/report/test_screenshot.py does).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Optional, Sequence

import torch

from neutronq.ptq.activation_choice import ActivationChoice
from neutronq.report.layers import worst_layers

__all__ = ["write_report", "json_safe", "FRAME_COLOR", "PLOTS"]

FRAME_COLOR = (43, 58, 85)  # #2b3a55, the frame around each plot
PLOTS = ("layers_sqnr.png", "layers_drop.png", "placement.png", "outputs.png")


def json_safe(value):
    """Report values as strict JSON: inf -> "inf", NaN -> null, tuples -> lists."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------
# Plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _clip(v: float, hi: float = 80.0) -> float:
    return hi if math.isinf(v) and v > 0 else (-10.0 if math.isinf(v) else v)


def _plot_layers_sqnr(layers, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    if layers:
        xs = list(range(len(layers)))
        ys = [_clip(l.sqnr_db) for l in layers]
        ax.plot(xs, ys, color="#1f77b4", lw=1.2, label="SQNR at layer output")
        heavy = [i for i, l in enumerate(layers) if l.op in ("conv2d", "conv1d", "linear", "addmm")]
        ax.scatter([xs[i] for i in heavy], [ys[i] for i in heavy], s=12, color="#d62728", zorder=3,
                   label="conv / linear")
        position = {id(l): i for i, l in enumerate(layers)}
        for l in worst_layers(layers, 3):
            l_index = position[id(l)]
            ax.annotate(l.node, (l_index, ys[l_index]), textcoords="offset points", xytext=(4, -12),
                        fontsize=7, color="#444444")
        ax.legend(loc="upper right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no layer could be compared", ha="center", transform=ax.transAxes)
    ax.set_xlabel("layer (execution order)")
    ax.set_ylabel("float vs int8 SQNR (dB)")
    ax.set_title("Per-layer SQNR (cumulative error up to each layer)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_layers_drop(layers, path: Path, top: int = 15) -> None:
    plt = _plt()
    worst = worst_layers(layers, top)[::-1]
    fig, ax = plt.subplots(figsize=(9, 0.28 * max(len(worst), 4) + 1.2), dpi=100)
    if worst:
        labels = [f"{l.node} ({l.op})" for l in worst]
        values = [_clip(l.drop_db, 60.0) for l in worst]
        ax.barh(range(len(worst)), values, color=["#d62728" if v > 3 else "#ff7f0e" for v in values])
        ax.set_yticks(range(len(worst)), labels, fontsize=7)
    ax.set_xlabel("SQNR lost at the layer (dB): its inputs' SQNR minus its output's; "
                  "ranked by the error it adds")
    ax.set_title("Where accuracy is lost most")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_placement(placement, path: Path) -> None:
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100, gridspec_kw={"width_ratios": [1, 2]})
    npu, total = placement.npu_macs, placement.total_macs
    ax1.bar(["NPU", "CPU"], [npu / 1e6, (total - npu) / 1e6], color=["#2ca02c", "#7f7f7f"])
    ax1.set_ylabel("MMACs")
    ax1.set_title(f"MACs on the NPU: {100 * placement.npu_mac_fraction:.1f} %")
    counts = placement.counts()
    ops = sorted(set(counts["NPU"]) | set(counts["CPU"]),
                 key=lambda o: -(counts["NPU"].get(o, 0) + counts["CPU"].get(o, 0)))[:14][::-1]
    short = [o.replace("aten.", "").replace("quantized_decomposed.", "q.").replace(".default", "") for o in ops]
    n_vals = [counts["NPU"].get(o, 0) for o in ops]
    c_vals = [counts["CPU"].get(o, 0) for o in ops]
    ax2.barh(range(len(ops)), n_vals, color="#2ca02c", label="NPU")
    ax2.barh(range(len(ops)), c_vals, left=n_vals, color="#7f7f7f", label="CPU")
    ax2.set_yticks(range(len(ops)), short, fontsize=7)
    ax2.set_xlabel("ops")
    ax2.set_title(f"Ops by placement ({placement.partitions} NPU partitions)")
    ax2.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_outputs(ref: torch.Tensor, act: torch.Tensor, path: Path, max_points: int = 20000) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    r, a = ref.detach().flatten().double(), act.detach().flatten().double()
    if len(r) > max_points:
        idx = torch.linspace(0, len(r) - 1, max_points).long()
        r, a = r[idx], a[idx]
    ax.scatter(r.numpy(), a.numpy(), s=3, alpha=0.4, color="#9467bd")
    lo, hi = float(min(r.min(), a.min())), float(max(r.max(), a.max()))
    ax.plot([lo, hi], [lo, hi], color="#444444", lw=0.8, ls="--", label="int8 = float")
    ax.set_xlabel("float model output")
    ax.set_ylabel("int8 model output")
    ax.set_title("Final outputs: int8 (convert_pt2e) against float")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ------------------------------------------------------------------------------------------
# HTML
def _fmt(v, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _activation_choice(q: dict) -> str:
    """The candidates behind activation_observer="auto", with their figures (empty without it)."""
    choice = q.get("activation_choice")
    return f" ({html.escape(ActivationChoice(**choice).figures())})" if choice else ""


def _table(headers: Sequence[str], rows: Sequence[Sequence], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_CSS = """
body { font-family: DejaVu Sans, Arial, sans-serif; margin: 24px auto; max-width: 960px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.sub { color: #666; font-size: 13px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 10px 14px; min-width: 150px; }
.card b { display: block; font-size: 20px; } .card span { font-size: 12px; color: #555; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; } th { background: #f3f3f3; }
figure.plot { border: 3px solid #2b3a55; margin: 14px 0; padding: 0; width: 900px; background: #fff; }
figure.plot img { display: block; width: 900px; }
figure.plot figcaption { font-size: 12px; color: #333; padding: 4px 8px; border-top: 1px solid #ddd; }
"""


def _simulated_count(out: dict) -> str:
    ev = out.get("evaluation", {})
    n, total = ev.get("simulated_samples"), ev.get("samples")
    return f"all {n} samples" if n is not None and n == total else f"{n} of {total} samples"


def _simulated_how(evaluation: dict) -> str:
    with_ = evaluation.get("simulated_with")
    if with_ == "emulate":
        return "emulated, bit-exact with LiteRT"
    if with_ == "litert":
        how = "in LiteRT's reference kernels"
        return how + (" (the emulation could not run it)" if evaluation.get("simulation_fallback") else "")
    return "simulated on the host"


def _html(report: dict, plots: dict[str, str], sizes: dict[str, tuple[int, int]]) -> str:
    m, q, low, out = report["model"], report["quantization"], report["lowering"], report["outputs"]
    sim = out.get("simulated_vs_float", {})
    qf = out.get("quantized_vs_float", {})
    cards = [
        ("MACs on the NPU", _pct(low["npu_mac_fraction"])),
        (f"top-1 agreement, lowered program vs float ({_simulated_count(out)})", _pct(sim.get("top1_agreement"))),
        (f"output SQNR, lowered program vs float ({_simulated_count(out)})", f"{_fmt(sim.get('sqnr_db'), 1)} dB"),
        ("output SQNR, int8 model vs float", f"{_fmt(qf.get('sqnr_db'), 1)} dB"),
        ("NPU partitions", str(low["partitions"])),
    ]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>neutronq report: {html.escape(m['name'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>neutronq report: {html.escape(m['name'])}</h1>",
        f"<div class='sub'>{html.escape(q['mode'])} int8 for {html.escape(q['target'])} "
        f"({html.escape(str(q['flavor']))}), {'per-channel' if q['per_channel'] else 'per-tensor'} weights; "
        f"created {html.escape(report['created'])} by neutronq {html.escape(report['neutronq_version'])}</div>",
        "<div class='cards'>" + "".join(f"<div class='card'><b>{v}</b><span>{html.escape(k)}</span></div>"
                                        for k, v in cards) + "</div>",
        "<h2>Model</h2>",
        _table(["", ""], [
            ["source", html.escape(m["source"])],
            ["input shape", html.escape(str(m["input_shape"]))],
            ["parameters", f"{m['parameters']:,}"],
            ["ops in the exported graph", str(m["ops"])],
            ["multiply-accumulates", f"{m['macs']:,}"],
            ["calibration", f"{html.escape(str(q['calibration']['source']))} ({q['calibration']['samples']} samples)"],
            ["training (QAT)", html.escape(json.dumps(q["training"])) if q["training"] else "none (PTQ)"],
            ["observers", f"activations {html.escape(str(q.get('activation_observer')))}{_activation_choice(q)}, "
                          f"weights {html.escape(str(q.get('weight_observer')))}"],
            ["accuracy steps", f"equalization {'on' if q.get('equalization') else 'off'}, bias correction "
                               f"{'on' if q.get('bias_correction') else 'off'}, AdaRound "
                               f"{'on' if q.get('adaround') else 'off'}, distillation "
                               f"{'on' if q.get('distillation') else 'off'}"
                               f"{' ' + html.escape(json.dumps(q['distillation_settings'])) if q.get('distillation_settings') else ''}"
                               f"{' (recommended preset)' if q.get('recommended_preset') else ''}"],
            ["evaluation", f"{html.escape(str(out['evaluation']['source']))} ({out['evaluation']['samples']} samples, "
                           f"{out['evaluation'].get('simulated_samples')} of them through the lowered program, "
                           f"{html.escape(_simulated_how(out['evaluation']))})"],
        ]),
        "<h2>Final outputs</h2>",
        _table(["comparison", "SQNR (dB)", "top-1 agreement"], [
            [html.escape(k.replace("_", " ")), _fmt(v.get("sqnr_db")), _pct(v.get("top1_agreement"))]
            for k, v in out.items() if k != "evaluation"
        ]),
        "<p class='sub'>The lowered program runs on the host with its NPU partitions in TFLite's reference "
        "int8 arithmetic (the NPU converter's input semantics): emulated in PyTorch, bit-exact with LiteRT's "
        "reference kernels and batched, or in LiteRT itself (<code>--litert</code>). The NPU's own kernels "
        "may round differently in places.</p>"
        + (f"<p class='sub'><b>The emulation could not run this program</b> "
           f"({html.escape(str(out['evaluation']['simulation_fallback']))}): LiteRT ran it.</p>"
           if out["evaluation"].get("simulation_fallback") else ""),
        "<h2>Plots</h2>",
    ]
    captions = {
        "layers_sqnr.png": "Float vs int8 SQNR at each layer's output, in execution order.",
        "layers_drop.png": "The layers that add the most error themselves, with the SQNR each loses "
                           "(inputs' SQNR minus output's).",
        "placement.png": "Multiply-accumulates and ops on the NPU and on the CPU.",
        "outputs.png": "Every output value of the evaluation set: int8 against float.",
    }
    for name in PLOTS:
        if name in plots:
            src, (width, height) = plots[name], sizes.get(name, (900, 360))
            height = round(height * 900 / width)  # shown 900 px wide; the box keeps its size if the file is missing
            parts.append(f"<figure class='plot' id='{name[:-4]}'><img src='{html.escape(src)}' width='900' "
                         f"height='{height}' alt='{html.escape(name)}'><figcaption>{captions[name]}"
                         "</figcaption></figure>")
    memory = report.get("memory")
    if memory:
        parts.append(f"<h2>Will it fit {html.escape(memory['target'])}? {html.escape(memory['fit']['status'])}</h2>")
        kib = (lambda n: "unknown" if n is None else f"{n / 1024:,.1f} KiB")
        parts.append(_table(["memory", "needs", "has", ""], [
            [html.escape(c["what"]), kib(c["need_bytes"]), kib(c["capacity_bytes"]),
             html.escape(c["status"] + (f" ({c['note']})" if c["note"] else ""))] for c in memory["fit"]["checks"]]))
        floor = memory["compute_floor"]
        parts.append(f"<p class='sub'>Weights {kib(memory['weight_bytes'])} (on the NPU {kib(memory['npu_weight_bytes'])}); "
                     f"peak activations {kib(memory['peak_activation_bytes'])} (the CPU part's planned arena plus the "
                     "largest partition's own tensors, from a liveness plan of its TFLite graph). Compute floor: "
                     + ("unknown" if floor["seconds"] is None else f"{floor['seconds'] * 1e3:.2f} ms")
                     + f" for {floor['total_macs'] / 1e6:.1f} M NPU MACs ({html.escape(floor['basis'])}): 100 % MAC "
                     "use and no memory stalls, a bound real inference stays above.</p>")
    gains = q.get("step_gains")
    if gains:
        parts.append("<h2>Accuracy steps: gain where they trained and on held-out samples</h2>")
        parts.append(_table(["step", "on the calibration samples (dB)", "on the held-out samples (dB)", "kept"], [
            [html.escape(g["step"]), f"{g['calibration_gain_db']:+.2f}",
             "-" if g["heldout_gain_db"] is None else f"{g['heldout_gain_db']:+.2f}", "yes" if g["kept"] else "undone"]
            for g in gains]))
        parts.append("<p class='sub'>The int8 model's output SQNR against float before and after each step. A "
                     "step trains on the calibration samples but a held-out share (--holdout); one that does not "
                     "gain on the held-out share is undone.</p>")
    budget = q.get("error_budget")
    if budget:
        parts.append("<h2>Error budget: weights or activations</h2>")
        parts.append(_table(["int8", "SQNR vs float (dB)"], [
            ["weights and activations", _fmt(budget["full_db"])],
            ["only weights (activations float)", _fmt(budget["weights_only_db"])],
            ["only activations (weights float)", _fmt(budget["activations_only_db"])],
        ] + [[f"all but the activation after {html.escape(a['rounds'])}", f"{a['gain_db']:+.2f} gained"]
             for a in budget["activations"]]))
        parts.append(f"<p class='sub'>On {budget['samples']} evaluation samples, every tensor rounded as "
                     f"convert_pt2e rounds it. Mostly limited by the {html.escape(budget['limited_by'])}: "
                     "a technique on the other side cannot lift the result much above the lower figure.</p>")
    parts.append("<h2>Where accuracy is lost most</h2>")
    parts.append("<p class='sub'>Ranked by the error each layer adds (its output's noise-to-signal ratio "
                 "minus its inputs'), so a layer going from near-exact to very good does not outrank one "
                 "where the model's accuracy is lost.</p>")
    parts.append(_table(["layer", "op", "module", "SQNR of its inputs (dB)", "SQNR after (dB)", "SQNR lost (dB)"], [
        [html.escape(l["node"]), html.escape(l["op"]), html.escape(l["module"]),
         _fmt(l["sqnr_db"] + l["drop_db"]),
         _fmt(l["sqnr_db"]), _fmt(l["drop_db"])] for l in report["worst_layers"]]))
    parts.append("<h2>Ops on the CPU and why</h2>")
    reasons: dict[tuple[str, str], list[str]] = {}
    for op in low["cpu_ops"]:
        reasons.setdefault((op["op"], op["reason"]), []).append(op["node"])
    parts.append(_table(["op", "count", "reason", "nodes"], [
        [html.escape(op), str(len(nodes)), html.escape(reason),
         html.escape(", ".join(nodes[:6]) + (", ..." if len(nodes) > 6 else ""))]
        for (op, reason), nodes in sorted(reasons.items(), key=lambda kv: -len(kv[1]))]))
    if low["unenforced_limits"]:
        parts.append("<p class='sub'>Limits not enforced (their numbers are not published for this target): "
                     + html.escape("; ".join(low["unenforced_limits"])) + "</p>")
    parts.append("<h2>Ops on the NPU</h2>")
    parts.append(_table(["op", "count"], [[html.escape(k), str(v)] for k, v in low["op_counts"]["NPU"].items()]))
    parts.append("<h2>Time by phase</h2>")
    parts.append(_table(["phase", "seconds"], [[html.escape(k), f"{v:.1f}"] for k, v in report["timings_s"].items()]))
    parts.append("<h2>All layers</h2>")
    parts.append(_table(["#", "layer", "op", "module", "shape", "SQNR (dB)", "lost here (dB)"], [
        [str(i), html.escape(l["node"]), html.escape(l["op"]), html.escape(l["module"]),
         html.escape(str(l["shape"])), _fmt(l["sqnr_db"]), _fmt(l["drop_db"])]
        for i, l in enumerate(report["layers"])]))
    files = report["files"]
    parts.append(f"<h2>Files</h2><p class='sub'>{html.escape(files['pte'])} ({files['pte_bytes']:,} bytes)"
                 + "".join(f"<br>{html.escape(t)}" for t in files["tflite"]) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: dict, out_dir: Path, layers, placement, ref_logits: Optional[torch.Tensor],
                 int8_logits: Optional[torch.Tensor], final_dir: Optional[Path] = None) -> tuple[Path, Path]:
    """Write plots, report.json and report.html into ``out_dir``; returns (json, html) paths.

    ``final_dir``: where the folder will be once the run is done (the command writes into a
    staging folder and moves it in place); the report names its files there."""
    out_dir = Path(out_dir)
    shown = Path(final_dir) if final_dir is not None else out_dir
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    _plot_layers_sqnr(layers, plot_dir / "layers_sqnr.png")
    _plot_layers_drop(layers, plot_dir / "layers_drop.png")
    _plot_placement(placement, plot_dir / "placement.png")
    plots = {"layers_sqnr.png": "plots/layers_sqnr.png", "layers_drop.png": "plots/layers_drop.png",
             "placement.png": "plots/placement.png"}
    if ref_logits is not None and int8_logits is not None and ref_logits.numel():
        _plot_outputs(ref_logits, int8_logits, plot_dir / "outputs.png")
        plots["outputs.png"] = "plots/outputs.png"
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    report["files"]["html"] = str(shown / "report.html")
    report["files"]["json"] = str(shown / "report.json")
    report["files"]["plots"] = [str(shown / p) for p in plots.values()]
    from PIL import Image

    sizes = {}
    for name, rel in plots.items():
        with Image.open(out_dir / rel) as img:
            sizes[name] = img.size
    html_path.write_text(_html(report, plots, sizes), encoding="utf-8")
    json_path.write_text(json.dumps(json_safe(report), indent=1), encoding="utf-8")
    return json_path, html_path
