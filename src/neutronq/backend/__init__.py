"""The Neutron backend's facts, below everything else in neutronq:

    neutron_target_spec.py   targets, converter flavors, their published hardware figures
    scheme.py                the int8 scheme's numbers (ranges, fixed output parameters, ...)

and ``NEUTRON_BACKEND_ID``, the id of Neutron delegates in a lowered program (ExecuTorch names
a backend after its ``BackendDetails`` class, ``neutronq.nxp_backend.NeutronBackend``; NXP's
runtime registers the same name).
"""

NEUTRON_BACKEND_ID = "NeutronBackend"

__all__ = ["NEUTRON_BACKEND_ID"]
