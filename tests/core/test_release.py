"""Cuts before raises (core.release): a wallbox that learns its setpoint by answer gets a
raise only when the cuts other wallboxes have not received yet fit in the plan's room."""

from __future__ import annotations

from chargebrain.core.release import released_ma
from chargebrain.core.site import Diagnostics, NodeDiagnostics

SITE = 0
GARAGE = 5


def diagnostics(site_room=(0, 0, 0), garage_room=None, phases=None):
    nodes = {SITE: NodeDiagnostics(SITE, None, (32000,) * 3, (0,) * 3, (0,) * 3, site_room)}
    if garage_room is not None:
        nodes[GARAGE] = NodeDiagnostics(GARAGE, SITE, (16000,) * 3, (0,) * 3, (0,) * 3,
                                        garage_room)
    return Diagnostics(nodes=nodes, evse_phases=phases or {
        "E2": (SITE, 0b111), "E3": (SITE, 0b111)})


def test_a_cut_is_handed_out_at_once():
    assert released_ma("E2", {"E2": 11000, "E3": 11000}, {"E2": 16000}, diagnostics()) == 11000


def test_a_raise_waits_for_the_cut_it_needs():
    planned = {"E2": 11000, "E3": 11000}
    told = {"E2": 16000, "E3": 0}
    assert released_ma("E3", planned, told, diagnostics()) == 0  # a new box: still 0 A
    told["E3"] = 6000
    assert released_ma("E3", planned, told, diagnostics()) == 6000  # keeps what it had
    told["E2"] = 11000  # E2 got its cut
    assert released_ma("E3", planned, told, diagnostics()) == 11000


def test_room_left_in_the_plan_covers_a_pending_cut():
    planned = {"E2": 11000, "E3": 11000}
    told = {"E2": 16000}
    assert released_ma("E3", planned, told, diagnostics(site_room=(5000,) * 3)) == 11000
    assert released_ma("E3", planned, told, diagnostics(site_room=(5000, 4999, 5000))) == 0


def test_only_the_phases_and_nodes_the_box_loads_count():
    phases = {"E2": (SITE, 0b001), "E3": (SITE, 0b010), "E4": (GARAGE, 0b111),
              "E6": (GARAGE, 0b111)}
    planned = {"E2": 6000, "E3": 16000, "E4": 8000, "E6": 8000}
    told = {"E2": 16000, "E4": 0, "E6": 0}
    room = diagnostics(garage_room=(0, 0, 0), phases=phases)
    assert released_ma("E3", planned, told, room) == 16000  # E2's cut is on another phase
    assert released_ma("E4", planned, told, room) == 0  # the garage is in the site: L1 counts
    told["E2"] = 6000
    assert released_ma("E4", planned, told, room) == 8000
    told["E6"] = 12000  # a garage box still over its plan holds its neighbour back …
    assert released_ma("E4", planned, told, room) == 0
    assert released_ma("E3", planned, told, room) == 0  # … and the site's phases too


def test_a_box_outside_the_plan_counts_on_every_phase_at_the_site():
    phases = {"E3": (SITE, 0b100)}
    assert released_ma("E3", {"E3": 8000}, {"E9": 7000}, diagnostics(phases=phases)) == 0
    assert released_ma("E3", {"E3": 8000}, {"E9": 7000},
                       diagnostics(site_room=(0, 0, 7000), phases=phases)) == 8000
