"""Lowering of quantized edge programs to the Neutron NPU's input: an int8 TFLite per partition.

    support.py        which nodes can run on the NPU, and why the others stay on the CPU
    limits.py         what the per-op NPU limits share (result type, common checks, sources)
    edge.py           facts about edge-dialect nodes (q/dq, constants, output parameters)
    ops/              one module per op family: its TFLite lowering and its NPU limits
    to_tflite.py      one partition -> int8 TFLite flatbuffer (NXP's converter's input)
    context.py        lowering state and helpers shared by the op lowerings
    layout.py         the channels-last layout rule inside the TFLite graph
    tflite_builder.py TFLite writer on the schema's object API
    payload.py        our versioned delegate payload (public API; used by neutronq.runtime)
    nxp_sdk.py        the narrow, untested seam to NXP's proprietary converter
    rounding_audit.py LiteRT's int8 results against exact rounding, op by op
    macs.py           MAC counts for the NPU share report

The user-facing entry points are ``neutronq.neutron_partitioner.NeutronPartitioner`` and
``neutronq.nxp_backend.generate_neutron_compile_spec``; a lowered program runs on the host
through ``neutronq.runtime``.
"""
