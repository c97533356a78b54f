"""Host execution of lowered programs: check the int8 program on a laptop, without a board.

    from neutronq.runtime import run_on_host, load_program, evaluate

    lowered = to_edge_transform_and_lower(torch.export.export(quantized, sample),
                                          partitioner=[NeutronPartitioner(compile_spec)])
    logits = run_on_host(lowered, image)                  # or lowered.to_executorch(), or "model.pte"
    program = load_program("model.pte")                   # prepare once, call many times
    print(program.signature)                              # forward(input_0: float32[1, 3, 224, 224])
    print(evaluate(program, crops, float_model=model, quantized_model=quantized))

``simulate`` is the same function as ``run_on_host`` (the name the issue used first).
``emulate(lowered)`` is the program as a batched ``torch.nn.Module``, its delegates' TFLite
reference arithmetic emulated in PyTorch, bit-exact with LiteRT (``emulated_program.py``);
``evaluate`` uses it unless ``backend="litert"``.

What runs where:
  * Neutron delegates (backend id ``NeutronBackend``) run as their payload's int8 TFLite model in
    LiteRT's interpreter with the reference kernels (``OpResolverType.BUILTIN_REF``): the
    semantics of the NPU converter's input. The NPU's own kernels may round differently in
    places, so a board can differ from the host by a quantization step on some elements.
  * Everything else runs with the CPU kernels the program names: PyTorch's ATen kernels and
    ExecuTorch's quantized kernels (``executorch.kernels.quantized``), each through the same
    out variant on both paths below.
  * A ``.pte`` (path, bytes, or ``ExecutorchProgramManager``) is read with ExecuTorch's own
    deserializer and its execution plan is executed instruction by instruction, tensors placed
    where the memory plan puts them. An ``EdgeProgramManager`` is interpreted graph-wise. Both
    give identical results for the same program.
  * A program delegated to another backend (XNNPACK, ...) is refused with
    ``UnsupportedDelegateError``; inputs that do not match the exported signature raise
    ``SignatureError`` naming it.
  * A ``.pte`` is checked before it runs (``_validate``): a damaged file (tensor metadata,
    quantization parameters, instructions, the memory plan, the delegates' boundaries against
    their CRC-protected payloads) raises ``ProgramError`` naming the value and instruction at
    fault; no input file aborts the Python process.
"""

from neutronq.backend import NEUTRON_BACKEND_ID
from neutronq.runtime._delegates import DelegateCall, UnsupportedDelegateError
from neutronq.runtime._edge import EdgeProgram
from neutronq.runtime._program import HostProgram, load_program, recording_delegate_calls, run_on_host, simulate
from neutronq.runtime._pte import PteProgram, read_pte
from neutronq.runtime._validate import ProgramError
from neutronq.runtime._signature import InputSpec, Signature, SignatureError
from neutronq.runtime.emulate import EmulationError
from neutronq.runtime.emulated_program import EmulatedProgram, emulate
from neutronq.runtime.evaluate import Evaluation, OutputComparison, evaluate

__all__ = [
    "run_on_host",
    "simulate",
    "load_program",
    "emulate",
    "EmulatedProgram",
    "EmulationError",
    "evaluate",
    "Evaluation",
    "OutputComparison",
    "HostProgram",
    "EdgeProgram",
    "PteProgram",
    "read_pte",
    "Signature",
    "InputSpec",
    "SignatureError",
    "UnsupportedDelegateError",
    "ProgramError",
    "recording_delegate_calls",
    "DelegateCall",
    "NEUTRON_BACKEND_ID",
]
