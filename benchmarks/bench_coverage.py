"""NPU coverage of the public model zoo (``benchmarks/zoo.py``) for one target, as the branch is now.

    .venv/bin/python benchmarks/bench_coverage.py                         # every model, full sizes
    .venv/bin/python benchmarks/bench_coverage.py --quick                 # small sizes (a smoke run)
    .venv/bin/python benchmarks/bench_coverage.py --models vit-small yolo-tiny
    .venv/bin/python benchmarks/bench_coverage.py --doc docs/coverage.md  # also write the doc page

For each model: NXP's default scheme (``NeutronQuantizer``: per-tensor weights), PTQ at batch 1 on
its calibration set, lowering with ``NeutronPartitioner`` for the target (imxrt700 by default), then

  * the share of multiply-accumulates on the NPU, the number of NPU partitions, and every op left
    on the CPU (quantize / dequantize at the float boundary aside) grouped by op and the
    partitioner's reason;
  * int8 (the ``convert_pt2e`` model) against float on the evaluation set: SQNR of the outputs,
    top-1 agreement for classifiers with real weights, ROC AUC of the reconstruction error for the
    FordA autoencoder (float and int8);
  * the host run (``neutronq.run_on_host``'s program, ``load_program`` of the ``.pte``) against the
    int8 model: SQNR and the share of output elements within one quantization step;
  * lowering time split in three: ExecuTorch's own conversion (``to_edge_transform_and_lower``
    without a partitioner), the partitioner's ``partition()`` (``PartitionReport.seconds``) and
    the payloads (``NeutronBackend.preprocess``, ``NeutronBackend.preprocess_seconds``); the
    rest of the partitioned lowering is ExecuTorch's delegation work.

Models with real weights calibrate and evaluate on real data (photo crops, speech, FordA); the
others on random-normal inputs, and their int8 figures only show the flow runs. Writes
``coverage.json`` and ``coverage.md`` into ``--out``. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import platform
import re
import sys
import time
import traceback
import warnings
from collections import defaultdict
from pathlib import Path

import torch
import torch.utils._pytree as pytree

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import zoo  # noqa: E402

# (calibration, evaluation, host-run) samples, for models with real weights / random weights
SIZES = {"full": {"real": (32, 100, 10), "random": (16, 16, 4)},
         "quick": {"real": (8, 16, 2), "random": (4, 4, 1)}}
BOUNDARY_OPS = ("quantized_decomposed.quantize_per_tensor.default",
                "quantized_decomposed.dequantize_per_tensor.default",
                "quantized_decomposed.dequantize_per_channel.default")


def _log(msg: str) -> None:
    print(f"[coverage {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def _outputs(fn, x) -> list[torch.Tensor]:
    return [t.detach() for t in pytree.tree_leaves(fn(x))]


def _run_all(fn, samples: torch.Tensor) -> list[torch.Tensor]:
    """``fn`` on each sample at batch 1; each output concatenated over the samples."""
    per_sample = [_outputs(fn, x[None]) for x in samples]
    return [torch.cat(col) for col in zip(*per_sample)]


def _pooled_sqnr(reference: list, test: list) -> float:
    from neutronq.metrics import sqnr_db

    return sqnr_db(torch.cat([r.flatten() for r in reference]), torch.cat([t.flatten() for t in test]))


def _output_scales(quantized) -> list:
    """The scale of the dequantize that makes each output of the convert_pt2e model (None: float)."""
    dq = torch.ops.quantized_decomposed.dequantize_per_tensor.default
    out = next(n for n in quantized.graph.nodes if n.op == "output")
    return [float(a.args[1]) if getattr(a, "target", None) is dq else None for a in pytree.tree_leaves(out.args[0])]


_NUMBERS = re.compile(r"\(\s*-?\d[\d.e+-]*(?:\s*,\s*-?\d[\d.e+-]*)+\s*\)")  # (0.0088, -128)


def _strip_names(reason: str, names: list[str]) -> str:
    """The reason with graph node names replaced by ``·`` and parenthesised lists of numbers
    (quantization parameters) by ``(…)``, so that reasons group across nodes."""
    for name in names:
        reason = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w])", "·", reason)
    return _NUMBERS.sub("(…)", reason)


def _node_names(graph) -> set:
    """Names of the graph's nodes that reasons may quote (not the output node: 'output' is a word)."""
    return {n.name for n in graph.nodes if n.op != "output"}


def _failing_node(exc: BaseException):
    """(name, edge op) of the node whose TFLite lowering raised ``exc``; None if it was not a lowering."""
    from neutronq.fx import node_op

    found, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "partition_to_tflite" and "node" in tb.tb_frame.f_locals:
            node = tb.tb_frame.f_locals["node"]
            found = (node.name, node_op(node))
        tb = tb.tb_next
    return found


@contextlib.contextmanager
def _refusing(nodes: dict):
    """The partitioner keeps the named nodes on the CPU with the given reasons (benchmark only:
    ``neutronq.lowering.support.node_reason`` answers for them while the block runs)."""
    from neutronq.lowering import support

    original = support.node_reason

    def node_reason(n, *args, **kwargs):
        return nodes[n.name] if n.name in nodes else original(n, *args, **kwargs)

    support.node_reason = node_reason
    try:
        yield
    finally:
        support.node_reason = original


def _source(node, edge_op: str):
    """The PyTorch function of the float model the edge op comes from, when its name differs
    (silu -> sigmoid and mul, hardsigmoid -> clamp and div, max_pool1d -> max_pool2d_with_indices)."""
    fn = node.meta.get("torch_fn")
    if not fn or len(fn) < 2:
        return None
    source = str(fn[1]).split(".")[-1]
    norm = lambda name: name.strip("_").replace("_copy", "")  # noqa: E731
    return None if norm(source) == norm(edge_op.split(".")[1]) else source


def _delegate_check(lowered: dict, calls: list) -> dict:
    """Each delegate's LiteRT outputs in the host run against its own partition run as
    ``convert_pt2e`` computes it (the partition's edge ops on the same int8 inputs): the largest
    difference in steps and the share of elements that differ. One step on a few elements is
    TFLite's two-rounding requantization (``neutronq.lowering.rounding_audit``)."""
    worst, differing, total = 0, 0, 0
    for call in calls:
        reference = lowered.get(call.payload.tflite)
        if reference is None:
            continue
        expected = pytree.tree_leaves(reference(*[torch.from_numpy(x) for x in call.inputs]))
        for e, o in zip(expected, call.outputs):
            diff = (e.to(torch.int32) - torch.as_tensor(o).to(torch.int32)).abs()
            worst, differing, total = max(worst, int(diff.max())), differing + int((diff > 0).sum()), total + diff.numel()
    return {"delegate_max_steps": worst if total else None, "delegate_differing": differing / total if total else None}


def _rounding_audit(calls: list) -> dict:
    """``neutronq.lowering.rounding_audit`` on every delegate with the host run's int8 inputs:
    each CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD and MEAN against the exactly rounded
    result of its own inputs. 'Explained': every difference is one step inside TFLite's
    two-rounding band around a tie."""
    from neutronq.lowering.rounding_audit import audit_payload

    by_payload: dict = {}
    for call in calls:
        by_payload.setdefault(call.payload.tflite, (call.payload, []))[1].append(list(call.inputs))
    audits = [a for payload, inputs in by_payload.values() for a in audit_payload(payload, inputs)]
    unexplained = [{"op": a.op, "node": a.name, "max_steps": a.max_steps, "mismatch_rate": a.mismatch_rate}
                   for a in audits if not a.explained]
    return {"audited_ops": len(audits), "audit_unexplained": unexplained,
            "audit_mismatch_rate": max((a.mismatch_rate for a in audits), default=0.0)}


def _cpu_groups(partitioner, lowered_graph, names: list[str]) -> list[dict]:
    from neutronq.lowering.edge import DATA_MOVEMENT
    from neutronq.lowering.macs import macs

    nodes = {n.name: n for n in lowered_graph.nodes}
    groups: dict = defaultdict(lambda: {"count": 0, "macs": 0, "nodes": []})
    for op in partitioner.report.cpu_ops:
        if op.op in BOUNDARY_OPS or op.op == "getitem":
            continue
        node = nodes.get(op.node)
        source = _source(node, op.op) if node is not None else None
        g = groups[(op.op, source, _strip_names(op.reason, names))]
        g["count"] += 1
        g["macs"] += macs(node) if node is not None else 0
        g["nodes"].append(op.node)
        g.setdefault("example", op.reason)  # one reason as the partitioner wrote it
    rows = [{"op": op, "from": source, "reason": reason, "data_movement": op in DATA_MOVEMENT, **g}
            for (op, source, reason), g in groups.items()]
    return sorted(rows, key=lambda r: (r["data_movement"], -r["macs"], -r["count"], r["op"]))


def measure(entry: "zoo.ZooModel", quick: bool, target: str, per_channel: bool = False) -> dict:
    import executorch.kernels.quantized  # noqa: F401  (CPU kernels of quantize / dequantize for the .pte)
    from executorch.exir import to_edge_transform_and_lower
    from executorch.exir.lowered_backend_module import LoweredBackendModule

    from neutronq import NeutronPartitioner, NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize
    from neutronq import generate_neutron_compile_spec, load_program
    from neutronq.lowering.payload import decode_payload
    from neutronq.metrics import top1_agreement, within_one_step
    from neutronq.nxp_backend import NeutronBackend
    from neutronq.runtime import recording_delegate_calls

    calibration, evaluation, host = SIZES["quick" if quick else "full"]["real" if entry.real_weights else "random"]
    if entry.evaluation is not None and not quick:
        evaluation = entry.evaluation
    row: dict = {"model": entry.name, "source": entry.source, "weights": entry.weights,
                 "scheme": "per channel" if per_channel else "per tensor"}
    (model, build_s) = _timed(entry.build)
    data = entry.data(calibration, evaluation)
    row.update(data=data.description, calibration_samples=len(data.calibration),
               evaluation_samples=len(data.evaluation), parameters=zoo.count_parameters(model),
               input_shape=[1, *data.calibration.shape[1:]], build_s=build_s)
    example = (data.calibration[:1],)
    with torch.no_grad():
        exported, export_s = _timed(torch.export.export, model, example)
        quantized, quantize_s = _timed(calibrate_and_quantize, exported, [(c[None],) for c in data.calibration],
                                       NeutronQuantizer(NeutronTargetSpec(target), per_channel=per_channel))
        row.update(export_s=export_s, quantize_s=quantize_s)

        # int8 (convert_pt2e) against float
        reference, int8 = _run_all(model, data.evaluation), _run_all(quantized, data.evaluation)
        row["int8_vs_float_sqnr_db"] = _pooled_sqnr(reference, int8)
        if entry.classifier:
            row["int8_vs_float_top1"] = top1_agreement(reference[0], int8[0])
        if data.labels is not None:  # the autoencoder: anomaly score = reconstruction error
            err = lambda out: (out - data.evaluation).pow(2).mean(-1)  # noqa: E731
            row["auc_float"] = zoo.auc(err(reference[0]), data.labels == 1)
            row["auc_int8"] = zoo.auc(err(int8[0]), data.labels == 1)

        # lowering: ExecuTorch alone, then with the partitioner (each on its own export). A node
        # whose TFLite lowering raises is kept on the CPU and the lowering redone, so that the
        # rest of the model is still measured; the failure is recorded.
        plain, et_s = _timed(to_edge_transform_and_lower, torch.export.export(quantized, example))
        names = _node_names(plain.exported_program().graph)
        refused, failures = {}, []
        while True:
            partitioner = NeutronPartitioner(generate_neutron_compile_spec(target))
            NeutronBackend.reset_timing()
            try:
                with warnings.catch_warnings(), _refusing(refused):
                    warnings.simplefilter("ignore")
                    edge, lower_s = _timed(to_edge_transform_and_lower, torch.export.export(quantized, example),
                                           partitioner=[partitioner])
                break
            except Exception as e:  # noqa: BLE001
                failing = _failing_node(e)
                if failing is None or failing[0] in refused or len(refused) >= 20:
                    raise
                error = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                failures.append({"node": failing[0], "op": failing[1], "error": error})
                refused[failing[0]] = f"bench_coverage: its NPU lowering raised {error}"
                _log(f"{entry.name}: lowering {failing[0]} ({failing[1]}) failed ({error}); again with it on the CPU")
        report = partitioner.report
        graph = edge.exported_program().graph
        names = sorted(names | _node_names(graph), key=len, reverse=True)
        groups = _cpu_groups(partitioner, graph, names)
        row.update(lowering_failures=failures,
            macs_total=report.macs_total, macs_npu=report.macs_npu, npu_mac_fraction=report.npu_mac_fraction,
            partitions=len(report.partitions), payloads=NeutronBackend.preprocess_calls,
            cpu_compute_ops=sum(g["count"] for g in groups if not g["data_movement"]),
            cpu_data_movement_ops=sum(g["count"] for g in groups if g["data_movement"]),
            cpu_groups=groups, unenforced_limits=sorted({str(u) for u in report.unenforced_limits}),
            lowering_s={"executorch_alone": et_s, "with_partitioner": lower_s, "partition": report.seconds,
                        "payloads": NeutronBackend.preprocess_seconds,
                        "executorch_in_partitioned": lower_s - report.seconds - NeutronBackend.preprocess_seconds},
        )

        # the host run against the int8 model, and each delegate against its partition's ops
        lowered = {decode_payload(m.processed_bytes).tflite: m.original_module.module()
                   for _, m in edge.exported_program().graph_module.named_children()
                   if isinstance(m, LoweredBackendModule)}
        pte, to_pte_s = _timed(lambda: edge.to_executorch().buffer)
        row["memory"] = _memory(pte)
        program = load_program(pte)
        samples = data.evaluation[:host]
        with recording_delegate_calls(program) as calls:
            (on_host, host_s) = _timed(_run_all, program, samples)
        row.update(_delegate_check(lowered, calls))
        row.update(_rounding_audit(calls))
        int8_host = [t[: len(samples)] for t in int8]
        scales = _output_scales(quantized)
        within = [within_one_step(q, h, s) for q, h, s in zip(int8_host, on_host, scales) if s is not None]
        row.update(to_executorch_s=to_pte_s, host_samples=len(samples), host_s_per_sample=host_s / max(1, len(samples)),
                   host_vs_int8_sqnr_db=_pooled_sqnr(int8_host, on_host),
                   host_within_one_step=min(within) if within else None,
                   host_vs_float_sqnr_db=_pooled_sqnr([t[: len(samples)] for t in reference], on_host))
        if entry.classifier:
            row["host_vs_float_top1"] = top1_agreement(reference[0][: len(samples)], on_host[0])
    return row


# ------------------------------------------------------------------------------------------
MEMORY_TARGETS = ("mcxn94x", "imxrt700", "imx95")


def _memory(pte: bytes) -> dict:
    """Weights, peak activations, the fit and the compute floor of the program on each of
    ``MEMORY_TARGETS`` (``neutronq.lowering.memory``; the program as lowered for ``--target``)."""
    from neutronq import NeutronTargetSpec
    from neutronq.lowering.memory import compute_floor, fits, program_memory

    memory = program_memory(pte)
    out = {"weight_bytes": memory.weight_bytes, "npu_weight_bytes": memory.npu_weight_bytes,
           "peak_activation_bytes": memory.peak_activation_bytes, "targets": {}}
    for target in MEMORY_TARGETS:
        spec = NeutronTargetSpec(target)
        fit = fits(memory, spec)
        floor = compute_floor(memory.npu_macs, spec)
        out["targets"][target] = {
            "status": fit.status,
            "short": [c.what for c in fit.checks if c.status == "does not fit"],
            "floor_ms": floor.seconds * 1e3 if floor.known else None}
    return out


def _kib(n) -> str:
    return "-" if n is None else (f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB")


def memory_table(rows: list[dict]) -> str:
    """One row per model: weights, peak activations, and per target fits / does not fit with the
    compute floor (100 % MAC use, no memory stalls)."""
    head = ("| model | weights (NPU) | peak activations | "
            + " | ".join(f"{t}: fits? / compute floor" for t in MEMORY_TARGETS) + " |")
    lines = [head, "|" + "---|" * (3 + len(MEMORY_TARGETS))]
    for r in rows:
        m = r.get("memory")
        if not m:
            continue
        cells = []
        for t in MEMORY_TARGETS:
            c = m["targets"][t]
            floor = "floor unknown" if c["floor_ms"] is None else f"{c['floor_ms']:.2f} ms"
            short = f" ({'; '.join(c['short'])})" if c["short"] else ""
            cells.append(f"{c['status']}{short} / {floor}")
        lines.append(f"| {r['model']} | {_kib(m['weight_bytes'])} ({_kib(m['npu_weight_bytes'])}) | "
                     f"{_kib(m['peak_activation_bytes'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _f(v, digits=1, pct=False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "inf" if v > 0 else str(v)
        return f"{100 * v:.{digits}f} %" if pct else f"{v:.{digits}f}"
    return str(v)


def _short(op: str) -> str:
    return op.replace("aten.", "").replace(".default", "")


def _cpu_summary(row: dict, limit: int = 5) -> str:
    compute = [g for g in row["cpu_groups"] if not g["data_movement"]]
    counts = defaultdict(int)
    for g in compute:
        counts[_short(g["op"]) + (f" ({_short(g['from'])})" if g.get("from") else "")] += g["count"]
    parts = [f"{op} x{c}" for op, c in sorted(counts.items(), key=lambda kv: -kv[1])]
    text = ", ".join(parts[:limit]) + (f", +{len(parts) - limit} more" if len(parts) > limit else "") or "none"
    failed = sorted({_short(f["op"]) for f in row.get("lowering_failures", [])})
    return (f"**lowering raised on {len(row['lowering_failures'])} {'/'.join(failed)} node(s)**, kept on the CPU; "
            if failed else "") + text


def _audit(row: dict) -> str:
    if "audited_ops" not in row:
        return "-"
    bad = len(row["audit_unexplained"])
    return f"{row['audited_ops']} ops, " + (f"**{bad} unexplained**" if bad else "all explained")


def _weights(row: dict) -> str:
    if row["weights"].startswith("random"):
        return "random"
    return "trained here" if "trained" in row["weights"] else "real"


TABLE_HEAD = ("| model | weights | MMACs | MACs on NPU | NPU partitions | CPU compute ops | int8 vs float SQNR dB "
              "| top-1 agreement (AUC) | host vs int8: SQNR dB / within 1 step / rounding audit "
              "| lowering s: ET alone / partition / payloads / total | CPU compute ops by type |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|")


def table(rows: list[dict]) -> str:
    lines = [TABLE_HEAD]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {_weights(r) if 'weights' in r else ''} | | failed: "
                         f"{r['error'].replace('|', '/')} | | | | | | | |")
            continue
        top1 = _f(r.get("int8_vs_float_top1"), pct=True)
        if "auc_float" in r:
            top1 = f"AUC {r['auc_float']:.3f} float, {r['auc_int8']:.3f} int8"
        t = r["lowering_s"]
        lines.append(
            f"| {r['model']} | {_weights(r)} | {r['macs_total'] / 1e6:.1f} | {_f(r['npu_mac_fraction'], 2, pct=True)} | "
            f"{r['partitions']} | {r['cpu_compute_ops']} | {_f(r['int8_vs_float_sqnr_db'])} | {top1} | "
            f"{_f(r['host_vs_int8_sqnr_db'])} / {_f(r['host_within_one_step'], 1, pct=True)} / {_audit(r)} | "
            f"{t['executorch_alone']:.1f} / {t['partition']:.2f} / {t['payloads']:.2f} / {t['with_partitioner']:.1f} | "
            f"{_cpu_summary(r)} |")
    return "\n".join(lines) + "\n"


def details(rows: list[dict]) -> str:
    out = []
    for r in rows:
        out.append(f"### {r['model']}\n")
        if "error" in r:
            out.append(f"{r.get('source', '')}. **Failed** ({r.get('git', '')}): `{r['error']}`\n")
            continue
        out.append(f"{r['source']}. Weights: {r['weights']}. Data: {r['data']} ({r['calibration_samples']} "
                   f"calibration / {r['evaluation_samples']} evaluation samples, host run on {r['host_samples']}). "
                   f"Input {r['input_shape']}, {r['parameters']:,} parameters, {r['macs_total'] / 1e6:.2f} MMACs; "
                   f"measured at {r.get('git', '?')}.\n")
        if r.get("delegate_max_steps") is not None:
            out.append(f"Host run: {_f(r['host_vs_int8_sqnr_db'])} dB against the int8 model, "
                       f"{_f(r['host_within_one_step'], 1, pct=True)} of output elements within one step; the "
                       f"delegates against their own partitions' ops: at most {r['delegate_max_steps']} step(s), "
                       f"on {_f(r['delegate_differing'], 3, pct=True)} of their output elements. Rounding audit: "
                       f"{r['audited_ops']} conv / depthwise / fully connected / add / mean ops, "
                       + ("every difference one step inside the two-rounding band (at most "
                          f"{_f(r['audit_mismatch_rate'], 2, pct=True)} of an op's elements)"
                          if not r["audit_unexplained"] else "unexplained: " + ", ".join(
                              f"{u['op']} {u['node']} ({u['max_steps']} steps, {_f(u['mismatch_rate'], 2, pct=True)})"
                              for u in r["audit_unexplained"])) + ".\n")
        for f in r.get("lowering_failures", []):
            out.append(f"- **The NPU lowering of `{f['node']}` (`{f['op']}`) raised** `{f['error']}`; measured with "
                       "that node kept on the CPU.")
        if r.get("lowering_failures"):
            out.append("")
        if not r["cpu_groups"]:
            out.append("On the CPU: only the float input's quantize and the outputs' dequantize.\n")
        else:
            out.append("| on the CPU | count | MMACs | partitioner's reason |\n|---|---|---|---|")
            for g in r["cpu_groups"]:
                kind = " (data movement)" if g["data_movement"] else ""
                kind += f" from `{g['from']}`" if g.get("from") else ""
                out.append(f"| `{g['op']}`{kind} | {g['count']} | {g['macs'] / 1e6:.2f} | "
                           f"{g['reason'].replace('|', '/')} |")
            out.append("")
        if r["unenforced_limits"]:
            out.append("Limits not enforced (no published number): " + "; ".join(r["unenforced_limits"]) + "\n")
    return "\n".join(out)


def missing_ops(rows: list[dict]) -> str:
    """Across the zoo: each compute op left on the CPU, the models it is in, and the reasons."""
    by_op: dict = defaultdict(lambda: {"count": 0, "models": set(), "reasons": set()})
    for r in rows:
        if "error" in r:
            continue
        for g in r["cpu_groups"]:
            if g["data_movement"]:
                continue
            e = by_op[g["op"] + (f"` from `{g['from']}" if g.get("from") else "")]
            e["count"] += g["count"]
            e["models"].add(r["model"])
            e["reasons"].add(g["reason"])
    lines = ["| op on the CPU (edge op, from the model's ATen op) | nodes | models | reasons |", "|---|---|---|---|"]
    for op, e in sorted(by_op.items(), key=lambda kv: (-len(kv[1]["models"]), -kv[1]["count"])):
        lines.append(f"| `{op}` | {e['count']} | {', '.join(sorted(e['models']))} | "
                     f"{'; '.join(sorted(e['reasons'])).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def markdown(results: dict) -> str:
    head = (f"NPU coverage, {results['target']}, NXP's default scheme (per-tensor weights); "
            f"{results['created']}, {results['machine']}" + (" (quick sizes)" if results["quick"] else "") + ".\n\n")
    return (head + table(results["models"]) + "\n## Compute ops on the CPU across the zoo\n\n"
            + missing_ops(results["models"]) + "\n## Memory and compute floor on three targets\n\n"
            + memory_table(results["models"]) + "\n## Per model\n\n" + details(results["models"]))


def _git() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(HERE), "describe", "--always", "--dirty"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - only a label
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", choices=list(zoo.ZOO), help="only these models (default: all); "
                        "their rows replace those of an earlier run in --out, the other rows are kept")
    parser.add_argument("--quick", action="store_true", help="small sizes (calibration / evaluation / host-run "
                        "samples): %(real)s with real weights, %(random)s with random weights" % SIZES["quick"])
    parser.add_argument("--target", default="imxrt700")
    parser.add_argument("--per-channel", action="store_true",
                        help="per-channel conv weights instead of NXP's per-tensor default (use its own --out)")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for coverage.json and coverage.md")
    parser.add_argument("--fresh", action="store_true", help="ignore an earlier coverage.json in --out")
    parser.add_argument("--doc", help="also write this markdown page (docs/coverage.md) from the results")
    parser.add_argument("--render-only", action="store_true", help="measure nothing: rewrite coverage.md "
                        "(and --doc) from --out/coverage.json")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    previous = out / "coverage.json"
    results = json.loads(previous.read_text()) if previous.exists() and not args.fresh else None
    if results is not None and (results.get("target") != args.target or results.get("quick") != args.quick) \
            and not args.render_only:
        _log(f"{previous} holds another target or size: starting afresh")
        results = None
    if results is None:
        results = {"target": args.target, "quick": args.quick, "sizes": SIZES["quick" if args.quick else "full"],
                   "models": []}
    results.update(created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   machine=f"{platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    git = _git()

    def save():
        order = list(zoo.ZOO)
        results["models"].sort(key=lambda r: order.index(r["model"]) if r["model"] in order else len(order))
        previous.write_text(json.dumps(results, indent=1, default=str))
        (out / "coverage.md").write_text(markdown(results))

    for name in ([] if args.render_only else args.models or list(zoo.ZOO)):
        _log(f"{name}")
        start = time.perf_counter()
        try:
            row = measure(zoo.ZOO[name], args.quick, args.target, args.per_channel)
        except Exception as e:  # noqa: BLE001 - one model's failure must not stop the others
            row = {"model": name, "source": zoo.ZOO[name].source, "weights": zoo.ZOO[name].weights,
                   "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}",
                   "traceback": traceback.format_exc()}
            _log(f"{name} failed: {row['error']}")
        row.update(total_s=time.perf_counter() - start, git=git)
        results["models"] = [r for r in results["models"] if r["model"] != name] + [row]
        save()
        if "error" not in row:
            _log(f"{name}: {100 * row['npu_mac_fraction']:.2f} % of MACs on the NPU, {row['partitions']} partitions, "
                 f"{row['cpu_compute_ops']} CPU compute ops, {row['total_s']:.0f} s")
    save()
    print(table(results["models"]))
    if args.doc:
        doc = Path(args.doc)
        doc.write_text(doc_page(results, doc.read_text() if doc.exists() else ""))
        print(f"wrote {args.doc}")
    print(f"wrote {out / 'coverage.json'} and {out / 'coverage.md'}")
    return 0


DOC_INTRO = """# NPU coverage of the model zoo

How much of each model of a public zoo neutronq puts on the eIQ Neutron NPU today, what stays on
the CPU and why, how close the int8 model is to float, how close the host run of the lowered
program is to the int8 model, and where the lowering time goes. The models are defined in
[`benchmarks/zoo.py`](../benchmarks/zoo.py) (our own code, to the reference layer shapes); the
measurement is [`benchmarks/bench_coverage.py`](../benchmarks/bench_coverage.py).

Reproduce (this page is written from `benchmarks/results/coverage.json`):

    .venv/bin/python benchmarks/bench_coverage.py --doc docs/coverage.md                  # every model
    .venv/bin/python benchmarks/bench_coverage.py --models vit-small yolo-tiny --doc docs/coverage.md
    .venv/bin/python benchmarks/bench_coverage.py --quick --out /tmp/coverage             # smoke run

`--models` re-measures only those models and keeps the other rows of the earlier run (each row
names the commit it was measured at); `--render-only` rewrites the page from the JSON.

How each model is measured: NXP's default scheme (`NeutronQuantizer`, per-tensor weights), PTQ at
batch 1, lowering with `NeutronPartitioner` for the target. Models with real weights calibrate and
evaluate on real data: photo crops of `neutronq.data.photos` for the ImageNet models (the first
crops calibrate, later crops evaluate), speech of Debian's `pocketsphinx-testdata` for Silero
(calibration and evaluation from different recordings), FordA for the autoencoder (calibration on
normal training series, evaluation on the whole test split). Models with random weights use
random-normal inputs: their SQNR figures only show that the flow runs end to end.

Columns:
- *MACs on NPU*: multiply-accumulates of convs, linears and matmuls inside NPU partitions, over all.
- *CPU compute ops*: ops left on the CPU other than data movement (view, permute, slice, cat ...)
  and the quantize / dequantize at the float boundary; the reasons are the partitioner's.
- *int8 vs float*: the `convert_pt2e` model against the float model on the evaluation set, SQNR of
  the outputs pooled over the set; top-1 agreement for the ImageNet classifiers; for the FordA
  autoencoder, ROC AUC of the reconstruction error (anomaly = FordA label +1) for float and int8.
- *host vs int8*: the lowered `.pte` run by `neutronq.run_on_host`'s program (`load_program`:
  delegates in LiteRT's reference kernels) against the `convert_pt2e` model: SQNR, and the
  fraction of output elements within one output quantization step (the worst output); then the
  rounding audit (`neutronq.lowering.rounding_audit`) of every conv, depthwise conv, fully
  connected, add and mean in the delegates on the host run's own int8 inputs: "all explained"
  means every difference from exact rounding is one step inside TFLite's two-rounding band, so a
  larger gap at the output is that rounding amplified by the network, not a lowering error. The
  per-model section also compares each delegate's outputs with its partition's ops run as
  `convert_pt2e` computes them (differences there include propagation inside the partition).
- *lowering s*: `to_edge_transform_and_lower` without a partitioner (ExecuTorch's own conversion),
  the partitioner's `partition()` (`PartitionReport.seconds`), building the payloads
  (`NeutronBackend.preprocess_seconds`), and the whole lowering with the partitioner (its
  remainder is ExecuTorch's delegation work). Wall times on a shared two-core machine, one
  thread: take them to a few seconds.

A node whose TFLite lowering raises (the partitioner accepted it, the lowering cannot do it) is kept
on the CPU and the lowering redone, so that the rest of the model is still measured; the table says
so, and the node's reason reads "bench_coverage: its NPU lowering raised ...".

## Results

"""


GENERATED_START = "<!-- bench_coverage.py writes from here -->"
GENERATED_END = "<!-- bench_coverage.py writes up to here; the text below is kept -->"


MEMORY_INTRO = """The lowered program of each model (as lowered for the table's target) against each
target's published memories (`neutronq targets`, `docs/targets.md`): int8 weights and biases (those
in NPU payloads in brackets), the peak of the activation arena, whether it fits, and the compute
floor: the NPU's MACs at 100 % use with no memory stalls, where the target's MAC rate and clock
are published (`neutronq.lowering.memory`). The job prints the same for one target.

"""


def doc_page(results: dict, existing: str = "") -> str:
    """docs/coverage.md: how to reproduce, the table, the ops on the CPU across the zoo and per
    model. Text after ``GENERATED_END`` in ``existing`` (the page as it was) is kept."""
    head = (f"Target {results['target']}; {results['machine']}"
            + (" (quick sizes)" if results["quick"] else "") + "; rows measured at "
            + ", ".join(sorted({r.get('git', '?') for r in results['models']})) + ".\n\n")
    generated = (DOC_INTRO + head + table(results["models"]) + "\n## Compute ops on the CPU across the zoo\n\n"
                 + missing_ops(results["models"])
                 + "\n## Memory and compute floor on three targets\n\n" + MEMORY_INTRO + memory_table(results["models"])
                 + "\n## Per model: what stays on the CPU\n\n"
                 + details(results["models"]))
    kept = existing.split(GENERATED_END, 1)[1] if GENERATED_END in existing else "\n"
    return f"{GENERATED_START}\n{generated}\n{GENERATED_END}{kept}"


if __name__ == "__main__":
    sys.exit(main())
