// The pharmacy counter: scan, verdict, dispense / undo, a tote in bulk mode, this session's scans.
"use strict";

const ALERT_TEXT = {
  UNKNOWN_SERIAL: "serial never commissioned: possible falsified pack",
  LOT_MISMATCH: "printed lot differs from the record",
  EXPIRY_MISMATCH: "printed expiry differs from the record",
  ALREADY_DISPENSED: "already dispensed elsewhere",
  SUSPECT: "pack or batch under investigation",
  RECALLED: "batch recalled",
  WRONG_HOLDER: "held by another organisation",
};
const SESSION_KEY = "rxledger.counter.scans";
const GS_PICTURE = "\u241d"; // what Ctrl+] (ASCII 29 on a keyboard wedge) becomes in the field

let current = null; // the last verification answer shown
const tote = [];

const $ = (id) => document.getElementById(id);

function scans() {
  return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "[]");
}

function record(entry) {
  const list = scans();
  list.unshift(entry);
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(list.slice(0, 200)));
  renderSession();
}

function setAction(gtin, serial, action) {
  const list = scans();
  const hit = list.find((s) => s.gtin === gtin && s.serial === serial);
  if (hit) hit.action = action;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(list));
  renderSession();
}

function renderSession() {
  RX.rows(
    document.querySelector("#session-list tbody"),
    scans(),
    (s) =>
      RX.el(
        "tr",
        { class: s.verdict === "ok_to_dispense" ? "ok" : "bad" },
        RX.el("td", { text: new Date(s.at).toLocaleTimeString() }),
        RX.el("td", { class: "mono", text: `${s.gtin || "?"} / ${s.serial || "?"}` }),
        RX.el("td", { text: s.verdict === "ok_to_dispense" ? "OK to dispense" : "Do not dispense" }),
        RX.el("td", { text: s.action || "" }),
      ),
    "Nothing scanned yet.",
  );
}

function fact(dl, term, value, flag) {
  dl.append(RX.el("dt", { text: term }), RX.el("dd", { class: flag || "" }, value));
}

function showVerdict(answer, state) {
  current = answer;
  const box = $("verdict");
  const ok = answer.verdict === "ok_to_dispense";
  const kind = state === "dispensed" ? "done" : ok ? "ok" : "bad";
  box.className = "verdict " + kind;
  box.dataset.verdict = state === "dispensed" ? "dispensed" : answer.verdict;
  $("verdict-word").textContent =
    state === "dispensed" ? "✓ DISPENSED" : ok ? "✓ OK TO DISPENSE" : "✕ DO NOT DISPENSE";

  const dl = $("verdict-facts");
  dl.replaceChildren();
  const pack = answer.pack || {};
  fact(dl, "Product (GTIN)", pack.gtin || "");
  fact(dl, "Serial", pack.serial || "");
  fact(dl, "Genuine", answer.genuine ? "yes: commissioned on the network" : "NO: not found on the network", answer.genuine ? "" : "bad");
  if (answer.record) {
    fact(dl, "Lot", answer.record.lot + (answer.lot_matches === false ? ` (the pack says ${pack.lot}: mismatch)` : ""), answer.lot_matches === false ? "bad" : "");
    fact(dl, "Expiry", answer.record.expiry + (answer.expired ? " (EXPIRED)" : "") + (answer.expiry_matches === false ? ` (the pack says ${pack.expiry}: mismatch)` : ""), answer.expired || answer.expiry_matches === false ? "bad" : "");
    fact(dl, "Batch status", answer.batch_status, answer.batch_status === "released" ? "" : "bad");
    fact(dl, "Pack status", answer.pack_status + (answer.suspect && answer.suspect !== "not_suspect" ? `, under investigation (${answer.suspect})` : ""));
    if (answer.holder) fact(dl, "Held by", answer.holder.name + (answer.held_by_you ? " (you)" : ""));
  }
  const reasons = $("verdict-reasons");
  reasons.replaceChildren();
  if (answer.reasons && answer.reasons.length) {
    reasons.append(RX.el("h3", { text: "Why" }), RX.el("ul", { class: "reasons" }, answer.reasons.map((r) => RX.el("li", { text: r }))));
  }
  if (answer.alerts && answer.alerts.length) {
    reasons.append(
      RX.el("h3", { text: "Alerts raised to the sponsor and the regulator" }),
      RX.el("ul", { class: "alerts" }, answer.alerts.map((code) => RX.el("li", {}, RX.el("code", { text: code }), " ", ALERT_TEXT[code] || ""))),
    );
  }
  const mine = (answer.reasons || []).some((r) => r.includes("dispensed) by your organisation"));
  $("dispense-button").disabled = !(ok && state !== "dispensed");
  $("undo-button").disabled = !(state === "dispensed" || (answer.pack_status === "dispensed" && mine));
  box.hidden = false;
}

async function verify(code) {
  RX.showError("scan-error", null);
  try {
    const answer = await RX.api("POST", "/v1/verify", { json: { code } });
    showVerdict(answer);
    record({ at: Date.now(), gtin: answer.pack.gtin, serial: answer.pack.serial, verdict: answer.verdict, action: "" });
    $("verdict").focus();
  } catch (error) {
    $("verdict").hidden = true;
    RX.showError("scan-error", error);
  }
}

async function dispense() {
  if (!current) return;
  const { gtin, serial } = current.pack;
  $("dispense-button").disabled = true;
  try {
    await RX.api("POST", "/v1/dispense", { json: { units: [{ gtin, serial }] } });
    showVerdict(current, "dispensed");
    setAction(gtin, serial, "dispensed");
    RX.toast(`Dispensed ${gtin} / ${serial}`);
  } catch (error) {
    RX.showError("scan-error", error);
    $("dispense-button").disabled = false;
  }
}

async function undo() {
  if (!current) return;
  const { gtin, serial } = current.pack;
  try {
    await RX.api("POST", "/v1/undo", { json: { units: [{ gtin, serial }] } });
    setAction(gtin, serial, "dispense undone");
    RX.toast(`Undone: ${gtin} / ${serial} is back in stock`);
    await verify(`(01)${gtin}(21)${serial}`);
  } catch (error) {
    RX.showError("scan-error", error);
  }
}

function renderTote() {
  $("tote-count").textContent = String(tote.length);
  $("tote-list").replaceChildren(...tote.map((code) => RX.el("li", { class: "mono", text: code })));
}

async function verifyTote() {
  if (!tote.length) return;
  RX.showError("scan-error", null);
  try {
    const answer = await RX.api("POST", "/v1/verify/bulk", { json: { packs: tote.map((code) => ({ code })) } });
    const table = $("tote-results");
    RX.rows(table.querySelector("tbody"), answer.results, (r) =>
      RX.el(
        "tr",
        { class: r.verdict === "ok_to_dispense" ? "ok" : "bad" },
        RX.el("td", { class: "mono", text: `${r.pack.gtin} / ${r.pack.serial}` }),
        RX.el("td", { text: r.verdict === "ok_to_dispense" ? "✓ OK" : "✕ do not dispense" }),
        RX.el("td", { text: (r.reasons || []).join("; ") + (r.alerts && r.alerts.length ? ` [${r.alerts.join(", ")}]` : "") }),
      ),
    );
    table.hidden = false;
    $("tote-summary").textContent = `${answer.ok_to_dispense} OK to dispense, ${answer.do_not_dispense} not.`;
    const good = answer.results.filter((r) => r.verdict === "ok_to_dispense");
    $("tote-dispense").disabled = !good.length;
    $("tote-dispense").onclick = () => dispenseTote(good);
    for (const r of answer.results) record({ at: Date.now(), gtin: r.pack.gtin, serial: r.pack.serial, verdict: r.verdict, action: "" });
  } catch (error) {
    RX.showError("scan-error", error);
  }
}

async function dispenseTote(good) {
  $("tote-dispense").disabled = true;
  try {
    await RX.api("POST", "/v1/dispense", { json: { units: good.map((r) => ({ gtin: r.pack.gtin, serial: r.pack.serial })) } });
    for (const r of good) setAction(r.pack.gtin, r.pack.serial, "dispensed");
    $("tote-summary").textContent = `Dispensed ${good.length} pack(s).`;
    tote.length = 0;
    renderTote();
  } catch (error) {
    RX.showError("scan-error", error);
    $("tote-dispense").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  await RX.session();
  const input = $("scan");
  input.focus();
  renderSession();
  input.addEventListener("keydown", (event) => {
    // a keyboard wedge types ASCII 29 as Ctrl+]; browsers insert nothing for it
    if (event.ctrlKey && (event.key === "]" || event.code === "BracketRight")) {
      event.preventDefault();
      input.setRangeText(GS_PICTURE, input.selectionStart, input.selectionEnd, "end");
    }
  });
  $("bulk-mode").addEventListener("change", (event) => {
    $("tote").hidden = !event.target.checked;
    $("verify-button").textContent = event.target.checked ? "Add to tote" : "Verify";
    input.focus();
  });
  $("scan-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const code = input.value.replace(/\x1d/g, GS_PICTURE).trim();
    if (!code) return;
    input.value = "";
    if ($("bulk-mode").checked) {
      tote.push(code);
      renderTote();
    } else {
      verify(code);
    }
    input.focus();
  });
  $("dispense-button").addEventListener("click", dispense);
  $("undo-button").addEventListener("click", undo);
  $("tote-verify").addEventListener("click", verifyTote);
  $("tote-clear").addEventListener("click", () => {
    tote.length = 0;
    renderTote();
    $("tote-results").hidden = true;
    $("tote-summary").textContent = "";
  });
  $("session-clear").addEventListener("click", () => {
    sessionStorage.removeItem(SESSION_KEY);
    renderSession();
  });
});
