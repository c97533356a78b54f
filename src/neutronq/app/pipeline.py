"""The main job, one phase after another: load, export, quantize (PTQ or QAT), lower, write the
``.pte``, check on the host, measure per-layer fidelity, write the report.

``run_job(JobOptions(...))`` is what ``neutronq quantize`` and ``neutronq demo`` call. Each phase
is a small function, timed; problems the user can fix raise ``InputError``. The report is built
by ``neutronq.report`` from the results the phases return.
"""

from __future__ import annotations

import datetime
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch.utils.data import DistributedSampler
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

import neutronq
from neutronq._progress import progress
from neutronq.app.inputs import (
    NORMALIZATIONS,
    InputError,
    LoadedModel,
    export_model,
    load_calibration,
    load_model,
    load_training,
    note,
)
from neutronq.app.placement import Placement, place
from neutronq.app.output import OutputFolder
from neutronq.backend.neutron_target_spec import NeutronTargetSpec
from neutronq.devices import move_model
from neutronq.lowering.memory import compute_floor, fits, program_memory
from neutronq.lowering.support import parse_op_name
from neutronq.metrics import sqnr_db, top1_agreement
from neutronq.ptq import distributed as nqd
from neutronq.ptq.activation_choice import ACTIVATION_CHOICE_META
from neutronq.ptq.error_budget import error_budget
from neutronq.ptq.flow import calibrate_and_quantize, prepare_and_calibrate
from neutronq.ptq.heldout import STEP_GAINS_META
from neutronq.ptq.presets import recommended_options
from neutronq.quantizer.neutron_quantizer import NeutronQuantizer
from neutronq.quantizer.qat import QATSchedule
from neutronq.report.html import write_report
from neutronq.report.layers import per_layer_fidelity, worst_layers
from neutronq.report.ops import graph_macs, op_placement

__all__ = ["JobOptions", "JobResult", "run_job"]

LITERT_SAMPLES = 50  # evaluation samples run in LiteRT (slow) unless sim_count says otherwise


@dataclass
class JobOptions:
    model: str
    out_dir: Path = Path("out")
    input_shape: Optional[tuple[int, ...]] = None
    calibration: Optional[str] = None  # None: the model's default ('photos' for built-ins)
    calibration_count: Optional[int] = None
    eval_data: Optional[str] = None  # None: the built-in evaluation crops, else the calibration data
    eval_count: int = 100  # float vs int8 (convert_pt2e) in PyTorch
    sim_count: Optional[int] = None  # of those, run through the lowered program on the host; None: all of them
    # emulated (neutronq.emulate, bit-exact with LiteRT, batched), 50 with LiteRT
    litert: bool = False  # run the lowered program in LiteRT's reference kernels (the oracle, slow) instead
    normalize: Optional[str] = None  # None: the model's own ('unit' for user models)
    target: str = "imxrt700"
    flavor: Optional[str] = None
    qat: bool = False
    train_data: Optional[str] = None
    train_count: Optional[int] = None
    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 32
    per_channel: bool = False
    activation_observer: Optional[str] = None  # None: the quantizer's default (or the preset's)
    weight_observer: Optional[str] = None
    equalization: Optional[bool] = None  # cross-layer equalization before annotation
    bias_correction: Optional[bool] = None  # empirical bias correction after calibration
    adaround: Optional[bool] = None  # adaptive weight rounding after calibration
    distillation: Union[None, bool, dict] = None  # train the int8 weights towards the float model (after the
    # above); a dict: distill's settings
    recommended: bool = False  # neutronq.ptq.presets' recommended preset, then the options above
    error_budget: bool = False  # PTQ: int8 error from weights vs activations (neutronq.ptq.error_budget)
    holdout: Optional[float] = None  # share of the calibration samples the training steps leave out
    operators_not_to_delegate: tuple[str, ...] = ()
    tflite: bool = False
    layer_samples: int = 8
    report: bool = True
    force: bool = False  # replace an earlier run's folder (only a folder a run wrote)
    log: Callable[[str], None] = print
    device: Optional[str] = None  # None: CUDA when present (under torchrun: this process's GPU), else the CPU


@dataclass
class JobResult:
    report: dict
    pte_path: Optional[Path] = None
    html_path: Optional[Path] = None
    json_path: Optional[Path] = None
    tflite_paths: list[Path] = field(default_factory=list)


class _Timer:
    """Times each phase and logs it when it ends (progress where no progress bar shows)."""

    def __init__(self, log: Callable[[str], None] = lambda msg: None):
        self.seconds: dict[str, float] = {}
        self.log = log

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        yield
        took = time.perf_counter() - start  # not reached when the phase fails: nothing to log
        self.seconds[name] = self.seconds.get(name, 0.0) + took
        self.log(f"{name}: {took:.1f} s")


def _batches(samples: torch.Tensor, batch: int) -> list[tuple[torch.Tensor]]:
    """Samples [N, ...] as model inputs of the exported batch size (a partial tail is dropped)."""
    count = (len(samples) // batch) * batch
    return [(samples[i : i + batch],) for i in range(0, count, batch)]


def _check_count(flag: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{flag} {value}: not a count", f"give a whole number of 1 or more, e.g. {flag} 16")


def check_options(opts: JobOptions) -> None:
    """The options' own values, before any work: counts, rates, op names."""
    _check_count("--calibration-count", opts.calibration_count, allow_none=True)
    _check_count("--eval-count", opts.eval_count)
    _check_count("--sim-count", opts.sim_count, allow_none=True)
    _check_count("--layer-samples", opts.layer_samples)
    _check_count("--train-count", opts.train_count, allow_none=True)
    if opts.qat:
        _check_count("--epochs", opts.epochs)
        _check_count("--batch-size", opts.batch_size)
        if not (isinstance(opts.learning_rate, (int, float)) and math.isfinite(opts.learning_rate)
                and opts.learning_rate > 0):
            raise InputError(f"--lr {opts.learning_rate}: not a learning rate",
                             "give a positive number, e.g. --lr 1e-4")
    if opts.holdout is not None and not (isinstance(opts.holdout, (int, float)) and 0.0 <= opts.holdout < 1.0):
        raise InputError(f"--holdout {opts.holdout}: not a share of the calibration samples",
                         "give a number from 0 up to (not including) 1, e.g. --holdout 0.2 (0: train on all)")
    for name in opts.operators_not_to_delegate:
        _check_op_name(name)


def _check_op_name(name: str) -> None:
    """An ``operators_not_to_delegate`` name that reads as an op and names an op that exists."""
    try:
        op = parse_op_name(name)
    except ValueError:
        raise InputError(f"--no-delegate {name!r} is not an op name",
                         "write it as aten::conv2d (namespace::op) or aten.conv2d.default") from None
    namespace = getattr(torch.ops, op.namespace, None)
    packet = getattr(namespace, op.op, None) if namespace is not None else None
    if packet is None or (op.overload is not None and op.overload not in packet.overloads()):
        raise InputError(f"--no-delegate {name!r}: there is no op {op.namespace}::{op.op}"
                         f"{'.' + op.overload if op.overload else ''}",
                         "name an op of the model as PyTorch spells it, e.g. aten::conv2d, aten::linear, "
                         "aten::softmax")


def quantizer_options(opts: JobOptions) -> dict:
    """NeutronQuantizer keyword arguments: the recommended preset (if asked), then explicit options."""
    options: dict = {"per_channel": opts.per_channel}
    if opts.recommended:
        if opts.qat:
            raise InputError("--recommended is a PTQ preset (AdaRound fits weights to calibration data)",
                             "drop --recommended with --qat, or drop --qat")
        options.update(recommended_options(opts.per_channel))
    for flag in ("adaround", "distillation"):
        if opts.qat and getattr(opts, flag) not in (None, False):  # {}: distillation with its defaults
            raise InputError(f"--{flag} is a PTQ step (it fits weights to calibration data)",
                             f"drop --{flag} with --qat, or drop --qat")
    for name in ("activation_observer", "weight_observer", "equalization", "bias_correction", "adaround",
                 "distillation", "holdout"):
        value = getattr(opts, name)
        if value is not None:
            options[name] = value
    return options


def _quantizer(opts: JobOptions) -> NeutronQuantizer:
    spec = NeutronTargetSpec(target=opts.target, converter_flavor=opts.flavor)
    return NeutronQuantizer(spec, is_qat=opts.qat, **quantizer_options(opts))


def quantization_settings(quantizer: NeutronQuantizer) -> dict:
    """What the quantizer does, for the report: observers and the accuracy steps it runs."""
    steps = quantizer.steps
    distillation = steps.distillation
    return {"activation_observer": quantizer.scheme.activation_observer,
            "weight_observer": quantizer.scheme.weight_observer,
            "equalization": quantizer.equalization,
            "bias_correction": steps.bias_correction,
            "adaround": steps.adaround,
            "distillation": distillation is not None,
            # a value JSON cannot hold (an augment function) as its repr
            "distillation_settings": None if distillation is None else {
                k: v if isinstance(v, (bool, int, float, str, type(None))) else repr(v)
                for k, v in distillation.items()}}


def _train_fn(opts: JobOptions, x: torch.Tensor, y: torch.Tensor, where: Placement):
    """QAT on ``where.device``; across processes each takes its share of every batch of
    ``opts.batch_size`` (the global batch: the same images at each step for any number of processes)."""
    def train(prepared) -> None:
        model = nqd.wrap(prepared)  # DistributedDataParallel across processes; the model itself in one
        schedule = QATSchedule(model, freeze_observers_after=max(1, math.ceil(opts.epochs * 2 / 3)))
        optimizer = torch.optim.Adam(prepared.parameters(), lr=opts.learning_rate)
        loss_fn = torch.nn.CrossEntropyLoss()
        sampler = DistributedSampler(range(len(x)), num_replicas=where.world, rank=where.rank, seed=0)
        per_process = max(1, opts.batch_size // where.world)
        for epoch in range(opts.epochs):
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler))
            steps = range(0, len(order), per_process)
            for start in progress(steps, desc=f"QAT epoch {epoch + 1}/{opts.epochs}", unit="batch"):
                idx = order[start : start + per_process]
                optimizer.zero_grad()
                loss = loss_fn(model(x[idx].to(where.device)), y[idx].to(where.device))
                loss.backward()
                optimizer.step()
            schedule.step()

    return train


# the error budget's samples (from the evaluation set) and how many activations it ranks
_BUDGET_SAMPLES, _BUDGET_ACTIVATIONS = 16, 5


@dataclass
class Quantized:
    """What the quantize phase gives the rest of the job."""

    model: torch.fx.GraphModule  # the convert_pt2e model
    settings: dict  # quantization_settings(quantizer)
    training: Optional[dict] = None  # QAT: the training data and epochs
    budget: Optional[dict] = None  # PTQ with --error-budget: ErrorBudget.as_dict()
    step_gains: Optional[list] = None  # PTQ: each training step's gain, calibration and held-out


def _quantize(opts: JobOptions, exported, calibration: Optional[torch.Tensor], batch: int,
              normalize: str, model: LoadedModel, evaluation: torch.Tensor, where: Placement,
              exclude=()) -> Quantized:
    quantizer = _quantizer(opts)
    settings = quantization_settings(quantizer)
    calibration_inputs = _batches(calibration, batch) if calibration is not None else None
    if not opts.qat:
        on_device = move_model(exported.module(), where.device)
        if where.world > 1:  # each process calibrates its share; the observers are merged
            prepared = nqd.prepare_and_calibrate(on_device, calibration_inputs, quantizer)
        else:
            prepared = prepare_and_calibrate(on_device, calibration_inputs, quantizer)
        budget = None
        if opts.error_budget and where.main:
            samples = _batches(evaluation[: max(batch, _BUDGET_SAMPLES // batch * batch)], batch)
            found = error_budget(prepared, samples, top_activations=_BUDGET_ACTIVATIONS)
            opts.log(found.summary())
            budget = found.as_dict()
        choice = prepared.meta.get(ACTIVATION_CHOICE_META)
        if choice is not None:
            opts.log(choice.summary())
            settings = {**settings, "activation_observer": f"auto: {choice.chosen}",
                        "activation_choice": choice.as_dict()}
        gains = [g.as_dict() for g in prepared.meta.get(STEP_GAINS_META, [])]
        for g in gains:
            held = "" if g["heldout_gain_db"] is None else f", {g['heldout_gain_db']:+.2f} dB on the held-out samples"
            opts.log(f"{g['step']}: {g['calibration_gain_db']:+.2f} dB on the calibration samples it trained on{held}"
                     f"{'' if g['kept'] else ': undone'}")
        return Quantized(convert_pt2e(prepared), settings, budget=budget, step_gains=gains)
    x, y = load_training(opts.train_data, model.input_shape, normalize, opts.train_count, exclude=exclude)
    quantized = calibrate_and_quantize(move_model(exported.module(), where.device), calibration_inputs,
                                       quantizer, is_qat=True, train_fn=_train_fn(opts, x, y, where))
    return Quantized(quantized, settings, training={
        "source": opts.train_data, "samples": len(x), "epochs": opts.epochs,
        "classes": int(y.max()) + 1 if len(y) else 0})


def _lower(opts: JobOptions, quantized, example: tuple, tflite_dir: Optional[Path]):
    """to_edge_transform_and_lower with NeutronPartitioner; returns (edge manager, partitioner)."""
    from executorch.exir import to_edge_transform_and_lower

    # deferred: executorch takes seconds to import; it loads once lowering starts, so input
    # mistakes are reported first
    from neutronq.lowering.edge import compile_config
    from neutronq.neutron_partitioner import NeutronPartitioner
    from neutronq.nxp_backend import generate_neutron_compile_spec

    compile_spec = generate_neutron_compile_spec(
        opts.target, operators_not_to_delegate=list(opts.operators_not_to_delegate) or None,
        neutron_converter_flavor=opts.flavor, intermediates_dir=tflite_dir)
    partitioner = NeutronPartitioner(compile_spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(quantized, example)
        edge = to_edge_transform_and_lower(exported, partitioner=[partitioner],
                                           compile_config=compile_config(exported))
    return edge, partitioner


def _model_summary(loaded: LoadedModel, exported) -> dict:
    names = set(exported.graph_signature.parameters)
    params = sum(int(t.numel()) for k, t in exported.state_dict.items() if k in names)
    ops: dict[str, int] = {}
    for n in exported.graph.nodes:
        if n.op == "call_function":
            name = getattr(n.target, "__name__", str(n.target))
            ops[name] = ops.get(name, 0) + 1
    return {"name": loaded.name, "source": loaded.source or loaded.name,
            "input_shape": list(loaded.input_shape), "parameters": params,
            "ops": sum(ops.values()), "op_types": dict(sorted(ops.items())),
            "macs": graph_macs(exported.graph_module)}


def _compare(reference: torch.Tensor, actual: torch.Tensor) -> dict:
    out = {"sqnr_db": sqnr_db(reference, actual)}
    if reference.dim() >= 2 and reference.shape[-1] > 1:
        out["top1_agreement"] = top1_agreement(reference, actual)
    return out


def _run_references(float_model, quantized, inputs: list[tuple], device) -> tuple[torch.Tensor, torch.Tensor]:
    if nqd.active():  # each process runs its share of the batches; every one gets all outputs
        return nqd.run_sharded(float_model, inputs).cpu(), nqd.run_sharded(quantized, inputs).cpu()
    ref, act = [], []
    with torch.no_grad():
        for x in progress(inputs, desc="evaluating int8 model", unit="batch"):
            x = tuple(t.to(device) for t in x)
            ref.append(float_model(*x).cpu())
            act.append(quantized(*x).cpu())
    return torch.cat(ref), torch.cat(act)


def run_job(opts: JobOptions) -> JobResult:
    """The whole job on ``opts.device``; under torchrun, in every process (see
    ``neutronq.app.placement``): only rank 0 writes files and returns a report (the others an
    empty ``JobResult``). Rank 0 writes every file into a staging folder that replaces
    ``opts.out_dir`` only when the run succeeds (``neutronq.app.output``)."""
    check_options(opts)
    where = place(opts.device)
    try:
        if not where.main:
            return _run(opts, where, None)
        output = OutputFolder(Path(opts.out_dir), force=opts.force, inputs=[
            ("model", opts.model if Path(opts.model).suffix in (".pt2", ".py") else opts.model.rpartition(":")[0] or None),
            ("calibration data", opts.calibration), ("evaluation data", opts.eval_data),
            ("training data", opts.train_data)])
        if output.replaces:
            opts.log(f"--force: the earlier run in {output.target} is replaced when this one succeeds")
        try:
            result = _run(opts, where, output)
            output.commit(result.report["model"]["name"])
        except BaseException:
            output.discard()
            raise
        return result
    finally:
        where.close()


def _run(opts: JobOptions, where: Placement, output: Optional[OutputFolder]) -> JobResult:
    """The job in one process; ``output`` None on the ranks other than 0, which write nothing."""
    log = where.log(opts.log)
    timer = _Timer(where.timer_log(opts.log))
    if output is None:
        out_dir = final_dir = None
        exclude = (Path(opts.out_dir),)
    else:
        out_dir, final_dir = output.staging, output.target
        exclude = (output.target, output.staging)  # never read inputs from the output folders

    with timer.phase("load"):
        loaded = load_model(opts.model, opts.input_shape)
        normalize = opts.normalize or loaded.normalize
        if normalize not in NORMALIZATIONS:
            raise InputError(f"unknown --normalize {normalize!r}", f"use one of {', '.join(NORMALIZATIONS)}")
    with timer.phase("export"):
        exported = export_model(loaded)
    batch = loaded.input_shape[0]
    with timer.phase("load data"):
        calibration_spec = opts.calibration or loaded.default_calibration
        if calibration_spec is None and not opts.qat:
            raise InputError(f"post-training quantization of {loaded.name} needs calibration data",
                             "pass --calibration: an image folder, a .npy or .pt tensor file [N, ...], "
                             "or 'photos' for built-in crops of real photographs")
        if opts.qat and not opts.train_data:
            load_training(None, loaded.input_shape)  # raises the QAT hint
        if opts.qat and opts.error_budget:
            raise InputError("--error-budget looks at the calibrated post-training model; QAT has none",
                             "drop --error-budget, or --qat to quantize post-training")
        given = opts.normalize is not None
        calibration = (load_calibration(calibration_spec, loaded.input_shape, normalize, opts.calibration_count,
                                        exclude=exclude, normalize_given=given)
                       if calibration_spec else None)
        if calibration is not None and len(calibration) < batch:
            raise InputError(f"the calibration data holds {len(calibration)} samples, fewer than the "
                             f"batch of {batch} the model takes", "give more samples or a smaller batch")
        eval_spec = opts.eval_data or ("photos" if calibration_spec == "photos" else calibration_spec)
        if eval_spec == "photos":
            evaluation = load_calibration("photos", loaded.input_shape, normalize, opts.eval_count,
                                          evaluation=True)
        elif eval_spec:
            evaluation = load_calibration(eval_spec, loaded.input_shape, normalize, opts.eval_count,
                                          exclude=exclude, normalize_given=given and eval_spec != calibration_spec,
                                          what="evaluation data")
        else:  # QAT without calibration data: evaluate on training inputs
            evaluation = load_training(opts.train_data, loaded.input_shape, normalize,
                                       opts.eval_count, exclude=exclude)[0]
        if len(evaluation) < batch:
            raise InputError(f"the evaluation data holds {len(evaluation)} samples, fewer than the batch of "
                             f"{batch} the model takes", "give more samples or a smaller batch")
    log(f"model {loaded.name}: input {list(loaded.input_shape)}; calibration: "
        f"{calibration_spec or 'none'} ({0 if calibration is None else len(calibration)} samples); "
        f"evaluation: {eval_spec or opts.train_data} ({len(evaluation)} samples)")

    float_model = exported.module()
    with timer.phase("quantize"):
        result_q = _quantize(opts, exported, calibration, batch, normalize, loaded, evaluation, where, exclude)
    quantized = result_q.model
    eval_inputs = _batches(evaluation, batch)
    with timer.phase("evaluate int8 model"):
        ref_logits, int8_logits = _run_references(move_model(exported.module(), where.device), quantized,
                                                  eval_inputs, where.device)
    if not where.main:  # rank 0 lowers, checks and writes
        return JobResult(report={})
    quantized = move_model(quantized, "cpu")  # ExecuTorch lowers and runs on the CPU

    example = (torch.zeros(loaded.input_shape),)
    tflite_dir = out_dir / "tflite" if opts.tflite else None
    with timer.phase("lower"):
        edge, partitioner = _lower(opts, quantized, example, tflite_dir)
    reasons = {op.node: op.reason for op in getattr(partitioner, "cpu_ops", [])}
    _warn_unused_exclusions(opts, reasons.values())
    placement = op_placement(edge, reasons)  # before to_executorch, which rewrites ops to out variants
    with timer.phase("write .pte"):
        import executorch.kernels.quantized  # noqa: F401  deferred (executorch): CPU kernels of quantize/dequantize

        et_program = edge.to_executorch()
        staged_pte = out_dir / f"{loaded.name}.pte"
        staged_pte.write_bytes(et_program.buffer)
    pte_path = final_dir / staged_pte.name
    tflite_paths = [final_dir / "tflite" / p.name for p in sorted(tflite_dir.glob("*.tflite"))] \
        if tflite_dir is not None else []
    with timer.phase("memory and compute floor"):
        memory = memory_and_floor(staged_pte, opts.target)
    for line in memory["lines"]:
        log(line)
    if memory["fit"]["status"] == "does not fit":
        message = (f"WARNING: {loaded.name} does not fit {opts.target}: "
                   + "; ".join(c["what"] for c in memory["fit"]["checks"] if c["status"] == "does not fit")
                   + ". Choose a larger target (neutronq targets lists them) or a smaller model.")
        log(message)
        warnings.warn(message, TargetFitWarning, stacklevel=2)

    with timer.phase("simulate on host"):
        from neutronq.runtime import evaluate  # deferred: executorch, see _lower

        backend = "litert" if opts.litert else "emulate"
        count = opts.sim_count if opts.sim_count is not None else (LITERT_SAMPLES if opts.litert else len(evaluation))
        sim_samples = max(batch, min(count, len(eval_inputs) * batch) // batch * batch)
        litert_samples = min(sim_samples, max(batch, LITERT_SAMPLES // batch * batch))
        # the references' outputs on these samples were computed above (ref_logits, int8_logits)
        references = {"float": ref_logits[:sim_samples], "quantized": int8_logits[:sim_samples]}
        simulated = evaluate(staged_pte, evaluation[:sim_samples], backend=backend, reference_outputs=references,
                             fallback_max_samples=None if opts.sim_count is not None else litert_samples)
    how = ("emulated, bit-exact with LiteRT" if simulated.backend == "emulate" else
           "in LiteRT's reference kernels")
    if simulated.fallback:
        log(f"WARNING: the emulation cannot run this program ({simulated.fallback}); LiteRT ran it instead, "
            f"on {simulated.samples} samples")
    log(f"lowered program on {simulated.samples} evaluation samples ({how})")

    with timer.phase("per-layer fidelity"):
        layer_inputs = eval_inputs[: max(1, opts.layer_samples // batch)]
        layers = per_layer_fidelity(float_model, quantized, layer_inputs)

    report = _assemble(opts, loaded, exported, calibration_spec, calibration, eval_spec, evaluation,
                       result_q, ref_logits, int8_logits, simulated, placement, partitioner, layers,
                       timer, pte_path, tflite_paths, layer_inputs, staged_pte.stat().st_size)
    report["run"] = where.as_dict()
    report["memory"] = memory
    result = JobResult(report, pte_path=pte_path, tflite_paths=tflite_paths)
    if opts.report:
        with timer.phase("write report"):
            json_path, html_path = write_report(report, out_dir, layers, placement, ref_logits, int8_logits,
                                                final_dir=final_dir)
            result.json_path, result.html_path = final_dir / json_path.name, final_dir / html_path.name
        report["timings_s"] = dict(timer.seconds)
    return result


def _warn_unused_exclusions(opts: JobOptions, reasons) -> None:
    """A --no-delegate op that kept nothing on the CPU: the model has no such op (as lowered)."""
    reasons = list(reasons)
    for name in opts.operators_not_to_delegate:
        if not any(f"({name.strip()!r})" in r for r in reasons):
            note(f"--no-delegate {name}: no op of the lowered model matched it, nothing was kept on the CPU "
                 "because of it (the model has no such op, or it stays on the CPU anyway)")


def _assemble(opts, loaded, exported, calibration_spec, calibration, eval_spec, evaluation,
              quantized: Quantized, ref_logits, int8_logits, simulated, placement, partitioner, layers,
              timer, pte_path, tflite_paths, layer_inputs, pte_bytes: int) -> dict:
    part_report = getattr(partitioner, "report", None)
    simulated_outputs = {}
    for c in getattr(simulated, "comparisons", ()):
        simulated_outputs[f"simulated_vs_{c.reference}"] = {
            "output": c.output, "sqnr_db": c.sqnr_db, "top1_agreement": c.top1_agreement}
    worst = worst_layers(layers, 8)
    return {
        "neutronq_version": neutronq.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": _model_summary(loaded, exported),
        "quantization": {
            "mode": "QAT" if opts.qat else "PTQ",
            "target": opts.target,
            "flavor": _quantizer_flavor(opts),
            "per_channel": opts.per_channel,
            "recommended_preset": opts.recommended,
            **quantized.settings,
            "calibration": {"source": calibration_spec,
                            "samples": 0 if calibration is None else len(calibration)},
            "training": quantized.training,
            "error_budget": quantized.budget,
            "step_gains": quantized.step_gains,
        },
        "lowering": {
            "partitions": placement.partitions,
            "npu_macs": placement.npu_macs,
            "total_macs": placement.total_macs,
            "npu_mac_fraction": placement.npu_mac_fraction,
            "op_counts": placement.counts(),
            "cpu_ops": [{"node": o.node, "op": o.op, "reason": o.reason} for o in placement.cpu_ops()],
            "unenforced_limits": [str(u) for u in getattr(part_report, "unenforced_limits", [])],
            "operators_not_to_delegate": list(opts.operators_not_to_delegate),
        },
        "outputs": {
            "evaluation": {"source": eval_spec or opts.train_data, "samples": len(ref_logits),
                           "simulated_samples": getattr(simulated, "samples", None),
                           "simulated_with": getattr(simulated, "backend", None),
                           "simulation_fallback": getattr(simulated, "fallback", None)},
            "quantized_vs_float": _compare(ref_logits, int8_logits),
            **simulated_outputs,
        },
        "layers": [l.as_dict() for l in layers],
        "layer_samples": sum(len(x[0]) for x in layer_inputs),
        "worst_layers": [l.as_dict() for l in worst],
        "timings_s": dict(timer.seconds),
        "files": {"pte": str(pte_path), "pte_bytes": pte_bytes,
                  "tflite": [str(p) for p in tflite_paths]},
    }


class TargetFitWarning(UserWarning):
    """The lowered program needs more memory than the chosen target has."""


def _kib(n) -> str:
    return "unknown" if n is None else f"{n / 1024:,.1f} KiB"


def memory_and_floor(pte_path: Path, target: str) -> dict:
    """Will the program fit ``target``, and how fast at best: weights, peak activations, the fit
    of each memory with the numbers, the compute floor (``neutronq.lowering.memory``), as report
    data and as printable lines."""
    spec = NeutronTargetSpec(target=target)
    memory = program_memory(pte_path)
    fit = fits(memory, spec)
    floor = compute_floor(memory.npu_macs, spec)
    lines = [f"memory on {target}: weights {_kib(memory.weight_bytes)} (NPU {_kib(memory.npu_weight_bytes)}), "
             f"peak activations {_kib(memory.peak_activation_bytes)}: {fit.status}"]
    for check in fit.checks:
        lines.append(f"  {check.what}: {_kib(check.need_bytes)} of {_kib(check.capacity_bytes)}: {check.status}"
                     + (f" ({check.note})" if check.note else ""))
    lines.append("  compute floor on the NPU (100 % MAC use, no memory stalls): "
                 + (f"{floor.seconds * 1e3:.2f} ms" if floor.known else "unknown")
                 + f" for {floor.total_macs / 1e6:.1f} M MACs ({floor.basis})")
    return {
        "target": target,
        "weight_bytes": memory.weight_bytes,
        "npu_weight_bytes": memory.npu_weight_bytes,
        "cpu_constant_bytes": memory.cpu_constant_bytes,
        "cpu_arena_bytes": memory.cpu_arena_bytes,
        "peak_activation_bytes": memory.peak_activation_bytes,
        "program_bytes": memory.program_bytes,
        "fit": {"status": fit.status, "notes": list(fit.notes),
                "checks": [{"what": c.what, "memory": c.memory, "need_bytes": c.need_bytes,
                            "capacity_bytes": c.capacity_bytes, "status": c.status, "note": c.note}
                           for c in fit.checks]},
        "compute_floor": {"seconds": floor.seconds, "total_macs": floor.total_macs, "basis": floor.basis},
        "lines": lines,
    }


def _quantizer_flavor(opts: JobOptions) -> str:
    spec = NeutronTargetSpec(target=opts.target, converter_flavor=opts.flavor)
    return getattr(spec, "converter_flavor", None) or str(opts.flavor)
