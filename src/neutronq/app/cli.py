"""The ``neutronq`` command: quantize a model for the eIQ Neutron NPU, lower it to an ExecuTorch
``.pte``, check the int8 program on this machine and write a report.

  neutronq demo                          EfficientNet-Lite0 on real photo crops, into ./out
  neutronq quantize MODEL [options]      your model (see `neutronq quantize --help`)

Errors you can fix are printed as one line with the fix; add --traceback to see where they came
from. Progress bars show on a terminal (NEUTRONQ_PROGRESS=0 turns them off).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Optional, Sequence

from neutronq import __version__
from neutronq.backend.neutron_target_spec import KNOWN_FLAVORS, KNOWN_TARGETS

__all__ = ["main", "build_parser"]

_QUANTIZE_EXAMPLES = """\
examples:
  # the built-in EfficientNet-Lite0, calibrated on crops of real photos, per-channel weights
  neutronq quantize efficientnet-lite0 --per-channel --out out/lite0

  # your model: a function in a Python file that returns an nn.Module; calibrate on a folder of images
  neutronq quantize my_models.py:make_net --input-shape 1,3,96,96 --calibration images/ --out out/net

  # a saved ExportedProgram (torch.export.save), calibrated on a tensor file [N, 3, 96, 96]
  neutronq quantize net.pt2 --calibration calib.npy --target mcxn94x --tflite

  # quantization-aware training on labelled data (inputs, labels) for 3 epochs
  neutronq quantize my_models.py:make_net --input-shape 1,1,28,28 --qat --train-data train.pt --epochs 3

  # the same QAT on 4 GPUs (one process each, NCCL); --batch-size is the global batch
  torchrun --nproc_per_node 4 -m neutronq quantize my_models.py:make_net --input-shape 1,1,28,28 --qat --train-data train.pt
"""

_DEMO_EXAMPLES = """\
examples:
  python -m neutronq demo                      # report in ./out/report.html
  python -m neutronq demo out/lite0 --per-channel
"""


def _flow():
    """The modules that need torch, torchao and executorch: loaded only once the libraries'
    import-time logging is quieted (``_quiet_libraries``), after ``--help`` and ``--version``."""
    # deferred: torch, torchao and executorch take seconds to import
    from neutronq.app import inputs, pipeline
    from neutronq.quantizer import specs, steps

    return inputs, pipeline, specs, steps


def _observers() -> tuple[list[str], list[str]]:
    specs = _flow()[2]
    return list(specs.ACTIVATION_OBSERVERS), list(specs.WEIGHT_OBSERVERS)


def _add_common(p: argparse.ArgumentParser, out_default: str) -> None:
    acts, weights = _observers()
    g = p.add_argument_group("target")
    g.add_argument("--target", default="imxrt700", choices=list(KNOWN_TARGETS), metavar="TARGET",
                   help="Neutron target (converter name): %(choices)s. Default: %(default)s. "
                        "Example: --target mcxn94x")
    g.add_argument("--flavor", default=None, choices=list(KNOWN_FLAVORS), metavar="FLAVOR",
                   help="converter flavor: %(choices)s. Default: the newest. Example: --flavor SDK_25_09")
    g.add_argument("--no-delegate", action="append", default=[], metavar="OP",
                   help="keep this op on the CPU (aten.conv2d.default or aten::conv2d); repeatable. "
                        "Example: --no-delegate aten::softmax")
    g = p.add_argument_group("quantization")
    g.add_argument("--per-channel", action="store_true",
                   help="quantize conv weights per output channel (TFLite per-axis): more accurate on "
                        "depthwise convs. Default: per tensor, as NXP documents.")
    g.add_argument("--activation-observer", default=None, choices=acts, metavar="NAME",
                   help="how PTQ sets activation ranges: %(choices)s (auto: whichever of histogram, mse "
                        "and percentile measures best on the held-out calibration samples; histogram "
                        "unless another one's gain is clear there). Default: "
                        "histogram. Example: --activation-observer auto")
    g.add_argument("--weight-observer", default=None, choices=weights, metavar="NAME",
                   help="how weight ranges are set: %(choices)s. Default: minmax. "
                        "Example: --weight-observer mse")
    g.add_argument("--equalization", action="store_true", default=None,
                   help="cross-layer equalization of conv -> activation -> conv chains before "
                        "quantizing (helps per-tensor weights on depthwise convs). Example: --equalization")
    g.add_argument("--bias-correction", action="store_true", default=None,
                   help="correct each conv / linear bias for the mean error int8 adds, after "
                        "calibration (PTQ). Example: --bias-correction")
    g.add_argument("--adaround", action="store_true", default=None,
                   help="choose each conv / linear weight's rounding (up or down) to fit the layer's "
                        "output on calibration data (PTQ; minutes on a CPU). Example: --adaround")
    g.add_argument("--distillation", action="store_true", default=None,
                   help="after the steps above, train the int8 conv / linear weights and biases towards "
                        "the float model's outputs on the calibration data (PTQ; about 12 passes with "
                        "gradients, tens of minutes for an EfficientNet on a CPU). Example: --distillation")
    g.add_argument("--distillation-settings", type=_distillation_settings, default=None, metavar="JSON",
                   help="--distillation with these settings (neutronq.quantizer.steps.DistillationSettings), as a JSON "
                        "object (epochs, learning_rate, batch, seed, augment, features, schedule). Example: "
                        "--distillation-settings '{\"augment\": \"flip\", \"learning_rate\": 3e-5}'")
    g.add_argument("--recommended", action="store_true",
                   help="the recommended PTQ accuracy preset (neutronq.ptq.presets), for the "
                        "weight scheme chosen; the options above still override it. Example: --recommended")
    g.add_argument("--error-budget", action="store_true",
                   help="PTQ: measure how much of the int8 error comes from the weights and how much "
                        "from the activations, and which activations cost most (a few more passes "
                        "over 16 evaluation samples)")
    g.add_argument("--holdout", type=float, default=None, metavar="SHARE",
                   help="the share of the calibration samples that AdaRound, bias correction and "
                        "distillation leave out: each step's gain is measured there and a step that "
                        "does not gain is undone. Default: 0.2. Example: --holdout 0 (train on all)")
    g.add_argument("--calibration-count", type=int, default=None, metavar="N",
                   help="use the first N calibration samples. Default: all (100 of the built-in photos). "
                        "Example: --calibration-count 32")
    g.add_argument("--eval-count", type=int, default=100, metavar="N",
                   help="evaluate float vs int8 on N samples. Default: %(default)s.")
    g.add_argument("--sim-count", type=int, default=None, metavar="N",
                   help="of those, run N through the lowered program on this machine. Default: all of them "
                        "emulated (NPU partitions in TFLite's reference int8 arithmetic, bit-exact with LiteRT "
                        "and batched), 50 with --litert. Example: --sim-count 200")
    g.add_argument("--litert", action="store_true",
                   help="run the lowered program in LiteRT's reference kernels (the oracle the emulation "
                        "matches; slow on big models) instead of emulating it. The command falls back to "
                        "LiteRT by itself, saying so, when the emulation does not know an op")
    g.add_argument("--layer-samples", type=int, default=8, metavar="N",
                   help="samples for the per-layer SQNR. Default: %(default)s.")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=out_default, metavar="DIR",
                   help="folder for the .pte, the .tflite files and the report. Default: %(default)s")
    g.add_argument("--tflite", action="store_true",
                   help="also write each NPU partition's int8 .tflite (the NPU converter's input) into "
                        "DIR/tflite, for NXP's tools or LiteRT")
    g.add_argument("--no-report", action="store_true", help="write the .pte only, no HTML/JSON report")
    g.add_argument("--device", default=None, metavar="DEVICE",
                   help="where calibration, QAT and the accuracy steps run: cpu, cuda or cuda:N. Default: cuda "
                        "when a GPU is present, else cpu; under torchrun each process takes GPU LOCAL_RANK. "
                        "Lowering and the host check run on the CPU. Example: --device cpu")
    g.add_argument("--force", action="store_true",
                   help="replace an earlier run in DIR (a folder neutronq wrote; never one holding other "
                        "files). The new run replaces it as a whole when it succeeds; a failed or "
                        "interrupted run leaves it as it was. Without --force an earlier run is refused")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for PyTorch. Default: PyTorch's choice. On a busy shared machine "
                        "--threads 1 is often much faster. Example: --threads 1")
    g.add_argument("--traceback", action="store_true", help="on error, print the full traceback")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neutronq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"neutronq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    q = sub.add_parser(
        "quantize", help="quantize, lower and report on a model",
        description="Export MODEL with torch.export, quantize it to int8 for the Neutron NPU "
                    "(post-training calibration, or QAT), lower it to an ExecuTorch .pte with the NPU "
                    "partitions delegated, run it on this machine and write a report (HTML + JSON).",
        epilog=_QUANTIZE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("model", metavar="MODEL",
                   help="a built-in name (efficientnet-lite0), a saved ExportedProgram (net.pt2), or "
                        "'module:function' / 'file.py:function' returning an nn.Module. "
                        "Example: my_models.py:make_net")
    q.add_argument("--input-shape", default=None, metavar="SHAPE",
                   help="the model's input shape, batch first (needed for module:function models). "
                        "Example: --input-shape 1,3,224,224")
    g = q.add_argument_group("data")
    g.add_argument("--calibration", default=None, metavar="DATA",
                   help="calibration data: an image folder, a .npy / .pt tensor file [N, C, H, W], or "
                        "'photos' (built-in crops of real photographs). Default for built-in models: photos. "
                        "Example: --calibration images/")
    g.add_argument("--eval-data", default=None, metavar="DATA",
                   help="data to compare float and int8 on, same forms as --calibration. Default: the "
                        "built-in photos' evaluation crops, or else the calibration data")
    g.add_argument("--normalize", default=None, choices=["unit", "imagenet", "efficientnet-lite"],
                   help="how image files become inputs: unit = pixels/255, imagenet = torchvision "
                        "mean/std, efficientnet-lite = (pixel-127)/128. Default: the model's (unit for "
                        "your models)")
    g = q.add_argument_group("quantization-aware training")
    g.add_argument("--qat", action="store_true",
                   help="train with fake quantization instead of calibrating (needs --train-data)")
    g.add_argument("--train-data", default=None, metavar="DATA",
                   help="labelled data for QAT: a folder with a subfolder of images per class, a .pt "
                        "holding (inputs, labels), or a .npz with arrays x and y. Example: --train-data train.pt")
    g.add_argument("--epochs", type=int, default=3, metavar="N", help="QAT epochs. Default: %(default)s")
    g.add_argument("--lr", type=float, default=1e-4, metavar="LR", help="QAT learning rate (Adam). Default: %(default)s")
    g.add_argument("--batch-size", type=int, default=32, metavar="N", help="QAT batch size. Default: %(default)s")
    g.add_argument("--train-count", type=int, default=None, metavar="N",
                   help="use the first N training samples. Default: all")
    _add_common(q, "out")
    q.set_defaults(func=_quantize)

    o = sub.add_parser("ops", help="what neutronq does with an op: its quantization rule, NPU lowering and limits",
                       description="The op's quantization rule, the TFLite operators it lowers to on the NPU and "
                                   "the NPU's limits with their sources, or why it stays on the CPU. Without NAME: "
                                   "every op with a rule.")
    o.add_argument("name", nargs="?", default=None, metavar="NAME",
                   help="a rule name or an op name. Example: neutronq ops hardswish, neutronq ops aten.gelu.default")
    o.add_argument("--traceback", action="store_true", help="on error, print the full traceback")
    o.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    o.set_defaults(func=_ops)

    t = sub.add_parser("targets", help="list the Neutron targets with their published figures and sources",
                       description="Every known Neutron target with its NPU, memories and clock as published, "
                                   "each figure's source, and 'unknown' where nobody published it.")
    t.add_argument("--traceback", action="store_true", help="on error, print the full traceback")
    t.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    t.set_defaults(func=_targets)

    d = sub.add_parser(
        "demo", help="the embedded default: EfficientNet-Lite0 on real photo crops -> .pte + report",
        description="Quantize EfficientNet-Lite0 (ImageNet weights) on 100 crops of real photographs, "
                    "lower it for the NPU, check it on this machine on 500 other crops, and write the "
                    ".pte and a report into OUT.",
        epilog=_DEMO_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("out_dir", nargs="?", default=None, metavar="OUT",
                   help="output folder. Default: ./out")
    _add_common(d, "out")
    d.set_defaults(func=_demo, eval_count=500)
    return parser


def _options(args, model: str, **extra):
    inputs, pipeline, _, _ = _flow()
    out = getattr(args, "out_dir", None) or args.out
    if not str(out).strip():
        raise inputs.InputError("--out is empty", "name the folder for the results, e.g. --out out/net")
    return pipeline.JobOptions(
        model=model,
        out_dir=Path(out),
        input_shape=inputs.parse_shape(args.input_shape) if getattr(args, "input_shape", None) else None,
        calibration=getattr(args, "calibration", None),
        calibration_count=args.calibration_count,
        eval_data=getattr(args, "eval_data", None),
        eval_count=args.eval_count,
        sim_count=args.sim_count,
        litert=getattr(args, "litert", False),
        normalize=getattr(args, "normalize", None),
        target=args.target,
        flavor=args.flavor,
        qat=getattr(args, "qat", False),
        train_data=getattr(args, "train_data", None),
        train_count=getattr(args, "train_count", None),
        epochs=getattr(args, "epochs", 3),
        learning_rate=getattr(args, "lr", 1e-4),
        batch_size=getattr(args, "batch_size", 32),
        per_channel=args.per_channel,
        activation_observer=args.activation_observer,
        weight_observer=args.weight_observer,
        equalization=args.equalization,
        bias_correction=args.bias_correction,
        adaround=args.adaround,
        distillation=args.distillation if args.distillation_settings is None else args.distillation_settings,
        recommended=args.recommended,
        error_budget=args.error_budget,
        holdout=args.holdout,
        operators_not_to_delegate=tuple(args.no_delegate),
        tflite=args.tflite,
        layer_samples=args.layer_samples,
        report=not args.no_report,
        force=args.force,
        log=lambda msg: print(f"[neutronq] {msg}", flush=True),
        device=args.device,
        **extra,
    )


def _distillation_settings(text: str) -> dict:
    """--distillation-settings: a JSON object of distill's settings, checked before any work."""
    import json

    try:
        settings = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e.msg}): give a JSON object, e.g. "
                                         "'{\"augment\": \"flip\"}' (single quotes around it in a shell)") from None
    if not isinstance(settings, dict):
        raise argparse.ArgumentTypeError(f"give a JSON object of settings, e.g. '{{\"augment\": \"flip\"}}'; "
                                         f"got {type(settings).__name__}")
    distillation_settings = _flow()[3].distillation_settings

    try:
        return distillation_settings(settings)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _simulated_label(evaluation: dict) -> str:
    with_ = evaluation.get("simulated_with")
    how = {"emulate": "emulated", "litert": "LiteRT"}.get(with_, "host simulation")
    if evaluation.get("simulation_fallback"):
        how += ", the emulation could not run it"
    return f"lowered program ({how})"


def _print_summary(result) -> None:
    r = result.report
    out = r["outputs"]
    low = r["lowering"]
    lines = [f"int8 {r['quantization']['mode']} for {r['quantization']['target']}: "
             f"{low['partitions']} NPU partitions, {100 * low['npu_mac_fraction']:.1f} % of MACs on the NPU, "
             f"{len([o for o in low['cpu_ops'] if 'quantize' not in o['op']])} compute ops on the CPU"]
    for key, label, count in (
            ("quantized_vs_float", "int8 model (convert_pt2e)", out["evaluation"]["samples"]),
            ("simulated_vs_float", _simulated_label(out["evaluation"]), out["evaluation"].get("simulated_samples"))):
        c = out.get(key)
        if c:
            top1 = c.get("top1_agreement")
            agree = f"top-1 agreement {100 * top1:.1f} %, " if top1 is not None else ""
            lines.append(f"{label} vs float on {count} samples: {agree}SQNR {c['sqnr_db']:.1f} dB")
    budget = r["quantization"].get("error_budget")
    if budget:
        lines.append(f"error budget: only weights int8 {budget['weights_only_db']:.1f} dB, only activations "
                     f"int8 {budget['activations_only_db']:.1f} dB: limited by the {budget['limited_by']}")
    if r["worst_layers"]:
        w = r["worst_layers"][0]
        before = w["sqnr_db"] + w["drop_db"]
        lines.append(f"most accuracy lost at {w['node']} ({w['op']}{', ' + w['module'] if w['module'] else ''}): "
                     f"SQNR {before:.1f} -> {w['sqnr_db']:.1f} dB")
    memory = r.get("memory")
    if memory:
        lines.extend(memory["lines"])
    lines.append(f"program: {result.pte_path}")
    for t in result.tflite_paths:
        lines.append(f"partition: {t}")
    if result.html_path:
        lines.append(f"report: {result.html_path} (and {result.json_path.name})")
    print("\n".join(lines))


def _quantize(args) -> int:
    run_job = _flow()[1].run_job

    result = run_job(_options(args, args.model))
    if result.report:  # under torchrun: rank 0's
        _print_summary(result)
    return 0


def _ops(args) -> int:
    from neutronq.lowering.op_table import describe_op, op_table  # deferred: torch, after _quiet_libraries()

    names = [args.name] if args.name else [row.rule for row in op_table()]
    print("\n".join(describe_op(name) for name in names))
    return 0


def _targets(args) -> int:
    print(describe_targets())
    return 0


def describe_targets() -> str:
    """Every known target's published figures and their sources, for ``neutronq targets``."""
    fields = (("neutron_kind", "NPU kind", None), ("core", "NPU core", None),
              ("total_macs", "int8 MACs per cycle", None), ("npu_clock_mhz", "NPU clock", "MHz"),
              ("peak_tops", "peak", "TOPS"), ("sram_bytes", "SRAM", "bytes"), ("flash_bytes", "flash", "bytes"),
              ("npu_weights_from", "NPU reads weights from", None), ("dram_bytes", "DRAM", "bytes"))
    out = []
    for name, info in KNOWN_TARGETS.items():
        out.append(f"{name}: {info.description}")
        for field, label, unit in fields:
            value = getattr(info, field, None)
            if value is None:
                text = "unknown (not published)"
            elif unit == "bytes":
                text = f"{value / 1024:,.0f} KiB" if value < 1024**2 else f"{value / 1024**2:,.1f} MiB"
            else:
                text = f"{value:g} {unit}" if unit else str(value)
            source = (getattr(info, "sources", None) or {}).get(field)
            out.append(f"  {label + ':':<24}{text}" + (f"   [{source}]" if source and value is not None else ""))
    return "\n".join(out)


def _demo(args) -> int:
    run_job = _flow()[1].run_job

    opts = _options(args, "efficientnet-lite0")
    opts.calibration = "photos"
    result = run_job(opts)
    if result.report:
        _print_summary(result)
    return 0


def _one_line(e: BaseException) -> str:
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    return text or type(e).__name__


def _quiet_libraries() -> None:
    """Hide the libraries' import-time chatter (torchao's CUDA-only extensions, torch's pytree
    deprecations); warnings stay hidden unless --traceback is given."""
    for name in ("torchao", "torch.utils._pytree", "torch._export", "torch.export"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _Parser(argparse.ArgumentParser):
    """argparse with the command's one-line errors: the problem, then the fix, exit status 2."""

    command: Optional[str] = None  # the subcommand asked for, for the fix of the top parser's errors

    def error(self, message: str):
        prog = self.prog if self.prog != "neutronq" or not self.command else f"neutronq {self.command}"
        fix = "" if "Fix:" in message else f" Fix: see `{prog} --help`."
        self.exit(2, f"neutronq: error: {message.rstrip('.')}.{fix}\n")


def _show_warnings(verbose: bool) -> None:
    """neutronq's own warnings (numbers int8 cannot represent, a layer's weights coarsened for its
    bias) as one line each; the libraries' warnings only with --traceback."""
    if verbose:
        return
    warnings.filterwarnings("ignore")
    # deferred: torch and torchao load after --help and --version (see _flow)
    from neutronq.quantizer.observers import BiasScaleFloorWarning  # deferred: as above
    from neutronq.quantizer.ranges import RangeWarning  # deferred: as above

    for category in (BiasScaleFloorWarning, RangeWarning):
        warnings.filterwarnings("default", category=category)

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"neutronq: warning: {message}", file=sys.stderr, flush=True)

    warnings.showwarning = show


@contextlib.contextmanager
def _ctrl_c_ends_the_load(enabled: bool):
    """While the libraries load, Ctrl-C prints the one interrupt line and ends the process at once.
    A KeyboardInterrupt raised there can be swallowed: torch's C++ start-up clears any error from
    its own ``import numpy`` and carries on with a half-loaded numpy, which then failed later as
    "module 'numpy' has no attribute 'multiply'". Nothing is written before the load ends, so
    there is nothing to clean up. Only in the main thread (where Python delivers signals)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        print("neutronq: interrupted", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: Optional[Sequence[str]] = None) -> int:
    want_traceback = "--traceback" in (sys.argv[1:] if argv is None else list(argv))
    with _ctrl_c_ends_the_load(not want_traceback):  # --traceback: Ctrl-C raises KeyboardInterrupt
        _quiet_libraries()
        parser = build_parser()
        words = sys.argv[1:] if argv is None else list(argv)
        parser.command = next((w for w in words if w in ("quantize", "demo")), None)
        args = parser.parse_args(argv)
        _show_warnings(args.traceback)
        inputs = _flow()[0]
        inputs.VERBOSE = bool(args.traceback)
        InputError = inputs.InputError

    try:
        if args.threads is not None:
            if args.threads < 1:
                raise InputError(f"--threads {args.threads}: not a thread count",
                                 "give 1 or more, e.g. --threads 1")
            import torch

            torch.set_num_threads(args.threads)
        return args.func(args)
    except InputError as e:
        if args.traceback:
            raise
        print(f"neutronq: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.traceback:
            raise
        print("neutronq: interrupted (an earlier run in the output folder is left as it was)", file=sys.stderr)
        return 130
    except Exception as e:  # a failure inside the flow: one line, the traceback on request
        if args.traceback:
            raise
        print(f"neutronq: error: {type(e).__name__}: {_one_line(e)} (run again with --traceback for "
              "details)", file=sys.stderr)
        return 1
