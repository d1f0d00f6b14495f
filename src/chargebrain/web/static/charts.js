// Usage graphs: one chart of recorded measurements (cmd=get_usage) drawn with the vendored
// uPlot (window.uPlot, MIT, web/static/vendor/uplot/). A device shows its mean power with the
// min–max band and the energy per bucket as bars; the site overview shows grid, PV, house and
// cars. Day/week/month/year zoom, moving back and forth in time, a CSV link for the data shown.
// Names from the configuration are set as text, never as markup.

const SPANS = {day: 86400, week: 7 * 86400, month: 31 * 86400, year: 365 * 86400};
const REFRESH_MS = 30000;
export const COLORS = {power: "#c2410c", band: "rgba(194, 65, 12, 0.15)", energy: "rgba(37, 99, 235, 0.35)",
                       grid_w: "#6b21a8", pv_w: "#ca8a04", house_w: "#0f766e", cars_w: "#c2410c"};
const SITE_LABELS = {grid_w: "Grid (import +)", pv_w: "PV", house_w: "House", cars_w: "Cars"};

const $ = (sel) => document.querySelector(sel);
const state = {dev: "site", span: "day", end: null, plot: null, kind: null, names: {site: "Site overview"}};

function watts(w) {
  if (w === null || w === undefined) return "–";
  return Math.abs(w) >= 10000 ? `${(w / 1000).toFixed(1)} kW` : `${Math.round(w)} W`;
}
const energyTick = (wh) => (Math.abs(wh) < 1000 ? `${Math.round(wh)} Wh` : `${(wh / 1000).toFixed(1)} kWh`);
function kwh(wh) { return `${(wh / 1000).toFixed(wh < 10000 ? 2 : 1)} kWh`; }
function bucketText(s) {
  return s >= 86400 ? `${s / 86400} d` : s >= 3600 ? `${s / 3600} h` : s >= 60 ? `${s / 60} min` : `${s} s`;
}
const tzOffset = (t) => -new Date(t * 1000).getTimezoneOffset() * 60;

/** The get_usage query of the chart shown (the CSV link uses the same one). */
export function usageQuery(dev, span, end, format) {
  const q = new URLSearchParams({cmd: "get_usage", dev_id: dev, span});
  const at = end ?? Math.floor(Date.now() / 1000);
  if (end !== null) q.set("end", String(end));
  q.set("tz_offset_s", String(tzOffset(at)));
  if (format) q.set("format", format);
  return `/cnf?${q}`;
}

/** Columns of the answer → uPlot's data arrays, with a null row where buckets are missing
 *  (so lines break at recording gaps instead of bridging them). */
export function toColumns(answer, names) {
  const index = names.map((n) => answer.columns.indexOf(n));
  const out = [[], ...names.map(() => [])];
  let prev = null;
  for (const row of answer.rows) {
    if (prev !== null && row[0] - prev > answer.bucket_s) {
      out[0].push(prev + answer.bucket_s);
      for (let i = 0; i < names.length; i++) out[i + 1].push(null);
    }
    out[0].push(row[0]);
    index.forEach((col, i) => out[i + 1].push(row[col]));
    prev = row[0];
  }
  return out;
}

function deviceOptions(width) {
  return {
    width, height: 320,
    scales: {x: {time: true}, wh: {range: (u, min, max) => [0, Math.max(1, max) * 1.1]}},
    series: [
      {},
      {label: "Power", stroke: COLORS.power, width: 2, value: (u, v) => watts(v)},
      {label: "Min", stroke: COLORS.band, width: 1, value: (u, v) => watts(v)},
      {label: "Max", stroke: COLORS.band, width: 1, value: (u, v) => watts(v)},
      {label: "Energy", scale: "wh", fill: COLORS.energy, stroke: COLORS.energy, width: 0,
       paths: uPlot.paths.bars({size: [0.9, 60]}), points: {show: false},
       value: (u, v) => (v === null ? "–" : kwh(v))},
    ],
    bands: [{series: [3, 2], fill: COLORS.band}],
    axes: [{}, {values: (u, vals) => vals.map(watts), size: 70},
           {scale: "wh", side: 1, grid: {show: false}, values: (u, vals) => vals.map(energyTick), size: 80}],
  };
}

function siteOptions(width) {
  return {
    width, height: 320,
    scales: {x: {time: true}},
    series: [{}, ...Object.keys(SITE_LABELS).map((key) => ({
      label: SITE_LABELS[key], stroke: COLORS[key], width: 2, value: (u, v) => watts(v)}))],
    axes: [{}, {values: (u, vals) => vals.map(watts), size: 70}],
  };
}

function chartWidth() { return Math.max(280, $("#chart").clientWidth - 16); }

function draw(answer) {
  const site = answer.dev_id === "site";
  const kind = site ? "site" : "device";
  const data = site ? toColumns(answer, Object.keys(SITE_LABELS))
                    : toColumns(answer, ["power_w", "power_w_min", "power_w_max", "energy_wh"]);
  if (state.plot && state.kind !== kind) { state.plot.destroy(); state.plot = null; }
  if (!state.plot) {
    state.plot = new uPlot(site ? siteOptions(chartWidth()) : deviceOptions(chartWidth()), data, $("#chart"));
    state.kind = kind;
  } else {
    state.plot.setData(data);
  }
  state.plot.setScale("x", {min: answer.from, max: answer.to});
  // the CSV link pins the span shown, so it downloads exactly these rows' buckets
  $("#csv").href = usageQuery(answer.dev_id, answer.span, answer.to - 1, "csv");
  const chart = $("#chart");
  Object.assign(chart.dataset, {dev: answer.dev_id, span: answer.span, bucket: answer.bucket_s,
                                rows: answer.rows.length});
  const energyCols = site ? ["grid_wh", "pv_wh", "house_wh", "cars_wh"] : ["energy_wh"];
  const totals = energyCols.map((c) => {
    const i = answer.columns.indexOf(c);
    return answer.rows.reduce((sum, r) => sum + (r[i] ?? 0), 0);
  });
  const range = `${new Date(answer.from * 1000).toLocaleString()} – ${new Date(answer.to * 1000).toLocaleString()}`;
  $("#chart-range").textContent = range;
  $("#chart-title").textContent = state.names[answer.dev_id] || answer.dev_id;
  if (!answer.rows.length) {
    $("#chart-status").textContent = "Nothing recorded in this period.";
  } else if (site) {
    const parts = Object.values(SITE_LABELS).map((label, i) => `${label.replace(" (import +)", "")} ${kwh(totals[i])}`);
    $("#chart-status").textContent = `${answer.rows.length} buckets of ${bucketText(answer.bucket_s)} · energy: ${parts.join(", ")}`;
  } else {
    $("#chart-status").textContent = `${answer.rows.length} buckets of ${bucketText(answer.bucket_s)} · energy: ${kwh(totals[0])}`;
  }
}

let loading = 0;
async function load() {
  const mine = ++loading;
  $("#csv").href = usageQuery(state.dev, state.span, state.end, "csv");
  $("#csv").setAttribute("download", `usage-${state.dev}-${state.span}.csv`);
  for (const b of document.querySelectorAll(".zoom button")) {
    b.setAttribute("aria-pressed", String(b.dataset.span === state.span));
  }
  $("#later").disabled = state.end === null;
  try {
    const r = await fetch(usageQuery(state.dev, state.span, state.end), {cache: "no-store"});
    const answer = await r.json();
    if (mine !== loading) return; // a newer request was made meanwhile
    if (!r.ok) throw new Error(typeof answer === "string" ? answer : `HTTP ${r.status}`);
    draw(answer);
  } catch (err) {
    if (mine === loading) $("#chart-status").textContent = `Could not load the data: ${err.message}`;
  }
}

function move(direction) {
  const now = Math.floor(Date.now() / 1000);
  const end = (state.end ?? now) + direction * SPANS[state.span];
  state.end = end >= now ? null : end;
  load();
}

async function loadDevices() {
  try {
    const r = await fetch("/cnf?cmd=get_dev_info", {cache: "no-store"});
    if (!r.ok) return;
    const info = await r.json();
    const select = $("#device");
    for (const d of info.devices) {
      if (!d.device_enabled) continue;
      const option = document.createElement("option");
      option.value = d.dev_id;
      option.textContent = `${d.name || d.dev_id} (${d.dev_id})`;
      state.names[d.dev_id] = d.name || d.dev_id;
      select.append(option);
    }
    select.value = state.dev;
    if (select.value !== state.dev) select.value = "site";
  } catch (err) {
    // the chart still works for the site and the device in the address
  }
}

function fromHash() {
  const dev = decodeURIComponent(location.hash.slice(1));
  state.dev = dev || "site";
}

async function main() {
  fromHash();
  await loadDevices();
  $("#device").value = state.dev;
  $("#device").addEventListener("change", (ev) => {
    state.dev = ev.target.value;
    history.replaceState(null, "", `#${encodeURIComponent(state.dev)}`);
    load();
  });
  for (const b of document.querySelectorAll(".zoom button")) {
    b.addEventListener("click", () => { state.span = b.dataset.span; load(); });
  }
  $("#earlier").addEventListener("click", () => move(-1));
  $("#later").addEventListener("click", () => move(1));
  $("#now").addEventListener("click", () => { state.end = null; load(); });
  window.addEventListener("hashchange", () => { fromHash(); $("#device").value = state.dev; load(); });
  new ResizeObserver(() => state.plot && state.plot.setSize({width: chartWidth(), height: 320}))
    .observe($("#chart"));
  setInterval(() => { if (state.end === null && !document.hidden) load(); }, REFRESH_MS);
  load();
}

main();
