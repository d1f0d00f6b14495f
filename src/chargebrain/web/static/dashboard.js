// The live dashboard: renders get_dev_info; fed by /ui/events (Server-Sent Events), and by
// polling /cnf?cmd=get_dev_info while the stream is down. Text only: names and reasons from the
// configuration are set with textContent, never parsed as markup.

import {api, frame, h, isAdmin, signin} from "/ui/static/common.js";

const POLL_MS = 3000;
const STATES = {1: "Standby", 2: "Car connected", 3: "Charging", 4: "Charging (ventilation)",
                5: "Error", 6: "Offline"};
const ROLES = {0: "display", 1: "consumption", 2: "production", 3: "grid", 4: "EV",
               5: "storage (home)", 6: "storage (all)"};

const $ = (sel, root = document) => root.querySelector(sel);

function watts(w) {
  if (w === undefined || w === null) return "–";
  return Math.abs(w) >= 10000 ? `${(w / 1000).toFixed(1)} kW` : `${Math.round(w)} W`;
}
const amps = (ma) => (ma < 0 ? "–" : `${(ma / 1000).toFixed(1)} A`);
const currents = (d) => [d.current_l1, d.current_l2, d.current_l3].map((ma) => (ma / 1000).toFixed(1)).join(" / ") + " A";
const kwh = (wh) => `${(wh / 1000).toFixed(1)} kWh`;
function duration(s) {
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

function tile(container, d, rows) {
  let el = container.querySelector(`[data-dev="${CSS.escape(d.dev_id)}"]`);
  if (!el) {
    el = document.createElement("article");
    el.className = "tile";
    el.dataset.dev = d.dev_id;
    el.dataset.testid = "tile";
    const h = el.appendChild(document.createElement("h3"));
    h.appendChild(document.createElement("span")).className = "name";
    h.appendChild(document.createElement("span")).className = "id";
    el.appendChild(document.createElement("div")).className = "state";
    el.appendChild(document.createElement("table"));
    Object.assign(el.appendChild(document.createElement("a")), {className: "graph", textContent: "Usage graph", href: `/ui/charts#${encodeURIComponent(d.dev_id)}`});
    container.appendChild(el);
  }
  $(".name", el).textContent = d.name || d.dev_id;
  $(".id", el).textContent = d.dev_id;
  const table = $("table", el);
  const seen = new Set();
  for (const [field, label, value] of rows) {
    seen.add(field);
    let tr = table.querySelector(`[data-field="${field}"]`);
    if (!tr) {
      tr = table.insertRow();
      tr.dataset.field = field;
      tr.appendChild(document.createElement("th")).textContent = label;
      tr.appendChild(document.createElement("td"));
    }
    tr.cells[1].textContent = value;
  }
  for (const tr of [...table.rows]) if (!seen.has(tr.dataset.field)) tr.remove();
  el.classList.toggle("disabled", !d.device_enabled);
  return el;
}

// Session overrides from the tiles (override_device): the admin, or a user signed in with their
// id/PIN (the API decides whether that user may act at that wallbox). Visitors get no controls.
let control = null;  // null: no controls; else the credential parameters to send
isAdmin().then((admin) => {
  const s = signin();
  if (admin) control = {};
  else if (s && s.kind === "user") control = {rfid: s.secret};
});

function controls(el, d) {
  let box = $(".controls", el);
  if (!box) {
    const msg = h("span", {class: "form-status", role: "status"});
    const send = async (params) => {
      const r = await api("override_device", {dev_id: d.dev_id, ...control, ...params});
      msg.textContent = r.ok ? "" : r.error;
    };
    const limitId = `limit-${d.dev_id}`;
    const limit = h("input", {type: "number", id: limitId, min: 0, max: 1000, step: 1, class: "limit"});
    box = h("div", {class: "controls"},
      h("button", {type: "button", class: "pause", onclick: (ev) =>
        send({flags: ev.target.dataset.paused === "1" ? "c" : "C"})}),
      h("form", {class: "limit-form", onsubmit: (ev) => {
        ev.preventDefault();
        send({mamps: limit.value === "" ? 0 : Math.round(Number(limit.value) * 1000)});
      }}, h("label", {for: limitId}, "Limit (A)"), limit, h("button", {type: "submit"}, "Set")),
      msg);
    el.append(box);
  }
  const paused = (d.overrides & 1) === 1;
  const button = $(".pause", box);
  button.dataset.paused = paused ? "1" : "0";
  button.textContent = paused ? "Resume charging" : "Pause charging";
}

function evseTile(container, d) {
  const group = d.dev_type === "evse_group";
  const rows = [["power", "Power", watts(d.power_w)], ["currents", "Current L1/L2/L3", currents(d)]];
  if (!group) {
    rows.push(["setpoint", "Setpoint", d.charging_enabled ? amps(d.last_set_charging_cur) : "not enabled"]);
    if (d.lreason) rows.push(["reason", "Reason", d.lreason]);
    if (d.overrides & 1) rows.push(["override", "Override", "charging paused until unplug"]);
    if (d.ov_cur) rows.push(["ovcur", "Session limit", amps(d.ov_cur)]);
    if (d.paused) rows.push(["paused", "Paused", `${duration(d.pause_time)}${d.pause_reason ? ": " + d.pause_reason : ""}`]);
    rows.push(["energy", "Energy", kwh(d.total_energy)]);
  } else {
    rows.push(["members", "Members", (d.members || []).join(", ")]);
  }
  if (d.com_err) rows.push(["comerr", "Communication", `error for ${duration(d.com_err_secs)}${d.last_error ? ": " + d.last_error : ""}`]);
  const el = tile(container, d, rows);
  const state = group ? "Group" : STATES[d.state] || `state ${d.state}`;
  $(".state", el).textContent = !group && d.paused ? `${state}, paused` : state;
  el.classList.toggle("charging", d.state === 3 || d.state === 4);
  el.classList.toggle("error", d.state === 5);
  el.classList.toggle("offline", d.state === 6);
  el.classList.toggle("paused", !!d.paused);
  if (!group && control !== null) controls(el, d);
}

function meterTile(container, d) {
  const rows = [["power", "Power", watts(d.power_w)], ["currents", "Current L1/L2/L3", currents(d)],
                ["import", "Import / export", `${kwh(d.import)} / ${kwh(d.export)}`]];
  if (d.soc !== undefined) rows.push(["soc", "SoC", `${d.soc} %`]);
  if (d.com_err) rows.push(["comerr", "Communication", `error for ${duration(d.com_err_secs)}${d.last_error ? ": " + d.last_error : ""}`]);
  const el = tile(container, d, rows);
  $(".state", el).textContent = d.com_err ? "Offline" : ROLES[d.role] || "";
  el.classList.toggle("offline", !!d.com_err);
}

function sumRole(devices, role) {
  return devices.filter((d) => !d.is_evse && d.role === role && !d.com_err)
                .reduce((sum, d) => sum + d.power_w, 0);
}

function render(info) {
  const p = info.params;
  const devices = info.devices;
  if (p.title) { $("#title").textContent = p.title; document.title = `${p.title} – chargebrain`; }
  const site = {grid: watts(p.grid_pwr), pv: watts(sumRole(devices, 2)), house: watts(sumRole(devices, 1)),
                evse: watts(p.cons_evse_power), surplus: watts(p.surplus_power),
                avail: watts(p.avail_evse_power), overdraft: `${amps(p.overdraft_cur)} (${watts(p.overdraft)})`};
  for (const [key, text] of Object.entries(site)) $(`[data-site="${key}"]`).textContent = text;
  const scale = Math.max(1, p.max_total_power || 1);
  $(".bar .import").style.width = `${Math.min(100, Math.max(0, p.grid_pwr) / scale * 100)}%`;
  $(".bar .export").style.width = `${Math.min(100, Math.max(0, -p.grid_pwr) / scale * 100)}%`;
  const evses = $("#evses"), meters = $("#meters");
  const ids = new Set(devices.map((d) => d.dev_id));
  for (const el of document.querySelectorAll(".tile")) if (!ids.has(el.dataset.dev)) el.remove();
  for (const d of devices) (d.is_evse ? evseTile : meterTile)(d.is_evse ? evses : meters, d);
  $("#updated").textContent = `updated ${new Date(p.time * 1000).toLocaleTimeString()}`;
}

function status(cls, text) {
  const el = $("#conn");
  el.className = `conn ${cls}`;
  el.textContent = text;
}

let pollTimer = null;
async function poll() {
  try {
    const r = await fetch("/cnf?cmd=get_dev_info", {cache: "no-store"});
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    render(await r.json());
    status("polling", "polling");
  } catch (err) {
    status("down", `not connected (${err.message})`);
  }
}
function startPolling() {
  if (pollTimer === null) { pollTimer = setInterval(poll, POLL_MS); poll(); }
}
function stopPolling() {
  if (pollTimer !== null) { clearInterval(pollTimer); pollTimer = null; }
}

function connect() {
  if (!("EventSource" in window)) { startPolling(); return; }
  const source = new EventSource("/ui/events");
  source.addEventListener("state", (ev) => {
    stopPolling();
    render(JSON.parse(ev.data));
    status("live", "live");
  });
  // EventSource reconnects by itself; poll meanwhile so the numbers stay fresh
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, POLL_MS);
    startPolling();
  });
}

frame("/ui/");
connect();
