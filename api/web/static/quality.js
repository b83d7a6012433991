// Quality: batches and their certificates, the e-signed release / reject / recall, the recall dashboard.
"use strict";

const $ = (id) => document.getElementById(id);
const DEFAULT_MEANING = { release: "released for sale", reject: "rejected", recall: "recalled" };
const ALLOWED_FROM = { release: ["quarantine"], reject: ["quarantine"], recall: ["released", "suspended"] };
let me = null;
let orgs = new Map();
let current = null;
let pendingAction = null;

const yymmdd = (n) => {
  const s = String(n).padStart(6, "0");
  return `20${s.slice(0, 2)}-${s.slice(2, 4)}-${s.slice(4, 6)}`;
};
const may = (permission) => me.permissions.includes(permission);

async function loadBatches() {
  const status = $("status-filter").value;
  const list = await RX.api("GET", "/v1/batches", { params: status ? { status } : {} });
  RX.rows(
    document.querySelector("#batches tbody"),
    list,
    (b) =>
      RX.el(
        "tr",
        {},
        RX.el("td", { text: b.lot }),
        RX.el("td", { class: "mono", text: b.gtin }),
        RX.el("td", { text: yymmdd(b.expiry) }),
        RX.el("td", {}, RX.el("span", { class: `status ${b.status}`, text: b.status })),
        RX.el("td", { text: orgs.get(b.manufacturer) ? orgs.get(b.manufacturer).name : String(b.manufacturer) }),
        RX.el("td", {}, RX.el("button", { type: "button", class: "small", text: "Open", "aria-label": `open batch ${b.lot}`, onclick: () => openBatch(b.batch_id) })),
      ),
    "No batches.",
  );
}

async function openBatch(batchId) {
  RX.showError("batch-error", null);
  const b = await RX.api("GET", `/v1/batches/${batchId}`);
  current = b;
  $("batch-title").textContent = `Batch ${b.lot} of ${b.gtin}`;
  const status = $("batch-status");
  status.className = `status ${b.status}`;
  status.textContent = b.status;
  $("batch-suspect").textContent = b.suspect ? "under investigation (suspect)" : "";
  const dl = $("batch-facts");
  dl.replaceChildren();
  const facts = [
    ["Batch id", b.batch_id],
    ["Expiry", yymmdd(b.expiry)],
    ["Site GLN", b.site_gln],
    ["Manufacturer", orgs.get(b.manufacturer) ? orgs.get(b.manufacturer).name : b.manufacturer],
    ["Sponsor", orgs.get(b.sponsor) ? orgs.get(b.sponsor).name : b.sponsor],
  ];
  for (const [term, value] of facts) dl.append(RX.el("dt", { text: term }), RX.el("dd", { class: term === "Batch id" ? "mono" : "", text: String(value) }));
  for (const button of document.querySelectorAll("#decisions button")) {
    const action = button.dataset.action;
    button.disabled = !may("batches.decide") || !ALLOWED_FROM[action].includes(b.status);
    button.title = may("batches.decide") ? "" : "a qualified person of the sponsor signs decisions";
  }
  RX.rows(document.querySelector("#history tbody"), b.history, (h) =>
    RX.el(
      "tr",
      {},
      RX.el("td", { text: RX.utc(h.timestamp) }),
      RX.el("td", { text: `${h.from_status} → ${h.to_status}` }),
      RX.el("td", { text: orgs.get(h.org_id) ? orgs.get(h.org_id).name : String(h.org_id) }),
      RX.el("td", { text: h.signature ? `${h.signature.printed_name}: “${h.signature.meaning}” at ${h.signature.signed_at}` : /^0x0*$/.test(h.reason_hash) ? "" : RX.short(h.reason_hash) }),
    ),
  "No status change yet.");
  RX.rows(document.querySelector("#certificates tbody"), b.certificates, (c) =>
    RX.el(
      "tr",
      {},
      RX.el("td", { text: String(c.position) }),
      RX.el("td", { text: c.kind }),
      RX.el("td", { text: c.meaning }),
      RX.el("td", { text: `${RX.utc(c.timestamp)} by ${orgs.get(c.org_id) ? orgs.get(c.org_id).name : c.org_id}` }),
      RX.el("td", { class: "mono", title: c.document_hash, text: RX.short(c.document_hash, 10, 6) }),
      RX.el("td", {}, c.document_available && may("documents.download")
        ? RX.el("button", { type: "button", class: "small", text: "Download", onclick: () => RX.download(`/v1/documents/${c.document_hash}`, `certificate-${c.position}`) })
        : "not stored here"),
    ),
  "No certificate anchored.");
  $("certificate-form").hidden = !may("certificates.anchor");
  $("batch").hidden = false;
  $("batch").focus();
}

async function uploadCertificate(event) {
  event.preventDefault();
  RX.showError("batch-error", null);
  const file = $("certificate-file").files[0];
  if (!file) return RX.showError("batch-error", new Error("file: choose the certificate"));
  const form = new FormData();
  form.append("file", file);
  form.append("kind", $("certificate-kind").value);
  form.append("meaning", $("certificate-meaning").value);
  try {
    await RX.api("POST", `/v1/batches/${current.batch_id}/certificates`, { form });
    RX.toast(`Certificate ${file.name} anchored`);
    $("certificate-file").value = "";
    await openBatch(current.batch_id);
  } catch (error) {
    RX.showError("batch-error", error);
  }
}

function openSignDialog(action) {
  pendingAction = action;
  $("sign-title").textContent = `Electronic signature: ${action} batch ${current.lot}`;
  $("sign-what").textContent = `You are about to ${action} batch ${current.lot} of ${current.gtin} (status now: ${current.status}). The decision is recorded on the ledger with your name, the meaning and the time.`;
  $("sign-meaning").value = DEFAULT_MEANING[action];
  $("sign-reason").value = "";
  $("sign-username").value = me.user.username;
  $("sign-credential").value = "";
  $("sign-confirm").checked = false;
  $("sign-qp").hidden = action !== "release";
  $("sign-qp-file").value = "";
  $("sign-confirm-label").textContent = `I confirm that I ${action} this batch; my electronic signature is the legally binding equivalent of my handwritten signature.`;
  $("sign-error").textContent = "";
  $("sign-dialog").showModal();
  $("sign-meaning").focus();
}

async function sign(event) {
  event.preventDefault();
  const error = $("sign-error");
  error.textContent = "";
  if (!$("sign-confirm").checked) {
    error.textContent = "confirmation: tick the box to confirm the decision";
    return;
  }
  if (!$("sign-credential").value) {
    error.textContent = "signature.credential: re-enter your signing credential";
    return;
  }
  const body = {
    meaning: $("sign-meaning").value,
    reason: $("sign-reason").value,
    signature: { username: $("sign-username").value, credential: $("sign-credential").value },
  };
  $("sign-submit").disabled = true;
  try {
    const qp = $("sign-qp-file").files[0];
    if (pendingAction === "release" && qp) {
      const form = new FormData();
      form.append("file", qp);
      const stored = await RX.api("POST", "/v1/documents", { form });
      body.qp_certificate_sha256 = stored.document_sha256;
    }
    await RX.api("POST", `/v1/batches/${current.batch_id}/${pendingAction}`, { json: body });
    $("sign-credential").value = "";
    $("sign-dialog").close();
    RX.toast(`Batch ${current.lot}: ${pendingAction} signed and recorded`);
    await Promise.all([openBatch(current.batch_id), loadBatches(), loadRecalls()]);
  } catch (problem) {
    error.textContent = RX.describe(problem);
  } finally {
    $("sign-submit").disabled = false;
  }
}

async function loadRecalls() {
  const recalled = await RX.api("GET", "/v1/batches", { params: { status: "recalled" } });
  const box = $("recalls");
  box.replaceChildren();
  if (!recalled.length) {
    box.append(RX.el("p", { class: "muted", text: "No recalled batch." }));
    return;
  }
  for (const b of recalled) {
    let view;
    try {
      view = await RX.api("GET", `/v1/recalls/${b.batch_id}`);
    } catch {
      continue; // a batch this organisation does not follow
    }
    const outstanding = view.holders.filter((h) => h.status === "active" || h.status === "in_transit");
    box.append(
      RX.el(
        "article",
        { class: "recall", "data-batch": b.batch_id },
        RX.el("h3", { text: `Lot ${view.lot} (${view.gtin}), recalled ${RX.utc(view.recalled_at)} UTC` }),
        RX.el(
          "p",
          {},
          `Still out there: ${view.outstanding} · returned: ${view.returned} · destroyed: ${view.destroyed} · dispensed before the recall: ${view.dispensed_before_recall} · after: ${view.dispensed_after_recall}`,
        ),
        RX.el(
          "table",
          {},
          RX.el("thead", {}, RX.el("tr", {}, RX.el("th", { scope: "col", text: "Holder" }), RX.el("th", { scope: "col", text: "Status" }), RX.el("th", { scope: "col", text: "Packs" }))),
          RX.el("tbody", {}, outstanding.concat(view.holders.filter((h) => !outstanding.includes(h))).map((h) =>
            RX.el("tr", {}, RX.el("td", { text: h.name || String(h.org_id) }), RX.el("td", { text: h.status }), RX.el("td", { text: String(h.units) })),
          )),
        ),
      ),
    );
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  me = await RX.session();
  orgs = new Map((await RX.api("GET", "/v1/organizations")).map((o) => [o.id, o]));
  $("batch-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadBatches();
  });
  $("certificate-form").addEventListener("submit", uploadCertificate);
  for (const button of document.querySelectorAll("#decisions button")) {
    button.addEventListener("click", () => openSignDialog(button.dataset.action));
  }
  $("sign-form").addEventListener("submit", sign);
  $("sign-cancel").addEventListener("click", () => $("sign-dialog").close());
  try {
    await Promise.all([loadBatches(), loadRecalls()]);
  } catch (error) {
    RX.showError("batch-error", error);
  }
});
