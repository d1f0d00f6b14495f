"""Pure parts of the control shell: the pushed-overload judgement, moving averages, session
tracking (phase learning), the no-op write rule and the driver capabilities it uses."""

from __future__ import annotations

import pytest

from chargebrain.control.cycle import contradicts, to_evse_setpoint
from chargebrain.control.inputs import SessionTracker
from chargebrain.control.overload import NodeBasis, OverloadBasis, exceeded
from chargebrain.control.virtual import MovingAverages
from chargebrain.core.model import Reason, Setpoint
from chargebrain.core.site import MeterInput, MeterRole
from chargebrain.devices.base import (
    EXACT_EVSE,
    EvseCapabilities,
    EvseReading,
    EvseSetpoint,
    evse_capabilities,
)
from chargebrain.devices.drivers.ajax import AjaxEvse
from chargebrain.devices.drivers.local import LocalRegisters
from chargebrain.devices.drivers.powerbrain import POWERBRAIN_EVSE, PowerBrainEvse
from chargebrain.devices.drivers.sim import SimEvse

NOW = 1000.0


def _basis(**nodes: NodeBasis) -> OverloadBasis:
    by_id = {int(k[1:]): v for k, v in nodes.items()}
    contributions = {"G": (0, (20000, 20000, 20000)), "H": (5, (4000, 4000, 4000))}
    return OverloadBasis(by_id, contributions, 230, {0: 1})


SITE = NodeBasis(None, (32000,) * 3, (8000, 8000, 8000), (12000, 12000, 12000), False)
GROUP = NodeBasis(0, (16000,) * 3, (4000, 4000, 4000), (12000, 12000, 0), False)


def _meter(dev_id: str, role: MeterRole, currents, group: int = 0) -> MeterInput:
    return MeterInput(dev_id, role, group, currents_ma=currents, read_at_s=NOW)


def test_a_grid_reading_above_the_limit_is_an_overload():
    base = _basis(n0=SITE, n5=GROUP)
    # the cars taking what they were given is expected: 8 + 12 = 20 A
    assert not exceeded(base, _meter("G", MeterRole.GRID, (20000, 20000, 20000)), NOW)
    assert not exceeded(base, _meter("G", MeterRole.GRID, (32000, 30000, 12000)), NOW)
    assert exceeded(base, _meter("G", MeterRole.GRID, (20000, 33000, 20000)), NOW)


def test_a_consumer_below_a_group_is_judged_on_the_group_and_the_site():
    base = _basis(n0=SITE, n5=GROUP)
    # group L1: 4 + 12 = 16 A; one more ampere of house load breaks it
    assert exceeded(base, _meter("H", MeterRole.CONSUMPTION, (5000, 4000, 4000), 5), NOW)
    # L3 has no EVSE current in the group and the site still has room: nobody can help there
    assert not exceeded(base, _meter("H", MeterRole.CONSUMPTION, (4000, 4000, 9000), 5), NOW)
    assert exceeded(base, _meter("H", MeterRole.CONSUMPTION, (4000, 4000, 17000), 5), NOW)
    assert not exceeded(base, _meter("H", MeterRole.CONSUMPTION, (3000, 3000, 3000), 5), NOW)


def test_less_production_is_more_load_and_display_meters_never_count():
    base = OverloadBasis({0: SITE}, {"P": (0, (-14000, -14000, -14000))}, 230, {})
    assert not exceeded(base, _meter("P", MeterRole.PRODUCTION, (6000, 6000, 6000)), NOW)
    assert exceeded(base, _meter("P", MeterRole.PRODUCTION, (0, 0, 0)), NOW)  # 8+14+12 > 32
    assert not exceeded(base, _meter("D", MeterRole.DISPLAY, (90000, 90000, 90000)), NOW)


def test_a_node_without_evse_current_or_with_a_stale_meter_is_not_judged():
    idle = NodeBasis(None, (32000,) * 3, (8000,) * 3, (0, 0, 0), False)
    stale = NodeBasis(None, (32000,) * 3, (32000,) * 3, (6000,) * 3, True)
    for node in (idle, stale):
        base = OverloadBasis({0: node}, {}, 230, {0: 1})
        assert not exceeded(base, _meter("G", MeterRole.GRID, (50000,) * 3), NOW)


def test_moving_average_is_time_weighted_over_its_window():
    avg = MovingAverages(window_s=100.0)
    assert avg.value("k", 1000, 0.0) == 1000
    assert avg.value("k", 0, 10.0) == 1000  # 1000 W held for the 10 s so far
    assert avg.value("k", 0, 20.0) == 500
    assert avg.value("k", 0, 200.0) == 0  # the 1000 W left the window


def test_sessions_learn_phases_until_unplug():
    tracker = SessionTracker()
    plugged = EvseReading(state=2)
    charging = EvseReading(state=3, currents_ma=(16000, 300, 0))
    s = tracker.update("E2", plugged, (0, 0, 0), 100.0, True, NOW)
    assert s is not None and s.learned_mask == 0 and s.arrival == 1
    s = tracker.update("E2", charging, (16000, 300, 0), 101.0, True, NOW + 3)
    assert s.learned_mask == 0b001 and s.charging_s == 3
    s = tracker.update("E2", charging, (16000, 16000, 16000), 102.0, True, NOW + 6)
    assert s.learned_mask == 0b111
    assert tracker.update("E2", None, (0, 0, 0), None, False, NOW + 9) is s  # COM error
    assert tracker.update("E2", EvseReading(state=1), (0, 0, 0), 102.0, True, NOW + 12) is None
    again = tracker.update("E2", plugged, (0, 0, 0), 102.0, True, NOW + 15)
    assert again is not None and again.learned_mask == 0 and again.arrival == 2


@pytest.mark.parametrize(("reading", "target", "expected"), [
    (EvseReading(current_limit_ma=0, enabled=True), EvseSetpoint(16000), False),  # no report
    (EvseReading(current_limit_ma=16000, enabled=True), EvseSetpoint(16000), False),
    (EvseReading(current_limit_ma=8000, enabled=True), EvseSetpoint(8050), False),  # 0.1 A
    (EvseReading(current_limit_ma=63000, enabled=True), EvseSetpoint(80000), False),  # 63 A
    (EvseReading(current_limit_ma=62900, enabled=True), EvseSetpoint(80000), True),
    (EvseReading(current_limit_ma=16000, enabled=True), EvseSetpoint(10000), True),
    (EvseReading(current_limit_ma=16000, enabled=False), EvseSetpoint(16000), True),
    (EvseReading(current_limit_ma=16000, enabled=True), EvseSetpoint(0, enabled=False), True),
    (EvseReading(current_limit_ma=16000, enabled=False), EvseSetpoint(0, enabled=False), False),
])
def test_a_device_reporting_another_limit_contradicts_what_we_wrote(reading, target, expected):
    assert contradicts(reading, target, POWERBRAIN_EVSE) is expected


@pytest.mark.parametrize(("reading", "target", "expected"), [
    (EvseReading(current_limit_ma=0, enabled=True), EvseSetpoint(16000), False),  # no report
    (EvseReading(current_limit_ma=8050, enabled=True), EvseSetpoint(8050), False),
    (EvseReading(current_limit_ma=8000, enabled=True), EvseSetpoint(8050), True),  # no steps
    (EvseReading(current_limit_ma=80000, enabled=True), EvseSetpoint(80000), False),
    (EvseReading(current_limit_ma=63000, enabled=True), EvseSetpoint(80000), True),  # no max
])
def test_a_driver_that_declares_nothing_keeps_its_limit_to_the_ma(reading, target, expected):
    assert evse_capabilities(AjaxEvse(timeout_s=10)) == EXACT_EVSE
    assert contradicts(reading, target, evse_capabilities(AjaxEvse(timeout_s=10))) is expected


def test_drivers_declare_what_their_setpoints_can_express():
    local = PowerBrainEvse(LocalRegisters(lambda: None, "evse"), voltage_v=230, used_phases=7)
    assert evse_capabilities(local) == POWERBRAIN_EVSE == EvseCapabilities(
        step_ma=100, max_current_ma=63000, phase_switching=True)
    assert evse_capabilities(SimEvse(voltage_v=230)) == EvseCapabilities(
        step_ma=1, max_current_ma=None, phase_switching=True)


def test_zero_current_means_charging_disabled():
    reason = Reason("site_limit", "x")
    assert to_evse_setpoint(Setpoint("E2", 0, 7, True, reason)) == EvseSetpoint(0, False)
    assert to_evse_setpoint(Setpoint("E2", 7000, 7, False, reason)) == EvseSetpoint(7000)
