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

Memory and clock facts (``sram_bytes``, ``flash_bytes``, ``npu_clock_mhz`` ...) carry their own
source per field in ``TargetInfo.sources``; ``docs/targets.md`` tabulates them. They feed the
memory and compute-floor estimates of ``neutronq.lowering.memory`` and nothing else: no lowering
rule reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

__all__ = [
    "NeutronTargetSpec",
    "TargetInfo",
    "KNOWN_TARGETS",
    "KNOWN_FLAVORS",
    "NEWEST_FLAVOR",
]


KIB = 1024
MIB = 1024 * 1024
GIB = 1024 * 1024 * 1024

# where the NPU reads its weights from, and where activations live
MEMORY_KINDS = ("flash", "sram", "dram")


@dataclass(frozen=True)
class TargetInfo:
    """Published facts about one Neutron target. ``None`` means not published.

    The memory and clock fields (from ``sram_bytes`` on) are optional; ``sources`` maps each of
    them that is filled in (and each ``None`` worth explaining) to where it comes from.
    """

    name: str
    description: str
    neutron_kind: str  # "Neutron-C" (microcontroller class) or "Neutron-S" (application class)
    core: Optional[str]  # NPU core name, e.g. "N3-64"
    num_pipes: Optional[int]  # parallel compute pipes
    macs_per_pipe: Optional[int]  # int8 MACs per pipe per cycle
    total_macs: Optional[int]  # int8 MACs per cycle, all pipes
    shares_system_sram: Optional[bool]
    # --- memory and clock (issue 22) -----------------------------------------------------------
    sram_bytes: Optional[int] = None  # on-chip system SRAM
    flash_bytes: Optional[int] = None  # on-chip non-volatile memory (flash / MRAM); None if off-chip
    flash_on_chip: Optional[bool] = None  # False: the program lives in external (xSPI) flash
    npu_weights_from: Optional[str] = None  # "flash" (XIP) / "sram" / "dram": where the NPU reads weights
    activations_in: Optional[str] = None  # "sram" / "dram": where the activation arena lives
    npu_clock_mhz: Optional[float] = None  # NPU clock
    peak_tops: Optional[float] = None  # published int8 peak, tera-ops/s (1 MAC = 2 ops)
    dram_bytes: Optional[int] = None  # external DRAM of the reference board (application processors)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)


_RT700_PRODUCT = ("NXP's i.MX RT700 launch (Sept 2024) as reported in 'New i.MX MCU serves TinyML "
                  "applications' (jweasytech.com, 26 Sept 2024): 'over 7.5 MB of SRAM'")
_EXTERNAL_FLASH_NPU = (
    "ExecuTorch docs/source/backends/nxp/nxp-partitioner.rst: fetch_constants_to_sram 'will insert "
    "microinstructions to prefetch weights from FLASH to SRAM. This should be used when the whole model "
    "does not fit into SRAM on Neutron-C devices, like i.MX RT700'; backends/nxp/runtime/NeutronBackend.cpp "
    "(EXTERNAL_MEM): 'Neutron compute has no access to FLASH'; MCUXpresso SDK example "
    "tflm_label_image_ext_mem (MIMXRT700-EVK) fetches the weights from xSPI flash to SRAM")
_MCXN_FLASH = ("NXP block diagram MCX-N94X-N54X.pdf (May 2024) and NXP community 'How to get started with "
               "NPU and ML in MCX Microcontrollers': '2MB of on-chip Flash' (parts with 1 MB exist: the "
               "NXP VEE port README nxp-mcuxpresso/nxp-vee-mcxn947-frdm says 'Internal flash size 1MB - 2MB')")
_MCXN_SRAM = ("Zephyr dts/arm/nxp/mcx/mcxn/nxp_mcxnx4x_common.dtsi (NXP): '512KB RAM, RAMX: 96K' + 416 KB "
              "RAMA-RAMH; NXP VEE port README nxp-mcuxpresso/nxp-vee-mcxn947-frdm: 'Internal RAM size 512kB'")
_MCXN_MACS = ("EE Times 'i.MX 95 uses in-house NPU IP' (Mar 2023), quoting NXP: 'The accelerator in the "
              "MCX-N, a 150-MHz microcontroller, offers 16 MACs per cycle'")
_MCXN_CLOCK = ("inferred, not stated by NXP as an NPU clock: the MCX N94x/N54x run at up to 150 MHz (NXP "
               "block diagram MCX-N94X-N54X.pdf; EE Times, Mar 2023), and third-party write-ups give the "
               "MCXN947 NPU 4.8 GOPS = 16 MACs x 2 ops x 150 MHz")
_MCXN_WEIGHTS = ("not published: NXP's MCX N examples link the model as a const array (so it sits in the "
                 "on-chip flash), but no NXP document found says whether the N1-16 reads weights from "
                 "flash directly or through a copy")
_MCXN = dict(sram_bytes=512 * KIB, flash_bytes=2 * MIB, flash_on_chip=True, npu_weights_from=None,
             activations_in="sram", npu_clock_mhz=150.0, peak_tops=None, dram_bytes=None)
_MCXN_SOURCES = {
    "sram_bytes": _MCXN_SRAM, "flash_bytes": _MCXN_FLASH, "flash_on_chip": _MCXN_FLASH,
    "total_macs": _MCXN_MACS, "npu_clock_mhz": _MCXN_CLOCK, "npu_weights_from": _MCXN_WEIGHTS,
    "activations_in": "no external RAM on the chip; ExecuTorch plans activations in on-chip SRAM",
}

KNOWN_TARGETS: dict[str, TargetInfo] = {
    t.name: t
    for t in (
        TargetInfo(
            "imxrt700", "i.MX RT700", "Neutron-C", "N3-64", 8, 8, 64, True,
            sram_bytes=7680 * KIB, flash_bytes=None, flash_on_chip=False, npu_weights_from="sram",
            activations_in="sram", npu_clock_mhz=None, peak_tops=None, dram_bytes=None,
            sources={
                "total_macs": "NXP AN14700 'i.MX RT700 eIQ Neutron NPU Enablement and Performance' "
                              "(Rev. 2.0, Nov 2025) and the ExecuTorch backends/nxp/README.md: eIQ Neutron N3-64",
                "sram_bytes": _RT700_PRODUCT + "; 7.5 MB read as 7.5 MiB = 7680 KiB",
                "flash_bytes": "no on-chip flash: NXP IMXRT700EC data sheet (Rev. 6) section 1, 'several "
                               "high-bandwidth interfaces to access off-chip flash'; the board's xSPI flash "
                               "(FRDM-IMXRT700: 'Quad SPI flash for code storage (XSPI0)', Zephyr board doc) "
                               "has a board-dependent size",
                "flash_on_chip": "NXP IMXRT700EC data sheet (Rev. 6) section 1: off-chip flash",
                "npu_weights_from": _EXTERNAL_FLASH_NPU,
                "activations_in": "on-chip SRAM (no external RAM assumed)",
                "npu_clock_mhz": "not found in NXP's public RT700 documents (data sheet features table, "
                                 "AN14700, product page excerpts searched)",
            }),
        TargetInfo("mcxn94x", "MCX N94x", "Neutron-C", "N1-16", None, None, 16, None,
                   **_MCXN, sources=dict(_MCXN_SOURCES)),
        TargetInfo("mcxn54x", "MCX N54x", "Neutron-C", "N1-16", None, None, 16, None,
                   **_MCXN, sources=dict(_MCXN_SOURCES)),
        TargetInfo(
            "imx95", "i.MX 95 (about 2 TOPS)", "Neutron-S", None, None, None, None, None,
            sram_bytes=None, flash_bytes=None, flash_on_chip=False, npu_weights_from="dram",
            activations_in="dram", npu_clock_mhz=None, peak_tops=2.0, dram_bytes=8 * GIB,
            sources={
                "peak_tops": "NXP i.MX 95 product page and EE Times 'i.MX 95 uses in-house NPU IP' (Mar "
                             "2023): '2-TOPS Neutron NPU'; Toradex/NXP webinar blog: 'Neutron NPU (2.0 TOPS)'",
                "npu_clock_mhz": "not published as a number: EE Times (Mar 2023) says the NPU 'can run at "
                                 "1 GHz or more'",
                "total_macs": "not published (2 TOPS at 1 GHz would be about 1000 MACs/cycle; not used)",
                "npu_weights_from": "RidgeRun i.MX95 technical guide, 'eIQ Neutron NPU overview': the Data "
                                    "Mover moves data 'between system DDR memory and the NPU's internal "
                                    "TCM'; NXP's accel/neutron Linux driver patch (Feb 2026): RISC-V "
                                    "controller, Neutron cores, dedicated fast memory, DMA engine",
                "activations_in": "DRAM (Linux application processor; the TCM size is not published)",
                "dram_bytes": "board-dependent: FRDM-IMX95 has 8 GB LPDDR4X-4000 (NXP FRDM-IMX95 page), the "
                              "i.MX 95 EVK 16 GB LPDDR5 (NXP IMX95LPD5EVK-19CM quick start guide); the "
                              "smaller is used",
                "sram_bytes": "the NPU's TCM size is not published; on-chip OCRAM is not where the NPU "
                              "works",
                "flash_on_chip": "application processor: the program is loaded from external storage "
                                 "(eMMC, octal SPI NOR on the EVK per the IMX95LPD5EVK-19CM quick start "
                                 "guide) into DRAM",
            }),
        TargetInfo("imx943", "i.MX 943", "Neutron-S", None, None, None, None, None,
                   activations_in="dram",
                   sources={"npu_clock_mhz": "not published", "peak_tops": "not published",
                            "activations_in": "Linux application processor: DRAM"}),
        TargetInfo("imx952", "i.MX 952", "Neutron-S", None, None, None, None, None,
                   activations_in="dram",
                   sources={"peak_tops": "not published (NXP's i.MX 952 announcement names the eIQ "
                                         "Neutron NPU and compatibility with i.MX 95, no figure)",
                            "activations_in": "Linux application processor: DRAM"}),
        TargetInfo("s32n79", "S32N79", None, None, None, None, None, None,
                   sources={"peak_tops": "not published"}),
        TargetInfo("s32k5", "S32K5", None, None, None, None, None, None,
                   flash_on_chip=True,
                   sources={"flash_on_chip": "NXP S32K5 launch (Embedded World 2025, All About Circuits): "
                                             "embedded MRAM in place of flash; its size per part is not "
                                             "used here",
                            "npu_clock_mhz": "not published (the Cortex-R52/M7 cores run at up to 800 MHz)"}),
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

    # --- memory and clock (None where not published; see ``info.sources``) ---------------------
    @property
    def sram_bytes(self) -> Optional[int]:
        return self._info.sram_bytes

    @property
    def flash_bytes(self) -> Optional[int]:
        return self._info.flash_bytes

    @property
    def flash_on_chip(self) -> Optional[bool]:
        return self._info.flash_on_chip

    @property
    def npu_weights_from(self) -> Optional[str]:
        return self._info.npu_weights_from

    @property
    def activations_in(self) -> Optional[str]:
        return self._info.activations_in

    @property
    def npu_clock_mhz(self) -> Optional[float]:
        return self._info.npu_clock_mhz

    @property
    def peak_tops(self) -> Optional[float]:
        return self._info.peak_tops

    @property
    def dram_bytes(self) -> Optional[int]:
        return self._info.dram_bytes

    @property
    def peak_macs_per_second(self) -> Optional[float]:
        """int8 MACs per second at 100 % use: MACs/cycle x clock, else the published TOPS / 2."""
        if self._info.total_macs and self._info.npu_clock_mhz:
            return float(self._info.total_macs) * self._info.npu_clock_mhz * 1e6
        if self._info.peak_tops:
            return self._info.peak_tops * 1e12 / 2.0
        return None

    def source(self, field_name: str) -> Optional[str]:
        """Where the value of ``field_name`` comes from (or why it is ``None``), if recorded."""
        return self._info.sources.get(field_name)

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
