// The simulation page (admin): virtual cars at the simulated wallboxes (cmd=sim_vehicle) and the
// power of the simulated meters (`meter_sim`, set_device sim_power_w). Live numbers from
// /ui/events. "Stop simulation" and leaving the page unplug every car and zero every meter.

import {$, api, frame, h, signin} from "/ui/static/common.js";

const STATES = {1: "Standby", 2: "Car connected", 3: "Charging", 4: "Charging", 5: "Error", 6: "Offline"};
let evses = [];   // dev_ids with a virtual car
let meters = [];  // dev_ids of meter_sim devices

const simulated = (d) => d.dev_type === "evse_sim" || (d.dev_type === "evse_powerbrain" && d.dev_id === "E1");

function live(el, d) {
  const state = d.is_evse ? `${STATES[d.state] || d.state}, ` : "";
  $(".live", el).textContent = `${state}${Math.round(d.power_w)} W`;
}

function evseTile(d, car) {
  const id = (n) => `s-${d.dev_id}-${n}`;
  const msg = h("span", {class: "form-status", role: "status"});
  const plugged = h("span", {class: "plugged"}, car.plugged ? "car plugged in" : "no car");
  const input = (name, label, value, attrs = {}) => [h("label", {for: id(name)}, label),
    h("input", {id: id(name), name, value: String(value), ...attrs})];
  const phases = h("select", {id: id("phases"), name: "phases"},
    h("option", {value: "3", selected: car.phases === 3}, "3"), h("option", {value: "1", selected: car.phases === 1}, "1"));
  const form = h("form", {class: "sim-form", onsubmit: (ev) => ev.preventDefault()},
    h("label", {for: id("phases")}, "Car phases"), phases,
    ...input("max_current", "Car max current (mA)", car.max_current, {type: "number", min: 0, max: 80000, step: 100}),
    ...input("soc", "SoC (%)", Math.round(car.soc), {type: "number", min: 0, max: 100}),
    ...input("rfid", "RFID presented", car.rfid || "", {type: "text", maxlength: 30}));
  const send = async (plug) => {
    const q = {dev_id: d.dev_id, plugged: plug ? 1 : 0};
    if (plug) for (const el of form.elements) if (el.name && el.value !== "") q[el.name] = el.value;
    const r = await api("sim_vehicle", q);
    msg.textContent = r.ok ? "" : r.error;
    if (r.ok) plugged.textContent = r.data.plugged ? "car plugged in" : "no car";
  };
  const el = h("article", {class: "tile", dataset: {dev: d.dev_id, testid: "sim-evse"}},
    h("h3", {}, h("span", {class: "name"}, d.name || d.dev_id), h("span", {class: "id"}, d.dev_id)),
    h("div", {class: "state"}, h("span", {class: "live"}), " · ", plugged),
    form,
    h("div", {class: "actions"},
      h("button", {type: "button", class: "plug", onclick: () => send(true)}, "Plug in"),
      h("button", {type: "button", class: "unplug", onclick: () => send(false)}, "Unplug"), msg));
  live(el, d);
  return el;
}

function meterTile(d, config) {
  const inputId = `m-${d.dev_id}`;
  const msg = h("span", {class: "form-status", role: "status"});
  const power = h("input", {id: inputId, type: "number", step: 10, value: String(config.sim_power_w || 0)});
  const el = h("article", {class: "tile", dataset: {dev: d.dev_id, testid: "sim-meter"}},
    h("h3", {}, h("span", {class: "name"}, d.name || d.dev_id), h("span", {class: "id"}, d.dev_id)),
    h("div", {class: "state"}, h("span", {class: "live"})),
    h("form", {class: "sim-form", onsubmit: async (ev) => {
      ev.preventDefault();
      const r = await api("set_device", {}, {devices: [{dev_id: d.dev_id, sim_power_w: Number(power.value)}]});
      msg.textContent = r.ok ? "set" : r.error;
    }}, h("label", {for: inputId}, "Power (W)"), power,
       h("button", {type: "submit"}, "Set"), msg));
  live(el, d);
  return el;
}

/** Unplug every virtual car and zero every simulated meter (`keepalive` while leaving). */
async function stopAll(keepalive = false) {
  const s = signin();
  const headers = s && s.kind === "admin" ? {Authorization: s.auth} : {};
  const calls = [
    ...evses.map((dev_id) => fetch(`/cnf?cmd=sim_vehicle&plugged=0&dev_id=${encodeURIComponent(dev_id)}`, {headers, keepalive})),
    ...meters.map((dev_id) => fetch("/cnf?cmd=set_device", {method: "POST", keepalive,
      headers: {...headers, "Content-Type": "application/json"},
      body: JSON.stringify({devices: [{dev_id, sim_power_w: 0}]})}))];
  const answers = await Promise.allSettled(calls);
  return answers.every((a) => a.status === "fulfilled" && a.value.ok);
}

async function main() {
  frame("/ui/en/sim.htm");
  const [info, devs] = await Promise.all([api("get_dev_info"), api("get_devices")]);
  if (!info.ok || !devs.ok) { $("#stop-status").textContent = info.error || devs.error; return; }
  const configs = Object.fromEntries(devs.data.map((d) => [d.dev_id, d]));
  for (const d of info.data.devices.filter(simulated)) {
    const car = await api("sim_vehicle", {dev_id: d.dev_id});
    if (!car.ok) continue;
    evses.push(d.dev_id);
    $("#sim-evses").append(evseTile(d, car.data));
  }
  for (const d of info.data.devices.filter((d) => d.dev_type === "meter_sim")) {
    meters.push(d.dev_id);
    $("#sim-meters").append(meterTile(d, configs[d.dev_id] || {}));
  }
  if (!evses.length) $("#sim-evses").append(h("p", {}, "No simulated wallbox (add an evse_sim device)."));
  if (!meters.length) $("#sim-meters").append(h("p", {}, "No simulated meter (add a meter_sim device)."));
  $("#stop").addEventListener("click", async () => {
    $("#stop-status").textContent = "stopping…";
    const ok = await stopAll();
    $("#stop-status").textContent = ok ? "stopped: no car plugged in, simulated meters at 0 W" : "could not stop everything";
    for (const el of document.querySelectorAll(".plugged")) el.textContent = "no car";
    for (const el of document.querySelectorAll('[data-testid="sim-meter"] input')) el.value = "0";
  });
  window.addEventListener("pagehide", () => { stopAll(true); });
  const source = new EventSource("/ui/events");
  source.addEventListener("state", (ev) => {
    for (const d of JSON.parse(ev.data).devices) {
      const el = document.querySelector(`#sim-evses [data-dev="${CSS.escape(d.dev_id)}"], #sim-meters [data-dev="${CSS.escape(d.dev_id)}"]`);
      if (el) live(el, d);
    }
  });
}

main();
