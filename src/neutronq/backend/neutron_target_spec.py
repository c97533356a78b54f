"""Neutron targets, converter flavors and the hardware numbers the lowering rules use.

Only numbers that NXP has published are filled in. Where nobody has published a number it is
``None``: a limit that depends on an unknown number is not enforced for that target, and the
lowering report says the number was unknown (see ``neutronq.lowering.limits`` and ``neutronq.lowering.ops``).

Sources:
  * i.MX RT700: "eIQ Neutron N3-64" NPU, 8 compute pipes x 8 MACs each (NXP i.MX RT700 product
    page and the ExecuTorch NXP backend README name the N3-64 core), Neutron-C, shares system SRAM.
  * MCX N94x / N54x: "eIQ Neutron N1-16", Neutron-C, 16 MACs in total (NXP MCX N product pages);
    the split into pipes is not published.
  * i.MX 95: Neutron-S, about 2 TOPS (NXP i.MX 95 product page); its MAC layout is not published.
  * i.MX 943, i.MX 952, S32N79, S32K5: carry a Neutron NPU per NXP's product pages; no numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = [
    "NeutronTargetSpec",
    "TargetInfo",
    "KNOWN_TARGETS",
    "KNOWN_FLAVORS",
    "NEWEST_FLAVOR",
]


@dataclass(frozen=True)
class TargetInfo:
    """Published facts about one Neutron target. ``None`` means not published."""

    name: str
    description: str
    neutron_kind: str  # "Neutron-C" (microcontroller class) or "Neutron-S" (application class)
    core: Optional[str]  # NPU core name, e.g. "N3-64"
    num_pipes: Optional[int]  # parallel compute pipes
    macs_per_pipe: Optional[int]  # int8 MACs per pipe per cycle
    total_macs: Optional[int]  # int8 MACs per cycle, all pipes
    shares_system_sram: Optional[bool]


KNOWN_TARGETS: dict[str, TargetInfo] = {
    t.name: t
    for t in (
        TargetInfo("imxrt700", "i.MX RT700", "Neutron-C", "N3-64", 8, 8, 64, True),
        TargetInfo("mcxn94x", "MCX N94x", "Neutron-C", "N1-16", None, None, 16, None),
        TargetInfo("mcxn54x", "MCX N54x", "Neutron-C", "N1-16", None, None, 16, None),
        TargetInfo("imx95", "i.MX 95 (about 2 TOPS)", "Neutron-S", None, None, None, None, None),
        TargetInfo("imx943", "i.MX 943", "Neutron-S", None, None, None, None, None),
        TargetInfo("imx952", "i.MX 952", "Neutron-S", None, None, None, None, None),
        TargetInfo("s32n79", "S32N79", None, None, None, None, None, None),
        TargetInfo("s32k5", "S32K5", None, None, None, None, None, None),
    )
}

# Converter flavors seen in the field, oldest first; each names a converter module
# ``neutron_converter_<flavor>`` from NXP's eIQ SDK.
KNOWN_FLAVORS: tuple[str, ...] = ("SDK_25_03", "SDK_25_06", "SDK_25_09", "SDK_25_12")
NEWEST_FLAVOR = KNOWN_FLAVORS[-1]


def check_target(target: str) -> TargetInfo:
    """The ``TargetInfo`` of ``target``; a ``ValueError`` listing the known targets otherwise."""
    if not isinstance(target, str) or target.lower() not in KNOWN_TARGETS:
        raise ValueError(
            f"Unknown Neutron target {target!r}. Known targets: {', '.join(KNOWN_TARGETS)}."
        )
    return KNOWN_TARGETS[target.lower()]


def check_flavor(flavor: Optional[str]) -> str:
    """``flavor`` itself, or the newest known one for ``None``; ``ValueError`` if unknown."""
    if flavor is None:
        return NEWEST_FLAVOR
    if flavor not in KNOWN_FLAVORS:
        raise ValueError(
            f"Unknown Neutron converter flavor {flavor!r}. Known flavors: "
            f"{', '.join(KNOWN_FLAVORS)} (None means the newest, {NEWEST_FLAVOR})."
        )
    return flavor


class NeutronTargetSpec:
    """A Neutron target and converter flavor, with the hardware numbers lowering rules use.

    >>> spec = NeutronTargetSpec(target="imxrt700", converter_flavor="SDK_25_09")
    >>> spec.num_macs, spec.is_neutron_c
    (8, True)
    """

    def __init__(self, target: str, converter_flavor: Optional[str] = None):
        self._info = check_target(target)
        self.target = self._info.name
        self.converter_flavor = check_flavor(converter_flavor)

    # --- hardware parameters (None where not published) -------------------------------------
    @property
    def info(self) -> TargetInfo:
        return self._info

    @property
    def num_pipes(self) -> Optional[int]:
        return self._info.num_pipes

    @property
    def num_macs(self) -> Optional[int]:
        """int8 MACs per pipe: the channel granularity the conv kernel-size limit rounds to."""
        return self._info.macs_per_pipe

    @property
    def total_macs(self) -> Optional[int]:
        return self._info.total_macs

    @property
    def is_neutron_c(self) -> bool:
        return self._info.neutron_kind == "Neutron-C"

    @property
    def is_neutron_s(self) -> bool:
        return self._info.neutron_kind == "Neutron-S"

    def unknown_parameters(self) -> list[str]:
        """Names of the hardware numbers that are not published for this target."""
        return [
            f
            for f in ("neutron_kind", "core", "num_pipes", "macs_per_pipe", "total_macs")
            if getattr(self._info, f) is None
        ]

    def __repr__(self) -> str:
        return f"NeutronTargetSpec(target={self.target!r}, converter_flavor={self.converter_flavor!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, NeutronTargetSpec)
            and (self.target, self.converter_flavor) == (other.target, other.converter_flavor)
        )

    def __hash__(self) -> int:
        return hash((self.target, self.converter_flavor))
