"""Digital inputs in formulas and rules: the built-in Power Brain's S0 inputs (register 8113
bits 0/1) read as `E1.input1`/`E1.input2` and `PB.input1`/`PB.input2`; a charging rule with an
input condition (ripple-control style: input active → no charging) follows them."""

from __future__ import annotations


async def step(site) -> dict:
    site.clock.advance(3)
    await site.app.cycle.run_once()
    status, body = await site.client.get("explain", dev_id="E1", auth=None)
    assert status == 200
    return body


def set_inputs(site, bits: int) -> None:
    # the wiring: the S0 inputs are hardware state; bit 8 (phase switching allowed) stays
    site.app.powerbrain.banks["evse"].set("s0_inputs", 0x100 | bits)


async def test_inputs_as_formula_names_and_a_rule_condition(site):
    status, body = await site.client.get("sim_vehicle", dev_id="E1", plugged=1)
    assert status == 200, body
    assert await site.client.post("set_cm_vars", {"vars": [
        {"name": "in1", "expr": "E1.input1"}, {"name": "pb2", "expr": "PB.input2"}]}) == (200, "ok")
    status, devices = await site.client.get("get_devices")
    config = next(d for d in devices if d["dev_id"] == "E1")
    config["charging_rules"] = [
        {"cond": {"type": "input", "device": "E1", "input": 1},
         "action": {"type": "set", "value": 0, "end": True}},
        {"action": {"type": "set", "value": 10000}}]
    assert await site.client.post("set_params", {"devices": [config]}) == (200, "ok")

    set_inputs(site, 0)
    body = await step(site)
    assert body["setpoint"]["current_ma"] == 10000
    values = {v["name"]: v["value"] for v in (await site.client.get("get_cm_vars"))[1]["vars"]}
    assert values == {"in1": 0, "pb2": 0}

    set_inputs(site, 0b11)
    body = await step(site)
    assert body["setpoint"]["current_ma"] == 0
    values = {v["name"]: v["value"] for v in (await site.client.get("get_cm_vars"))[1]["vars"]}
    assert values == {"in1": 1, "pb2": 1}

    set_inputs(site, 0b10)
    body = await step(site)
    assert body["setpoint"]["current_ma"] == 10000
