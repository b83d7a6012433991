// The inspector: search anything, a trail as a timeline and a custody diagram, a batch's history, a
// certificate check by dropping the file, downloads of the evidence, and the alerts.
"use strict";

const $ = (id) => document.getElementById(id);
const ACTION_TEXT = {
  commissioned: "commissioned",
  packed: "packed",
  unpacked: "unpacked",
  shipped: "shipped",
  received: "received",
  rejected: "refused",
  missing: "reported missing",
  reclaimed: "reclaimed",
  decommissioned: "decommissioned",
  recommissioned: "decommissioning undone",
};
let orgs = new Map();
let shown = null; // { kind: "item", path, subject, trail } or { kind: "batch", batch }
let certificateBatch = null;

const orgName = (id) => (orgs.get(id) ? orgs.get(id).name : `organisation ${id}`);

function hideAll() {
  for (const id of ["results", "trail", "batch", "organization", "certificate-check"]) $(id).hidden = true;
}

function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [term, value, mono] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    dl.append(RX.el("dt", { text: term }), RX.el("dd", { class: mono ? "mono" : "", text: String(value) }));
  }
}

function party(p) {
  return p ? p.name + (p.gln ? ` (GLN ${p.gln})` : "") : "";
}

async function search(event) {
  if (event) event.preventDefault();
  RX.showError("search-error", null);
  const q = $("query").value.trim();
  if (!q) return;
  history.replaceState(null, "", "?q=" + encodeURIComponent(q));
  hideAll();
  try {
    if (/^0x[0-9a-fA-F]{64}$/.test(q)) return await showBatch(q.toLowerCase());
    const org = [...orgs.values()].find((o) => o.gln === q);
    if (org) return showOrganization(org);
    try {
      return await showTrail(q);
    } catch (error) {
      if (!(error instanceof RX.Problem) || ![404, 422].includes(error.status)) throw error;
      const found = await others(q);
      if (!found) RX.showError("search-error", error);
    }
  } catch (error) {
    RX.showError("search-error", error);
  }
}

// Not a pack or container: batches by lot, organisations by name.
async function others(q) {
  const [batches] = await Promise.all([RX.api("GET", "/v1/batches", { params: { lot: q } }).catch(() => [])]);
  const needle = q.toLowerCase();
  const named = [...orgs.values()].filter((o) => o.name.toLowerCase().includes(needle));
  if (!batches.length && !named.length) return false;
  if (batches.length === 1 && !named.length) {
    await showBatch(batches[0].batch_id);
    return true;
  }
  if (named.length === 1 && !batches.length) {
    showOrganization(named[0]);
    return true;
  }
  const list = $("result-list");
  list.replaceChildren(
    ...batches.map((b) => RX.el("li", {}, RX.el("button", { type: "button", class: "link", text: `Batch ${b.lot} of ${b.gtin} (${b.status})`, onclick: () => showBatch(b.batch_id) }))),
    ...named.map((o) => RX.el("li", {}, RX.el("button", { type: "button", class: "link", text: `${o.name} (GLN ${o.gln})`, onclick: () => { hideAll(); showOrganization(o); } }))),
  );
  $("results").hidden = false;
  return true;
}

async function showTrail(q) {
  const path = `/v1/provenance/${encodeURIComponent(q)}`;
  const trail = await RX.api("GET", path);
  const s = trail.subject;
  shown = { kind: "item", path, subject: s, trail };
  hideAll();
  $("trail-title").textContent = s.kind === "unit" ? `Pack ${s.gtin} / ${s.serial}` : `Container (SSCC) ${s.sscc}`;
  const b = trail.batch;
  facts($("trail-facts"), [
    ["Status now", trail.state || (trail.steps.length ? trail.steps[trail.steps.length - 1].action : "")],
    ["Batch", b ? `${b.lot}, expiry ${b.expiry}, ${b.status}` : null],
    ["Batch id", b ? b.batch_id : null, true],
    ["Events", String(trail.steps.length)],
    ["Read models at block", trail.evidence ? `${trail.evidence.block_number} (${RX.short(trail.evidence.block_hash, 10, 6)})` : null],
    ["Your view", trail.regulator_view ? "regulator: every party named" : "parties you may not see are shown by their kind"],
  ]);
  const timeline = $("timeline");
  timeline.replaceChildren(
    ...trail.steps.map((step) =>
      RX.el(
        "li",
        { "data-action": step.action },
        RX.el("time", { datetime: new Date(step.timestamp * 1000).toISOString(), text: RX.utc(step.timestamp) + " UTC" }),
        RX.el("strong", { text: " " + (ACTION_TEXT[step.action] || step.action) + (step.reason ? ` (${step.reason})` : "") }),
        " by ",
        party(step.organization),
        step.counterparty ? ` → ${party(step.counterparty)}` : "",
        RX.el("div", { class: "small muted mono" }, `block ${step.block_number} · tx ${RX.short(step.tx_hash, 10, 6)}`, step.epcis_event_id ? ` · EPCIS ${RX.short(step.epcis_event_id, 24, 6)}` : ""),
      ),
    ),
  );
  await drawDiagram(path);
  certificateBatch = b ? b.batch_id : null;
  $("certificate-check").hidden = !certificateBatch;
  $("cert-result").textContent = "";
  $("trail").hidden = false;
  $("trail").focus();
}

// Our own SVG, made by the API (escaped, no script); parsed as XML and adopted into the page.
async function drawDiagram(path) {
  const figure = $("diagram");
  for (const old of figure.querySelectorAll("svg, p.error")) old.remove();
  try {
    const response = await RX.api("GET", `${path}/report.svg`, { raw: true });
    const doc = new DOMParser().parseFromString(await response.text(), "image/svg+xml");
    const svg = document.importNode(doc.documentElement, true);
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    figure.prepend(svg);
  } catch (error) {
    figure.prepend(RX.el("p", { class: "error", text: "The diagram could not be drawn: " + RX.describe(error) }));
  }
}

async function showBatch(batchId) {
  const view = await RX.api("GET", `/v1/provenance/batches/${batchId}`);
  const b = view.batch;
  shown = { kind: "batch", batch: b };
  hideAll();
  $("batch-title").textContent = `Batch ${b.lot} of ${b.gtin}`;
  facts($("batch-facts"), [
    ["Status", b.status],
    ["Expiry", b.expiry],
    ["Batch id", b.batch_id, true],
    ["Manufacturer", orgName(b.manufacturer)],
    ["Sponsor", orgName(b.sponsor)],
    ["Packs", String(view.units_total)],
    ["Certificates", String((view.certificates || []).length)],
  ]);
  $("batch-history").replaceChildren(
    ...(view.history || []).map((h) =>
      RX.el("li", {}, RX.el("time", { text: RX.utc(h.timestamp) + " UTC" }), RX.el("strong", { text: ` ${h.from} → ${h.to}` }), ` by ${h.organization || h.org_id}`),
    ),
  );
  RX.rows(
    document.querySelector("#batch-units tbody"),
    view.units || [],
    (u) => RX.el("tr", {}, RX.el("td", { text: u.name || String(u.org_id) }), RX.el("td", { text: u.status }), RX.el("td", { text: String(u.units) })),
    "No packs you may see.",
  );
  certificateBatch = b.batch_id;
  $("certificate-check").hidden = false;
  $("cert-result").textContent = "";
  $("batch").hidden = false;
  $("batch").focus();
}

async function showOrganization(org) {
  $("org-title").textContent = org.name;
  facts($("org-facts"), [
    ["GLN", org.gln, true],
    ["Roles", org.roles.join(", ").toLowerCase()],
    ["Status", ["none", "active", "suspended", "offboarded"][org.status] || String(org.status)],
    ["Signing keys", org.keys.join(", "), true],
  ]);
  const batches = await RX.api("GET", "/v1/batches", { params: { limit: 1000 } });
  const theirs = batches.filter((b) => b.manufacturer === org.id || b.sponsor === org.id);
  $("org-batches").replaceChildren(
    ...(theirs.length
      ? theirs.map((b) => RX.el("li", {}, RX.el("button", { type: "button", class: "link", text: `${b.lot} of ${b.gtin} (${b.status})`, onclick: () => showBatch(b.batch_id) })))
      : [RX.el("li", { class: "muted", text: "None." })]),
  );
  $("organization").hidden = false;
}

async function checkCertificate(file) {
  const result = $("cert-result");
  if (!file || !certificateBatch) return;
  result.className = "";
  result.textContent = `Checking ${file.name}…`;
  const form = new FormData();
  form.append("file", file);
  try {
    const answer = await RX.api("POST", `/v1/batches/${certificateBatch}/certificates/verify`, { form });
    if (answer.anchored) {
      const c = answer.certificates[0];
      result.className = "verdict-line ok";
      result.textContent = `✓ ${file.name} matches certificate #${c.position} (${c.kind}, “${c.meaning}”), anchored ${RX.utc(c.timestamp)} UTC by ${orgName(c.org_id)}. SHA-256 ${answer.document_sha256}`;
    } else {
      result.className = "verdict-line bad";
      result.textContent = `✕ ${file.name} matches no certificate anchored for this batch. SHA-256 ${answer.document_sha256}`;
    }
  } catch (error) {
    result.className = "verdict-line bad";
    result.textContent = RX.describe(error);
  }
}

async function downloadShown(what) {
  try {
    if (shown && shown.kind === "item") {
      const s = shown.subject;
      const name = s.kind === "unit" ? `pack-${s.gtin}-${s.serial}` : `container-${s.sscc}`;
      if (what === "bundle") await RX.download(`${shown.path}/bundle`, `${name}-bundle.json`);
      else if (what === "pdf" || what === "csv") await RX.download(`${shown.path}/report.${what}`, `${name}.${what}`);
      else if (what === "epcis") {
        const [path, query] = shown.trail.links.epcis.split("?");
        await RX.download(path, `${name}-epcis.json`, Object.fromEntries(new URLSearchParams(query)));
      }
    } else if (shown && shown.kind === "batch") {
      const form = what.replace("batch-", "");
      await RX.download(`/v1/provenance/batches/${shown.batch.batch_id}/report.${form}`, `batch-${shown.batch.lot}.${form}`);
    }
  } catch (error) {
    RX.showError("search-error", error);
  }
}

async function loadAlerts() {
  try {
    const alerts = await RX.api("GET", "/v1/alerts");
    RX.rows(
      document.querySelector("#alerts tbody"),
      alerts,
      (a) =>
        RX.el(
          "tr",
          { "data-code": a.code },
          RX.el("td", { text: RX.utc(a.first_at) }),
          RX.el("td", {}, RX.el("code", { text: a.code })),
          RX.el("td", { class: "mono" }, a.serial ? RX.el("button", { type: "button", class: "link", text: `${a.gtin} / ${a.serial}`, onclick: () => { $("query").value = `(01)${a.gtin}(21)${a.serial}`; search(); } }) : a.subject || ""),
          RX.el("td", { text: String(a.count) }),
          RX.el("td", { text: a.status }),
        ),
      "No alerts.",
    );
  } catch (error) {
    document.querySelector("#alerts tbody").replaceChildren(RX.el("tr", {}, RX.el("td", { colspan: 5, class: "muted", text: RX.describe(error) })));
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  await RX.session();
  orgs = new Map((await RX.api("GET", "/v1/organizations")).map((o) => [o.id, o]));
  $("search-form").addEventListener("submit", search);
  for (const button of document.querySelectorAll("[data-download]")) {
    button.addEventListener("click", () => downloadShown(button.dataset.download));
  }
  const zone = $("dropzone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    checkCertificate(event.dataTransfer.files[0]);
  });
  $("cert-file").addEventListener("change", (event) => checkCertificate(event.target.files[0]));
  loadAlerts();
  const q = new URLSearchParams(location.search).get("q");
  if (q) {
    $("query").value = q;
    search();
  }
});
