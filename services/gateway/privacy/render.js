// Renders the API's answers into the page. Values go in as text (never as HTML); every value
// shown carries data-key naming where in the API's answer it comes from, which the browser
// tests compare with the API.

export const CATEGORIES = [
  ["uploads", "Uploads", "kind"],
  ["relay_pending", "Relay records pending for CM", "kind"],
  ["inventory_cache", "Inventory cache", "kind"],
  ["device_commands", "Device commands", "kind"],
  ["dead_letters", "Dead letters (refused records)", "reason"],
];

export const RULES = {
  retention_purge: "kept until the tenant's purge, 90 + 30 days after its subscription ends",
  delete_after_download: "deleted once CM has downloaded and acknowledged it",
  session_expiry: "deleted when the device's session expires",
  inventory_cache_removal: "deleted when the device un-enrolls",
  dead_letter_expiry: "the refused record's keeping time for operators",
  deletion_request: "deleted at the tenant's request",
};

// What ends a row whose deadline is an event, not a date yet.
const UNDATED = {
  retention_purge: "set when the subscription ends",
  delete_after_download: "when CM acknowledges it",
  inventory_cache_removal: "when the device un-enrolls",
  session_expiry: "when the session ends",
};

const STATES = { active: "Active", retention: "Read-only retention", purged: "Purged (deleted)" };

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function formatTime(iso) {
  if (!iso) return "none";
  return new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

export function time(key, iso, none = "none") {
  if (!iso) return el("span", { "data-key": key, "data-value": "", text: none });
  return el("time", { "data-key": key, "data-value": iso, datetime: iso, text: formatTime(iso) });
}

export function count(key, n) {
  return el("span", { "data-key": key, "data-value": String(n), text: String(n) });
}

export function formatAge(seconds) {
  if (seconds === null || seconds === undefined) return "none pending";
  const s = Math.round(seconds);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 172800) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function rule(key, name) {
  if (!name) return el("span", { "data-key": key, "data-value": "", text: "none yet" });
  return el("span", {}, el("code", { "data-key": key, "data-value": name, text: name }),
    el("span", { className: "hint", text: ` (${RULES[name] || "see the design"})` }));
}

function facts(dl, rows) {
  dl.replaceChildren();
  for (const [label, value] of rows) dl.append(el("dt", { text: label }), el("dd", {}, value));
}

function text(key, value) {
  return el("span", { "data-key": key, "data-value": value ?? "", text: value ?? "none" });
}

export function renderTenant(h) {
  const life = h.lifecycle;
  facts(document.getElementById("tenant-facts"), [
    ["Tenant id", text("tenant.tenant_id", h.tenant_id)],
    ["Region", text("tenant.region", h.region)],
    ["Gateway", text("tenant.gateway", h.gateway)],
    ["Lifecycle state", el("span", { "data-key": "tenant.state", "data-value": life.state, text: STATES[life.state] || life.state })],
    ["Onboarded", time("tenant.onboarded_at", life.onboarded_at)],
    ["Subscription ended", time("tenant.subscription_ended_at", life.subscription_ended_at)],
    ["Read-only until", time("tenant.read_only_until", life.read_only_until)],
    ["Purge at", time("tenant.purge_at", life.purge_at)],
    ["Purged at", time("tenant.purged_at", life.purged_at)],
  ]);
  renderTimeline(h);
}

function renderTimeline(h) {
  const life = h.lifecycle;
  const figure = document.getElementById("timeline");
  figure.hidden = !(life.subscription_ended_at && life.read_only_until && life.purge_at);
  if (figure.hidden) return;
  const start = Date.parse(life.subscription_ended_at);
  const ro = Date.parse(life.read_only_until);
  const end = Date.parse(life.purge_at);
  const now = Date.parse(life.purged_at || h.clock);
  const track = document.getElementById("timeline-track");
  const first = el("div", { className: "seg ro" });
  const second = el("div", { className: "seg purge" });
  first.style.width = `${(100 * (ro - start)) / (end - start)}%`;
  second.style.width = `${(100 * (end - ro)) / (end - start)}%`;
  const marker = el("div", { className: "now" });
  marker.style.left = `${Math.min(100, Math.max(0, (100 * (now - start)) / (end - start)))}%`;
  track.replaceChildren(first, second, marker);
  const days = Math.max(0, Math.floor((now - start) / 86400000));
  track.setAttribute("aria-label", `Subscription ended ${formatTime(life.subscription_ended_at)}; read-only until ${formatTime(life.read_only_until)}; purge at ${formatTime(life.purge_at)}; now day ${days} of ${Math.round((end - start) / 86400000)}.`);
  document.getElementById("timeline-legend").replaceChildren(
    el("li", { text: `Ended ${formatTime(life.subscription_ended_at)}` }),
    el("li", { text: `Read-only (90 days) until ${formatTime(life.read_only_until)}` }),
    el("li", { text: `Kept (30 days) until the purge ${formatTime(life.purge_at)}` }),
    el("li", { text: `Now: day ${days}` }));
}

export function renderHoldings(h) {
  const body = document.querySelector("#holdings-table tbody");
  body.replaceChildren();
  for (const [category, label, by] of CATEGORIES) {
    const items = h.held[category] || [];
    if (items.length === 0) {
      body.append(el("tr", { "data-key": `held.${category}.none` },
        el("th", { scope: "row", text: label }), el("td", { text: "nothing held" }),
        el("td", { className: "num" }, count(`held.${category}.total`, 0)), el("td"), el("td"), el("td")));
      continue;
    }
    items.forEach((item, i) => {
      const base = `held.${category}.${item[by]}`;
      body.append(el("tr", {},
        el("th", { scope: "row", text: i === 0 ? label : "" }, i === 0 ? null : el("span", { className: "skip", text: label })),
        el("td", {}, text(`${base}.${by}`, item[by])),
        el("td", { className: "num" }, count(`${base}.count`, item.count)),
        el("td", {}, time(`${base}.oldest`, item.oldest)),
        el("td", {}, time(`${base}.next_deadline`, item.next_deadline, UNDATED[item.rule] || "none")),
        el("td", {}, rule(`${base}.rule`, item.rule))));
    });
  }
}

export function renderDownloads(h) {
  const cm = h.cm_downloads;
  facts(document.getElementById("downloads-facts"), [
    ["Pending for CM", count("cm.pending", cm.pending)],
    ["Oldest pending for", el("span", { "data-key": "cm.oldest_pending_age_s", "data-value": cm.oldest_pending_age_s ?? "", text: formatAge(cm.oldest_pending_age_s) })],
    ["Last acknowledgement", time("cm.last_acknowledged_at", cm.last_acknowledged_at)],
  ]);
}

export function renderReceipt(r) {
  facts(document.getElementById("receipt-facts"), [
    ["Receipt id", text("receipt.receipt_id", r.receipt_id)],
    ["Status", text("receipt.status", r.status)],
    ["Requested", time("receipt.requested_at", r.requested_at)],
    ["Completed", time("receipt.completed_at", r.completed_at)],
  ]);
  const body = document.querySelector("#receipt-table tbody");
  body.replaceChildren(...Object.entries(r.deleted || {}).map(([category, n]) =>
    el("tr", {}, el("th", { scope: "row", text: category }), el("td", { className: "num" }, count(`receipt.deleted.${category}`, n)))));
  const ids = document.getElementById("receipt-ids");
  ids.replaceChildren(...Object.entries(r.record_ids || {}).flatMap(([category, list]) =>
    list.map((id) => el("li", { "data-key": `receipt.record_ids.${category}`, text: `${category}: ${id}` }))));
}

export function renderReceipts(list, onDownload) {
  document.getElementById("receipts-empty").hidden = list.length > 0;
  const ul = document.getElementById("receipts-list");
  ul.replaceChildren(...list.map((r) => {
    const total = Object.values(r.deleted || {}).reduce((a, b) => a + b, 0);
    const button = el("button", { type: "button", text: "Download (JSON)", "aria-label": `Download receipt ${r.receipt_id} as JSON` });
    button.addEventListener("click", () => onDownload(r));
    return el("li", { "data-receipt": r.receipt_id },
      el("span", {}, "Receipt ", text(`receipts.${r.receipt_id}.receipt_id`, r.receipt_id), ", requested ",
        time(`receipts.${r.receipt_id}.requested_at`, r.requested_at), ", ",
        text(`receipts.${r.receipt_id}.status`, r.status), ", ", count(`receipts.${r.receipt_id}.total`, total), " rows deleted "),
      button);
  }));
}
