// The transaction log: the admin sees every transaction (filter by user), a user signed in with
// their id/PIN their own. Filters by device and start date; CSV download of what the filter shows.

import {$, api, download, frame, h, isAdmin, signin} from "/ui/static/common.js";

const time = (s) => (s ? new Date(s * 1000).toLocaleString() : "–");
function duration(s) {
  if (s === null || s === undefined) return "–";
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m} min`;
}

/** The get_transactions parameters of the filter form (plus the user's credential). */
function query(admin) {
  const q = {dev_id: $("#f-dev").value};
  const from = $("#f-from").value, to = $("#f-to").value;
  if (from) q.from = Math.floor(new Date(`${from}T00:00:00`).getTime() / 1000);
  if (to) q.to = Math.floor(new Date(`${to}T00:00:00`).getTime() / 1000) + 86400 - 1;
  if (admin) q.user = $("#f-user").value;
  else q.rfid = signin().secret;
  return q;
}

async function show(admin) {
  const r = await api("get_transactions", query(admin));
  $("#tx-error").textContent = r.ok ? "" : r.error;
  if (!r.ok) return;
  const body = $("#tx tbody");
  body.replaceChildren(...r.data.map((t) => h("tr", {dataset: {tx: String(t.id)}},
    h("td", {}, String(t.id)), h("td", {}, t.dev_id), h("td", {class: "name"}, t.user_name || ""),
    h("td", {}, t.rfid || ""), h("td", {}, time(t.start)), h("td", {}, time(t.end)),
    h("td", {}, duration(t.duration_s)), h("td", {}, `${(t.energy_wh / 1000).toFixed(3)} kWh`),
    h("td", {}, t.status))));
  if (!r.data.length) body.append(h("tr", {}, h("td", {colspan: 9}, "no transactions")));
  $("#tx").hidden = false;
}

async function main() {
  frame("/ui/transactions");
  const admin = await isAdmin();
  const s = signin();
  if (!admin && !(s && s.kind === "user")) { $("#need-signin").hidden = false; return; }
  $("#filters").hidden = false;
  const info = await api("get_dev_info");
  if (info.ok) {
    for (const d of info.data.devices.filter((d) => d.is_evse && d.dev_type !== "evse_group")) {
      $("#f-dev").append(h("option", {value: d.dev_id}, `${d.dev_id} ${d.name}`));
    }
  }
  if (admin) {
    const users = await api("get_users");
    for (const u of users.ok ? users.data : []) $("#f-user").append(h("option", {value: u.id}, u.name));
  } else {
    $("#f-user").closest("label").hidden = true;
  }
  $("#filters").addEventListener("submit", (ev) => { ev.preventDefault(); show(admin); });
  $("#csv").addEventListener("click", async () => {
    const r = await api("get_transactions", {...query(admin), format: "csv"});
    if (!r.ok) { $("#tx-error").textContent = r.error; return; }
    download(r.data, "transactions.csv");
  });
  await show(admin);
}

main();
