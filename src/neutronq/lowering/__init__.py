"""Lowering of quantized edge programs to the Neutron NPU's input: an int8 TFLite per partition.

    support.py        which nodes can run on the NPU, and why the others stay on the CPU
    op_limits.py      the NPU's per-op limits, each with its source
    graph.py          facts about edge-dialect nodes (q/dq, constants, output parameters)
    converter.py      one partition -> int8 TFLite flatbuffer
    context.py        conversion state and helpers shared by the op converters
    layout.py         the channels-last layout rule inside the TFLite graph
    ops/              one converter module per op family (conv, fully_connected, ...)
    tflite_builder.py TFLite writer on the schema's object API
    payload.py        our versioned delegate payload (public API; used by neutronq.runtime)
    nxp_converter.py  the narrow, untested seam to NXP's proprietary converter
    host_check.py     run a lowered edge program with delegates in LiteRT (for checks)
    macs.py           MAC counts for the NPU share report

The user-facing entry points are ``neutronq.neutron_partitioner.NeutronPartitioner`` and
``neutronq.nxp_backend.generate_neutron_compile_spec``.
"""
