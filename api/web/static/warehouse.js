// The warehouse: what I hold, inbound shipments to settle, shipping and packing the selection, and my
// operations as they progress.
"use strict";

const $ = (id) => document.getElementById(id);
const ACTIVE = 1; // OrgStatus.ACTIVE
let me = null;
let orgs = new Map();
let batches = new Map();
let openShipment = null;

function orgName(id) {
  const org = orgs.get(id);
  return org ? org.name : `organisation ${id}`;
}

function selection() {
  const containers = [];
  const units = [];
  for (const box of document.querySelectorAll("#containers input[type=checkbox]:checked")) containers.push(box.value);
  for (const box of document.querySelectorAll("#units input[type=checkbox]:checked")) units.push(...JSON.parse(box.dataset.units));
  return { containers, units };
}

function summarise() {
  const { containers, units } = selection();
  $("selection-summary").textContent =
    containers.length || units.length ? `Selected: ${containers.length} container(s), ${units.length} loose pack(s).` : "Nothing selected.";
}

async function loadReference() {
  const [orgList, batchList] = await Promise.all([RX.api("GET", "/v1/organizations"), RX.api("GET", "/v1/batches", { params: { limit: 1000 } })]);
  orgs = new Map(orgList.map((o) => [o.id, o]));
  batches = new Map(batchList.map((b) => [b.batch_id, b]));
  const select = $("ship-to");
  select.replaceChildren(RX.el("option", { value: "", text: "choose…" }));
  for (const o of orgList) {
    if (me.organization && o.id === me.organization.id) continue;
    if (o.status !== ACTIVE || o.roles.includes("REGULATOR")) continue;
    select.append(RX.el("option", { value: String(o.id), text: `${o.name} (GLN ${o.gln}, ${o.roles.join(", ").toLowerCase()})` }));
  }
}

async function loadInventory() {
  const inventory = await RX.api("GET", "/v1/inventory");
  RX.rows(
    document.querySelector("#containers tbody"),
    inventory.containers,
    (c) =>
      RX.el(
        "tr",
        {},
        RX.el("td", {}, RX.el("input", { type: "checkbox", value: c.sscc || "", "aria-label": `select container ${c.sscc}`, onchange: summarise })),
        RX.el("td", { class: "mono", text: c.sscc || RX.short(c.key) }),
        RX.el("td", { text: c.state }),
        RX.el("td", {}, RX.el("button", { type: "button", class: "small", text: "Unpack", "aria-label": `unpack ${c.sscc}`, onclick: () => unpack(c.sscc) })),
      ),
    "No containers.",
  );
  const groups = new Map();
  for (const u of inventory.units) {
    const key = `${u.batch_id}|${u.state}`;
    if (!groups.has(key)) groups.set(key, { batch_id: u.batch_id, state: u.state, gtin: u.gtin, units: [] });
    groups.get(key).units.push({ gtin: u.gtin, serial: u.serial });
  }
  RX.rows(
    document.querySelector("#units tbody"),
    [...groups.values()],
    (g) => {
      const batch = batches.get(g.batch_id);
      const lot = batch ? batch.lot : RX.short(g.batch_id);
      return RX.el(
        "tr",
        {},
        RX.el("td", {}, RX.el("input", { type: "checkbox", "data-units": JSON.stringify(g.units), "aria-label": `select the ${g.units.length} loose packs of lot ${lot}`, onchange: summarise })),
        RX.el("td", { text: lot + (batch ? ` (${batch.status})` : "") }),
        RX.el("td", { class: "mono", text: g.gtin || "" }),
        RX.el("td", { text: g.state }),
        RX.el("td", { text: String(g.units.length) }),
      );
    },
    "No loose packs.",
  );
  $("inventory-summary").textContent = `${inventory.containers.length} container(s) and ${inventory.units.length} loose pack(s) held.`;
  summarise();
}

async function loadInbound() {
  const list = await RX.api("GET", "/v1/shipments", { params: { direction: "inbound" } });
  RX.rows(
    document.querySelector("#inbound tbody"),
    list,
    (s) =>
      RX.el(
        "tr",
        {},
        RX.el("td", { class: "mono", text: s.label }),
        RX.el("td", { text: orgName(s.from_org) }),
        RX.el("td", { text: String(s.items) }),
        RX.el("td", { text: String(s.pending) }),
        RX.el("td", {}, RX.el("button", { type: "button", class: "small", text: "Open", "aria-label": `open shipment ${s.label}`, onclick: () => openInbound(s.shipment_id) })),
      ),
    "No shipment waiting for you.",
  );
}

function itemLabel(i) {
  return i.sscc ? `case/pallet ${i.sscc}` : i.serial ? `pack ${i.gtin} / ${i.serial}` : RX.short(i.key);
}

async function openInbound(shipmentId) {
  const s = await RX.api("GET", `/v1/shipments/${shipmentId}`);
  openShipment = s;
  $("shipment-title").textContent = `Shipment ${s.label} from ${orgName(s.from_org)}: ${s.pending} of ${s.items} pending`;
  RX.rows(document.querySelector("#shipment-items tbody"), s.item_list || [], (i) =>
    RX.el(
      "tr",
      {},
      RX.el("td", {}, RX.el("input", { type: "checkbox", disabled: i.outcome !== "pending", "data-item": JSON.stringify(i), "aria-label": `select ${itemLabel(i)}` })),
      RX.el("td", { class: "mono", text: itemLabel(i) }),
      RX.el("td", { text: i.outcome }),
    ),
  );
  $("shipment").hidden = false;
}

function selectedInbound() {
  const containers = [];
  const units = [];
  for (const box of document.querySelectorAll("#shipment-items input:checked")) {
    const i = JSON.parse(box.dataset.item);
    if (i.sscc) containers.push(i.sscc);
    else units.push({ gtin: i.gtin, serial: i.serial });
  }
  return { containers, units };
}

async function settle(action, all) {
  if (!openShipment) return;
  RX.showError("warehouse-error", null);
  const body = all ? {} : selectedInbound();
  if (!all && !body.containers.length && !body.units.length) {
    RX.showError("warehouse-error", new Error("select the items first"));
    return;
  }
  if (action !== "receive") body.reason = $("settle-reason").value;
  try {
    await RX.api("POST", `/v1/shipments/${openShipment.shipment_id}/${action}`, { json: body });
    RX.toast(`Shipment ${openShipment.label}: ${action === "receive" ? "received" : action === "reject" ? "refused" : "reported missing"}`);
    await Promise.all([openInbound(openShipment.shipment_id), loadInbound(), loadInventory(), loadOperations()]);
  } catch (error) {
    RX.showError("warehouse-error", error);
  }
}

async function ship(event) {
  event.preventDefault();
  RX.showError("warehouse-error", null);
  const { containers, units } = selection();
  const to = Number($("ship-to").value);
  if (!containers.length && !units.length) return RX.showError("warehouse-error", new Error("select what to ship first"));
  if (!to) return RX.showError("warehouse-error", new Error("to organisation: choose who receives the shipment"));
  const body = { to_org: to, containers, units };
  if ($("ship-id").value.trim()) body.shipment_id = $("ship-id").value.trim();
  if ($("ship-ref").value.trim()) body.reference = $("ship-ref").value.trim();
  try {
    await RX.api("POST", "/v1/shipments", { json: body });
    RX.toast(`Shipped ${containers.length + units.length} item(s) to ${orgName(to)}`);
    $("ship-id").value = "";
    await Promise.all([loadInventory(), loadOperations()]);
  } catch (error) {
    RX.showError("warehouse-error", error);
    loadOperations();
  }
}

async function pack(event) {
  event.preventDefault();
  RX.showError("warehouse-error", null);
  const { containers, units } = selection();
  const sscc = $("pack-sscc").value.replace(/^\(00\)|^00(?=\d{18}$)/, "").trim();
  try {
    await RX.api("POST", "/v1/pack", { json: { container: sscc, containers, units } });
    RX.toast(`Packed into ${sscc}`);
    $("pack-sscc").value = "";
    await Promise.all([loadInventory(), loadOperations()]);
  } catch (error) {
    RX.showError("warehouse-error", error);
  }
}

async function unpack(sscc) {
  RX.showError("warehouse-error", null);
  try {
    await RX.api("POST", "/v1/unpack", { json: { container: sscc } });
    RX.toast(`Unpacked ${sscc}`);
    await Promise.all([loadInventory(), loadOperations()]);
  } catch (error) {
    RX.showError("warehouse-error", error);
  }
}

async function loadOperations() {
  const ops = await RX.api("GET", "/v1/operations", { params: { limit: 15 } });
  RX.rows(
    document.querySelector("#operations tbody"),
    ops,
    (op) =>
      RX.el(
        "tr",
        { "data-status": op.status },
        RX.el("td", { text: new Date(op.created_at * 1000).toLocaleTimeString() }),
        RX.el("td", { text: op.kind }),
        RX.el("td", {}, RX.el("span", { class: `status ${op.status}`, text: op.status.replace("_", " ") }), op.error ? RX.el("div", { class: "small", text: op.error.detail || op.error.title || "" }) : null),
        RX.el("td", { text: op.items_total ? `${op.items_done}/${op.items_total} items` : `${op.txs_done}/${op.txs_total} tx` }),
      ),
    "No operations yet.",
  );
  return ops.some((op) => op.status === "queued" || op.status === "running");
}

// Live: every second while something is under way, every 5 s otherwise.
async function poll() {
  let busy = false;
  try {
    busy = await loadOperations();
  } catch {
    /* shown by the next successful poll */
  }
  setTimeout(poll, busy ? 1000 : 5000);
}

document.addEventListener("DOMContentLoaded", async () => {
  me = await RX.session();
  $("ship-form").addEventListener("submit", ship);
  $("pack-form").addEventListener("submit", pack);
  $("receive-all").addEventListener("click", () => settle("receive", true));
  $("receive-selected").addEventListener("click", () => settle("receive", false));
  $("reject-selected").addEventListener("click", () => settle("reject", false));
  $("missing-selected").addEventListener("click", () => settle("missing", false));
  try {
    await loadReference();
    await Promise.all([loadInventory(), loadInbound()]);
  } catch (error) {
    RX.showError("warehouse-error", error);
  }
  poll();
});
