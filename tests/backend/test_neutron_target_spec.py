import pytest

from neutronq.backend.neutron_target_spec import KNOWN_FLAVORS, KNOWN_TARGETS, NeutronTargetSpec

ALL_TARGETS = ["imxrt700", "mcxn94x", "mcxn54x", "imx95", "imx943", "imx952", "s32n79", "s32k5"]


def test_known_targets_and_flavors():
    assert sorted(KNOWN_TARGETS) == sorted(ALL_TARGETS)
    assert KNOWN_FLAVORS == ("SDK_25_03", "SDK_25_06", "SDK_25_09", "SDK_25_12")


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_every_target_constructs(target):
    spec = NeutronTargetSpec(target=target, converter_flavor="SDK_25_09")
    assert spec.target == target and spec.converter_flavor == "SDK_25_09"


def test_imxrt700_published_numbers():
    spec = NeutronTargetSpec("imxrt700")
    assert (spec.num_pipes, spec.num_macs, spec.total_macs) == (8, 8, 64)
    assert spec.is_neutron_c and not spec.is_neutron_s
    assert spec.unknown_parameters() == []


def test_unpublished_numbers_are_unknown_not_invented():
    mcx = NeutronTargetSpec("mcxn94x")
    assert mcx.total_macs == 16 and mcx.num_macs is None and mcx.num_pipes is None
    assert {"num_pipes", "macs_per_pipe"} <= set(mcx.unknown_parameters())
    assert NeutronTargetSpec("imx95").is_neutron_s
    assert NeutronTargetSpec("imx95").total_macs is None


def test_none_flavor_means_newest():
    assert NeutronTargetSpec("imxrt700", converter_flavor=None).converter_flavor == "SDK_25_12"


def test_unknown_target_lists_known_ones():
    with pytest.raises(ValueError) as e:
        NeutronTargetSpec("imxrt1170")
    msg = str(e.value)
    assert "imxrt1170" in msg and all(t in msg for t in ALL_TARGETS)


def test_unknown_flavor_lists_known_ones():
    with pytest.raises(ValueError) as e:
        NeutronTargetSpec("imxrt700", converter_flavor="SDK_24_12")
    msg = str(e.value)
    assert "SDK_24_12" in msg and all(f in msg for f in KNOWN_FLAVORS)
