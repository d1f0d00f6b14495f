// The configuration pages (admin): site parameters, devices, users and RFIDs, charging rules and
// CM variables, all through /cnf. An error the API answers is shown next to the field it names.
// Text only: names from the configuration are set as text (h() makes text nodes).

import {$, api, frame, h, isAdmin, showError, signInAdmin} from "/ui/static/common.js";

// get_params names set_params refuses ("X is read-only"; api/handlers/devices.py READ_ONLY),
// and the power names that only restate a current parameter.
const READ_ONLY_PARAMS = new Set([
  "cons_evse_power", "avail_evse_power", "grid_pwr", "cons_pwr", "surplus_power", "error_pwr",
  "consumed_evse_power", "remaining_evse_power", "cycle_time", "max_evses", "shareware_mode",
  "version", "time", "vsn", "ocpp_gateway_license_cnt", "ocpp_gateway_licenses_used", "dev_meta",
  "ocpp_unknown_boxes", "max_total_power", "power_reserve", "overdraft", "max_total_evse_power"]);
const ROLES = ["display", "consumption", "production", "grid", "EV", "storage (home)", "storage (all)"];
const RULE_MODES = ["absolute current", "relative current", "solar current", "relative solar current",
                    "solar current minus value", "solar surplus"];
const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
// words for the device fields (the API's name stays in the label: errors name it)
const DEVICE_LABELS = {
  device_enabled: "Enabled", name: "Name", desc: "Description", number: "Number", address: "Address",
  id: "Modbus unit id", used_phases: "Used phases (mask, 0 = determine)", com_timeout_ms: "Timeout (ms)",
  label: "Label", min_charging_cur: "Min current (mA)", max_charging_cur: "Max current (mA or formula)",
  prio: "Priority", group: "Group", phase_rotation: "Phase rotation", attach: "Meter measuring it",
  fixed_rfid: "Fixed RFID", role: "Role", factor: "Factor", invert: "Invert", is_va: "Reads VA",
  phases: "Phases measured (mask, 0 = all)", sim_power_w: "Simulated power (W)",
  battery_save_threshold: "Battery save threshold (mA)", enable_snooze: "Snooze", enable_wakeup: "Wake-up",
  accept_unauthenticated: "Accept HTTP input without admin", ocpp_gateway_client_id: "OCPP gateway client id"};

// device fields edited elsewhere or never by hand
const DEVICE_SKIP = new Set(["dev_id", "dev_type", "charging_rules", "users", "soft_meter"]);

/** A value typed into a text input, as the API wants it: a number when it reads as one (and the
 *  field was a number), else the text (a formula, a name). */
function typed(text, original) {
  if (typeof original === "number" || original === null) {
    const t = text.trim();
    if (t !== "" && !Number.isNaN(Number(t))) return Number(t);
  }
  return text;
}

function status(text = "", cls = "") {
  return h("span", {class: `form-status ${cls}`, role: "status"}, text);
}

/** A labelled input for `value` of field `name` with its error slot. */
function fieldRow(name, value, {label = name, id, options, help} = {}) {
  const inputId = id || `f-${name}`;
  let input;
  if (options) {
    input = h("select", {id: inputId, name});
    for (const [v, text] of options) input.append(h("option", {value: String(v), selected: String(v) === String(value)}, text));
  } else if (typeof value === "boolean") {
    input = h("input", {type: "checkbox", id: inputId, name, checked: value});
  } else if (value !== null && typeof value === "object") {
    input = h("textarea", {id: inputId, name, rows: 2, dataset: {json: "1"}}, JSON.stringify(value));
  } else {
    input = h("input", {type: "text", id: inputId, name, value: value === null ? "" : String(value)});
  }
  input.dataset.original = JSON.stringify(value);
  return h("div", {class: "field"},
    h("label", {for: inputId}, label),
    input,
    help ? h("small", {}, help) : null,
    h("span", {class: "field-error", role: "alert", dataset: {errorFor: name}}));
}

/** The changed values of a form built from fieldRow()s ({} when nothing changed). */
function changes(form, {all = false} = {}) {
  const out = {};
  for (const input of form.querySelectorAll("[data-original]")) {
    const original = JSON.parse(input.dataset.original);
    let value;
    if (input.type === "checkbox") value = input.checked;
    else if (input.dataset.json) {
      try { value = JSON.parse(input.value); } catch { value = input.value; }
    } else if (input.tagName === "SELECT") value = typeof original === "number" ? Number(input.value) : input.value;
    else value = typed(input.value, original);
    if (all || JSON.stringify(value) !== JSON.stringify(original)) out[input.name] = value;
  }
  return out;
}

// -- site parameters -----------------------------------------------------------------------------

async function paramsSection(root) {
  const r = await api("get_params");
  if (!r.ok) { root.append(h("p", {class: "error"}, r.error)); return; }
  const msg = status();
  const form = h("form", {class: "grid-form", dataset: {testid: "params-form"}, onsubmit: async (ev) => {
    ev.preventDefault();
    const body = changes(form);
    if (!Object.keys(body).length) { msg.textContent = "nothing changed"; return; }
    const res = await api("set_params", {}, body);
    showError(form, res.error, msg);
    if (res.ok) { msg.textContent = "saved"; refresh(); }
  }});
  for (const [name, value] of Object.entries(r.data)) {
    if (READ_ONLY_PARAMS.has(name)) continue;
    form.append(fieldRow(name, value, {id: `p-${name}`}));
  }
  form.append(h("div", {class: "actions"}, h("button", {type: "submit"}, "Save site parameters"), msg));
  root.append(h("h3", {}, "Site parameters"),
    h("p", {class: "hint"}, "Currents in mA; limits may be formulas. Only changed values are sent."), form,
    passwordForm());
}

/** change_admin_pwd; on success the stored sign-in is replaced by the new password. */
function passwordForm() {
  const msg = status();
  const old = h("input", {type: "password", id: "pw-old", name: "old_pwd", autocomplete: "current-password"});
  const pw = h("input", {type: "password", id: "pw-new", name: "new_pwd", autocomplete: "new-password", minlength: 8});
  const form = h("form", {class: "inline-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const res = await api("change_admin_pwd", {old_pwd: old.value, new_pwd: pw.value});
    showError(form, res.error, msg);
    if (res.ok) {
      await signInAdmin(pw.value);
      old.value = pw.value = "";
      msg.textContent = "password changed";
    }
  }}, h("label", {for: "pw-old"}, "Current password"), old, h("label", {for: "pw-new"}, "New password (8–128)"), pw,
     h("button", {type: "submit"}, "Change admin password"), msg,
     h("span", {class: "field-error", role: "alert", dataset: {errorFor: "old_pwd new_pwd"}}));
  return h("section", {}, h("h3", {}, "Admin password"), form);
}

// -- devices -------------------------------------------------------------------------------------

async function devicesSection(root) {
  const [devs, types] = await Promise.all([api("get_devices"), api("get_dev_types")]);
  if (!devs.ok) { root.append(h("p", {class: "error"}, devs.error)); return; }
  const groups = devs.data.filter((d) => d.dev_type === "evse_group");
  const meters = devs.data.filter((d) => d.dev_id.startsWith("M"));
  const table = h("table", {class: "list", dataset: {testid: "device-list"}},
    h("thead", {}, h("tr", {}, h("th", {}, "Id"), h("th", {}, "Name"), h("th", {}, "Type"), h("th", {}, ""))));
  const body = table.appendChild(h("tbody"));
  const editor = h("div", {id: "device-editor"});
  for (const d of devs.data) {
    body.append(h("tr", {dataset: {dev: d.dev_id}},
      h("td", {}, d.dev_id), h("td", {class: "name"}, d.name), h("td", {}, types.data[d.dev_type] || d.dev_type),
      h("td", {}, h("button", {type: "button", onclick: () => editDevice(editor, d, groups, meters)}, "Edit"),
        " ", h("button", {type: "button", class: "danger", onclick: async () => {
          if (!confirm(`Delete ${d.dev_id}?`)) return;
          const res = await api("del_device", {dev_id: d.dev_id});
          if (res.ok) refresh(); else alert(res.error);
        }}, "Delete"))));
  }
  const typeSelect = h("select", {id: "new-type"});
  for (const [t, label] of Object.entries(types.data)) typeSelect.append(h("option", {value: t}, label));
  const newName = h("input", {type: "text", id: "new-name"});
  const addMsg = status();
  const addForm = h("form", {class: "inline-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const res = await api("set_device", {}, {devices: [{dev_type: typeSelect.value, name: newName.value}]});
    showError(addForm, res.error, addMsg);
    if (res.ok) refresh();
  }}, h("label", {for: "new-type"}, "Type"), typeSelect, h("label", {for: "new-name"}, "Name"), newName,
     h("button", {type: "submit"}, "Add device"), addMsg);
  root.append(h("h3", {}, "Devices"), h("div", {class: "scroll"}, table), h("h3", {}, "New device"), addForm, editor);
}

function editDevice(editor, d, groups, meters) {
  editor.replaceChildren();
  const msg = status();
  const form = h("form", {class: "grid-form", dataset: {testid: "device-form"}, onsubmit: async (ev) => {
    ev.preventDefault();
    const body = changes(form);
    if (!Object.keys(body).length) { msg.textContent = "nothing changed"; return; }
    const res = await api("set_device", {}, {devices: [{dev_id: d.dev_id, ...body}]});
    showError(form, res.error, msg);
    if (res.ok) { msg.textContent = "saved"; Object.assign(d, body); for (const i of form.querySelectorAll("[data-original]")) i.dataset.original = JSON.stringify(d[i.name]); }
  }});
  const groupOptions = [[0, "site (no group)"], ...groups.filter((g) => g.dev_id !== d.dev_id)
    .map((g) => [Number(g.dev_id.slice(1)), `${g.dev_id} ${g.name}`])];
  for (const [name, value] of Object.entries(d)) {
    if (DEVICE_SKIP.has(name)) continue;
    const opts = {id: `d-${name}`, label: DEVICE_LABELS[name] ? `${DEVICE_LABELS[name]} · ${name}` : name};
    if (name === "device_enabled") opts.options = [[1, "enabled"], [0, "disabled"]];
    if (name === "role") opts.options = ROLES.map((label, i) => [i, `${i} ${label}`]);
    if (name === "group") opts.options = groupOptions;
    if (name === "attach") opts.options = [["", "none"], ...meters.map((m) => [m.dev_id, `${m.dev_id} ${m.name}`])];
    if (name === "phase_rotation") opts.options = [[0, "0°"], [120, "120°"], [240, "240°"]];
    if (name === "max_charging_cur") opts.help = "mA, or a formula";
    form.append(fieldRow(name, value, opts));
  }
  form.append(h("div", {class: "actions"}, h("button", {type: "submit"}, `Save ${d.dev_id}`),
    h("button", {type: "button", onclick: () => editor.replaceChildren()}, "Close"), msg));
  editor.append(h("h3", {}, "Device ", h("span", {class: "name"}, d.name || d.dev_id), ` (${d.dev_id})`), form);
  form.querySelector("input, select, textarea")?.focus();
}

// -- users and RFIDs -----------------------------------------------------------------------------

async function usersSection(root) {
  const [users, devs] = await Promise.all([api("get_users"), api("get_devices")]);
  if (!users.ok) { root.append(h("p", {class: "error"}, users.error)); return; }
  const evses = devs.data.filter((d) => d.dev_id.startsWith("E") && d.dev_type !== "evse_group");
  const editor = h("div", {id: "user-editor"});
  const table = h("table", {class: "list", dataset: {testid: "user-list"}},
    h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Cards"), h("th", {}, "Wallboxes"), h("th", {}, ""))));
  const body = table.appendChild(h("tbody"));
  for (const u of users.data) {
    body.append(h("tr", {dataset: {user: u.id}}, h("td", {class: "name"}, u.name),
      h("td", {}, u.rfids.map((c) => c.name || c.id).join(", ")), h("td", {}, u.dev_ids.join(", ")),
      h("td", {}, h("button", {type: "button", onclick: () => editUser(editor, u, evses, false)}, "Edit"), " ",
        h("button", {type: "button", class: "danger", onclick: async () => {
          if (!confirm(`Delete user ${u.name}?`)) return;
          const res = await api("del_user", {id: u.id});
          if (res.ok) refresh(); else alert(res.error);
        }}, "Delete"))));
  }
  const add = h("button", {type: "button", onclick: async () => {
    const id = await api("get_new_user_id");
    if (!id.ok) { alert(id.error); return; }
    editUser(editor, {id: id.data, name: "", display: true, show_tile: true, dev_ids: [], rfids: []}, evses, true);
  }}, "New user");
  root.append(h("h3", {}, "Users"), h("div", {class: "scroll"}, table), add, editor);
}

function cardRow(card) {
  const row = h("fieldset", {class: "card"},
    h("legend", {}, "Card / PIN"),
    h("label", {}, "RFID or PIN ", h("input", {type: "text", class: "card-id", value: card.id || "", required: true})),
    h("label", {}, "Name ", h("input", {type: "text", class: "card-name", value: card.name || ""})),
    h("label", {}, h("input", {type: "checkbox", class: "card-auth", checked: card.ac_auth !== false}), " authorises charging"),
    h("button", {type: "button", class: "danger", onclick: () => row.remove()}, "Remove card"));
  row.card = card;
  return row;
}

function editUser(editor, u, evses, isNew) {
  editor.replaceChildren();
  const msg = status();
  const cards = h("div", {class: "cards"}, u.rfids.map(cardRow));
  const learnMsg = status("", "learn");
  learnMsg.dataset.testid = "learn-status";
  const learn = h("button", {type: "button", onclick: () => learnCard(cards, learnMsg, learn)}, "Learn the next card (1 min)");
  const devBoxes = evses.map((e) => h("label", {class: "check"},
    h("input", {type: "checkbox", class: "dev", value: e.dev_id, checked: u.dev_ids.includes(e.dev_id)}),
    " ", h("span", {class: "name"}, e.name || e.dev_id), ` (${e.dev_id})`));
  const name = h("input", {type: "text", id: "u-name", value: u.name, required: true});
  const form = h("form", {class: "user-form", dataset: {testid: "user-form"}, onsubmit: async (ev) => {
    ev.preventDefault();
    const rfids = [...cards.querySelectorAll(".card")].map((row) => ({
      id: $(".card-id", row).value.trim(), name: $(".card-name", row).value,
      ac_auth: $(".card-auth", row).checked}));
    const dev_ids = [...form.querySelectorAll(".dev:checked")].map((el) => el.value);
    const res = await api("set_user", {}, {id: u.id, name: name.value, dev_ids, rfids,
                                          display: $("#u-display").checked, show_tile: $("#u-tile").checked});
    showError(form, res.error, msg);
    if (res.ok) { msg.textContent = "saved"; setTimeout(refresh, 300); }
  }},
    h("div", {class: "field"}, h("label", {for: "u-name"}, "Name"), name, h("span", {class: "field-error", dataset: {errorFor: "name"}})),
    h("div", {class: "field"}, h("label", {for: "u-id"}, "User id (a secret: it signs the user in)"),
      h("input", {type: "text", id: "u-id", value: u.id, readOnly: true})),
    h("label", {class: "check"}, h("input", {type: "checkbox", id: "u-display", checked: u.display}), " name may be shown on the wallbox tile"),
    h("label", {class: "check"}, h("input", {type: "checkbox", id: "u-tile", checked: u.show_tile}), " tile visible to others"),
    h("fieldset", {}, h("legend", {}, "May charge at"), devBoxes, h("span", {class: "field-error", dataset: {errorFor: "dev_ids"}})),
    h("h4", {}, "Cards and PINs"), cards, h("span", {class: "field-error", role: "alert", dataset: {errorFor: "rfids rfid"}}),
    h("div", {class: "actions"},
      h("button", {type: "button", onclick: () => cards.append(cardRow({}))}, "Add card / PIN"), learn, learnMsg),
    h("div", {class: "actions"}, h("button", {type: "submit"}, isNew ? "Create user" : "Save user"),
      h("button", {type: "button", onclick: () => editor.replaceChildren()}, "Close"), msg));
  editor.append(h("h3", {}, isNew ? "New user" : "User ", isNew ? "" : h("span", {class: "name"}, u.name)), form);
  name.focus();
}

/** Open the server's 1-minute learn window and put the next card a wallbox reports in a row. */
async function learnCard(cards, msg, button) {
  const start = await api("learn_rfid", {start: 1});
  if (!start.ok) { msg.textContent = start.error; return; }
  button.disabled = true;
  try {
    for (;;) {
      const r = await api("learn_rfid");
      if (!r.ok) { msg.textContent = r.error; return; }
      if (r.data.rfid) {
        const row = cardRow({id: r.data.rfid});
        cards.append(row);
        msg.textContent = `card ${r.data.rfid} seen at ${r.data.dev_id}`;
        $(".card-name", row).focus();
        return;
      }
      if (!r.data.open) { msg.textContent = "no card in the last minute"; return; }
      msg.textContent = `hold the card to a wallbox… ${Math.ceil(r.data.remaining_s)} s`;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  } finally {
    button.disabled = false;
  }
}

// -- charging rules ------------------------------------------------------------------------------

async function rulesSection(root) {
  const [devs, users] = await Promise.all([api("get_devices"), api("get_users")]);
  if (!devs.ok) { root.append(h("p", {class: "error"}, devs.error)); return; }
  const owners = [...devs.data.filter((d) => "charging_rules" in d).map((d) => ["device", d]),
                  ...users.data.map((u) => ["user", u])];
  const pick = h("select", {id: "rule-owner"});
  owners.forEach(([kind, o], i) => pick.append(h("option", {value: String(i)},
    kind === "device" ? `Wallbox ${o.dev_id} ${o.name}` : `User ${o.name}`)));
  const editor = h("div");
  const show = () => { const [kind, o] = owners[Number(pick.value)]; ruleEditor(editor, kind, o); };
  pick.addEventListener("change", show);
  root.append(h("h3", {}, "Charging rules"),
    h("p", {class: "hint"}, "The legacy rule list of a wallbox or user (days, mode, current, times). Stored as written; checked for shape."),
    h("label", {for: "rule-owner"}, "Rules of "), pick, editor);
  if (owners.length) show();
}

/** A condition/action rule (docs/charging-rules.md) is edited as its JSON text. */
function jsonRuleRow(rule, index) {
  const text = h("textarea", {class: "rule-json", rows: 4, "aria-label": `rule ${index + 1} as JSON`},
                 JSON.stringify(rule, null, 1));
  const row = h("fieldset", {class: "rule", dataset: {testid: "rule", json: "1"}},
    h("legend", {}, `Rule ${index + 1} (condition/action, JSON)`), text,
    h("button", {type: "button", class: "danger", onclick: () => row.remove()}, "Remove rule"));
  return row;
}

function ruleRow(rule, index) {
  if ("cond" in rule || "action" in rule) return jsonRuleRow(rule, index);
  const r = {days: 127, mode: 0, current: 0, enabled: true, udur: 0, time: 0, dur: 0, expr: "", ...rule};
  const num = (cls, value, label, attrs = {}) => h("label", {}, label, " ",
    h("input", {type: "number", class: cls, value: String(value), ...attrs}));
  const days = h("span", {class: "days", role: "group", "aria-label": "days"},
    DAYS.map((day, i) => h("label", {class: "check"}, h("input", {type: "checkbox", class: "day", checked: !!(r.days & (1 << i))}), day)));
  const mode = h("select", {class: "mode", "aria-label": "mode"});
  RULE_MODES.forEach((m, i) => mode.append(h("option", {value: String(i), selected: i === r.mode}, `${i} ${m}`)));
  const hhmm = (min) => `${String(Math.floor(min / 60)).padStart(2, "0")}:${String(min % 60).padStart(2, "0")}`;
  const row = h("fieldset", {class: "rule", dataset: {testid: "rule"}},
    h("legend", {}, `Rule ${index + 1}`),
    h("label", {class: "check"}, h("input", {type: "checkbox", class: "enabled", checked: r.enabled}), " enabled"),
    days, h("label", {}, "Mode ", mode),
    num("current", r.current, "Current (mA)", {step: 100}),
    h("label", {}, "From ", h("input", {type: "time", class: "time", value: hhmm(r.time)})),
    num("dur", r.dur, "Duration (min)", {min: 0, max: 1440}),
    num("udur", r.udur, "Undercut (s)", {min: 0}),
    h("label", {}, "Condition ", h("input", {type: "text", class: "expr", value: r.expr})),
    h("button", {type: "button", class: "danger", onclick: () => row.remove()}, "Remove rule"));
  row.rule = rule;
  return row;
}

function readRule(row) {
  if (row.dataset.json) {
    const text = row.querySelector(".rule-json").value;
    try { return JSON.parse(text); } catch { return text; }  // the API names what is wrong
  }
  const q = (cls) => row.querySelector(`.${cls}`);
  const [hh, mm] = (q("time").value || "00:00").split(":").map(Number);
  let days = 0;
  row.querySelectorAll(".day").forEach((el, i) => { if (el.checked) days |= 1 << i; });
  return {...row.rule, enabled: q("enabled").checked, days, mode: Number(q("mode").value),
          current: Number(q("current").value), time: hh * 60 + mm, dur: Number(q("dur").value),
          udur: Number(q("udur").value), expr: q("expr").value};
}

function ruleEditor(editor, kind, owner) {
  const list = h("div", {class: "rules"}, (owner.charging_rules || []).map(ruleRow));
  const msg = status();
  const form = h("form", {onsubmit: async (ev) => {
    ev.preventDefault();
    const rules = [...list.querySelectorAll(".rule")].map(readRule);
    const res = kind === "device"
      ? await api("set_device", {}, {devices: [{dev_id: owner.dev_id, charging_rules: rules}]})
      : await api("set_user", {}, {id: owner.id, charging_rules: rules});
    showError(form, res.error, msg);
    if (res.ok) { owner.charging_rules = rules; msg.textContent = "saved"; }
  }}, list, h("span", {class: "field-error", dataset: {errorFor: "charging_rules"}}),
    h("div", {class: "actions"},
      h("button", {type: "button", onclick: () => list.append(ruleRow({}, list.children.length))}, "Add rule"),
      h("button", {type: "submit"}, "Save rules"), msg));
  editor.replaceChildren(form);
}

// -- CM variables --------------------------------------------------------------------------------

async function varsSection(root) {
  const r = await api("get_cm_vars");
  if (!r.ok) { root.append(h("p", {class: "error"}, r.error)); return; }
  const rows = h("tbody");
  const row = (v) => h("tr", {class: "var"},
    h("td", {}, h("input", {type: "text", class: "v-name", value: v.name || "", "aria-label": "name"})),
    h("td", {}, h("input", {type: "text", class: "v-expr", value: v.expr === undefined ? "" : String(v.expr), "aria-label": "value or formula"})),
    h("td", {}, v.value === undefined || v.value === null ? "–" : String(v.value)),
    h("td", {}, h("button", {type: "button", class: "danger", onclick: (ev) => ev.target.closest("tr").remove()}, "Remove")));
  r.data.vars.forEach((v) => rows.append(row(v)));
  const msg = status();
  const form = h("form", {onsubmit: async (ev) => {
    ev.preventDefault();
    const vars = [...rows.querySelectorAll(".var")].map((tr) => ({
      name: $(".v-name", tr).value.trim(), expr: typed($(".v-expr", tr).value, null)}));
    const res = await api("set_cm_vars", {clear: 1}, {vars});
    showError(form, res.error, msg);
    if (res.ok) { msg.textContent = "saved"; setTimeout(refresh, 300); }
  }}, h("table", {class: "list"}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Value or formula"),
      h("th", {}, "Current value"), h("th", {}, ""))), rows),
    h("div", {class: "actions"}, h("button", {type: "button", onclick: () => rows.append(row({}))}, "Add variable"),
      h("button", {type: "submit"}, "Save variables"), msg));
  root.append(h("h3", {}, "CM variables"), h("p", {class: "hint"}, "Formulas refer to a variable as CM.name."), form);
}

// -- routing -------------------------------------------------------------------------------------

const SECTIONS = {params: paramsSection, devices: devicesSection, users: usersSection,
                  rules: rulesSection, vars: varsSection};

async function refresh() {
  const name = location.hash.slice(1) in SECTIONS ? location.hash.slice(1) : "params";
  for (const a of document.querySelectorAll(".tabs a")) {
    a.toggleAttribute("aria-current", a.getAttribute("href") === `#${name}`);
  }
  const root = $("#section");
  const fresh = h("div", {dataset: {section: name}});
  await SECTIONS[name](fresh);
  root.replaceChildren(fresh);
}

async function main() {
  frame("/ui/config");
  if (!(await isAdmin())) { $("#need-admin").hidden = false; return; }
  $("#config").hidden = false;
  window.addEventListener("hashchange", refresh);
  await refresh();
}

main();
