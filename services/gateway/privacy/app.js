// The privacy center: signs in (signin.js), then shows what the gateway's API answers for the
// signed-in tenant (api.js, render.js). The token is held in this module only: a reload, a
// sign-out or its expiry forgets it.

import { Api, ApiError } from "./api.js";
import { claimsOf, finishSignIn, loadConfig, startSignIn } from "./signin.js";
import { renderDownloads, renderHoldings, renderReceipt, renderReceipts, renderTenant } from "./render.js";

const $ = (id) => document.getElementById(id);
let api = null;
let expiryTimer = null;
let current = null;

function announce(message) { $("announce").textContent = message; }

function showSignIn(message) {
  api = null;
  current = null;
  clearTimeout(expiryTimer);
  $("center").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  $("signin-message").textContent = message || "";
  document.title = "Sign in · Privacy center · mdmbus";
}

const SIGNED_OUT = {
  yes: "You are signed out.",
  expired: "Your session has expired. Sign in again.",
};

/** Forgets the token and everything shown, by loading the page afresh. */
function signOut(reason = "yes") {
  api = null;
  location.replace(`/privacy/?signed_out=${reason}`);
}

function save(name, blob) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function saveReceipt(receipt) {
  save(`erasure-receipt-${receipt.receipt_id}.json`,
    new Blob([JSON.stringify(receipt, null, 2) + "\n"], { type: "application/json" }));
}

/** Loads and shows everything; #center is aria-busy until all of it is shown. */
async function refresh() {
  $("center").setAttribute("aria-busy", "true");
  try {
    await load();
  } finally {
    $("center").removeAttribute("aria-busy");
  }
}

async function load() {
  const { body: h } = await api.get("/v1/holdings");
  current = h;
  renderTenant(h);
  renderHoldings(h);
  renderDownloads(h);
  const may = new Set(h.caller.routes);
  const alive = h.lifecycle.state !== "purged";
  // The page offers the export to administrators only (an auditor checks that the rules are
  // applied, not the data); the gateway still decides what each role may call.
  $("export").hidden = !may.has("export") || h.caller.role !== "admin" || !alive;
  $("delete").hidden = !may.has("deletion_request") || !alive;
  $("delete-expected").textContent = h.tenant_id;
  $("who-text").textContent = `${h.caller.role} of tenant ${h.tenant_id} (${h.region})`;
  const { body: r } = await api.get("/v1/erasure-receipts");
  renderReceipts(r.receipts, saveReceipt);
  $("signin").hidden = true;
  $("who").hidden = false;
  $("center").hidden = false;
  document.title = `Privacy center · tenant ${h.tenant_id} · mdmbus`;
}

async function exportAll() {
  const button = $("export-button");
  button.disabled = true;
  const total = ["uploads", "relay_pending", "inventory_cache", "device_commands"]
    .flatMap((c) => current.held[c] || []).reduce((n, item) => n + item.count, 0);
  const bar = $("export-progress");
  bar.max = Math.max(total, 1);
  bar.value = 0;
  $("export-progress-box").hidden = false;
  try {
    const blob = await api.exportBlob((records, bytes) => {
      bar.value = Math.min(records, bar.max);
      $("export-progress-text").textContent = `${records} of about ${total} records, ${bytes} bytes`;
    });
    bar.value = bar.max;
    save(`mdmbus-export-${current.tenant_id}.ndjson`, blob);
    announce(`Export downloaded: ${$("export-progress-text").textContent}.`);
  } catch (err) {
    announce(`The export failed: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

async function waitForReceipt(first) {
  let answer = first;
  for (let i = 0; answer.status === 202 && i < 120; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    answer = await api.get(answer.body.location);
  }
  return answer.body;
}

async function deleteAll(event) {
  event.preventDefault();
  if ($("delete-confirm").value.trim() !== current.tenant_id) return;
  $("delete-button").disabled = true;
  announce("Deleting everything held for this tenant…");
  try {
    const receipt = await waitForReceipt(await api.json("POST", "/v1/deletion-request"));
    renderReceipt(receipt);
    $("receipt").hidden = false;
    $("receipt-download").onclick = () => saveReceipt(receipt);
    await refresh();
    announce(receipt.status === "completed" ? "Deleted. The erasure receipt is below." : "The deletion is in progress.");
    $("receipt-title").setAttribute("tabindex", "-1");
    $("receipt-title").focus();
  } catch (err) {
    announce(`The deletion failed: ${err.message}`);
    $("delete-button").disabled = false;
  }
}

function explain(err) {
  if (err instanceof ApiError && err.status === 403 && err.code === "forbidden") {
    return `This sign-in cannot use the privacy center: it is for a tenant's administrators and auditors (the gateway answered: ${err.message}).`;
  }
  if (err instanceof ApiError && err.status === 421) {
    return `Your tenant's data lives in another region: ${err.message}`;
  }
  return `The privacy center could not load: ${err.message}`;
}

async function main() {
  $("signout").addEventListener("click", () => signOut());
  $("export-button").addEventListener("click", exportAll);
  $("delete-form").addEventListener("submit", deleteAll);
  $("delete-confirm").addEventListener("input", (e) => {
    $("delete-button").disabled = !current || e.target.value.trim() !== current.tenant_id;
  });
  let config;
  try {
    config = await loadConfig();
  } catch (err) {
    showSignIn(err.message);
    return;
  }
  $("signin-button").addEventListener("click", () => startSignIn(config));
  let token;
  try {
    token = await finishSignIn(config);
  } catch (err) {
    showSignIn(err.message);
    return;
  }
  if (!token) {
    const reason = new URLSearchParams(location.search).get("signed_out");
    if (reason) history.replaceState(null, "", "/privacy/");
    showSignIn(SIGNED_OUT[reason] || "");
    if (reason) $("signin-button").focus();
    if (location.hash === "#signin") {
      history.replaceState(null, "", "/privacy/");
      await startSignIn(config);
    }
    return;
  }
  api = new Api(token, () => signOut("expired"));
  const exp = claimsOf(token).exp;
  if (exp) {
    expiryTimer = setTimeout(() => signOut("expired"),
      Math.max(0, exp * 1000 - Date.now()));
  }
  try {
    await refresh();
    $("main").focus({ preventScroll: true });
  } catch (err) {
    showSignIn(explain(err));
  }
}

main();
