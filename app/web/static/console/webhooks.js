// Staff console, Webhooks tab (admins): register endpoints, send a test, read the delivery log,
// replay, and a banner for endpoints the circuit breaker disabled. Self-contained: it shares only
// the signed-in token (session storage) and the tab/panel markup with console.js.
import { Api, ApiError, announce, fmtTime, h, isoToLocal, localToIso } from "/static/common/api.js";

const api = new Api(window.sessionStorage, "hereabouts.console.token");
const $ = (id) => document.getElementById(id);
const BASE = "/v1/webhooks/endpoints";
const TYPES = [
  "*", "place.*", "place.entered", "place.exited", "place.dwelled", "place.nearby",
  "place.passed_through", "checkin.created", "task.*", "offer.redeemed", "broadcast.sent",
  "report.created",
];
const state = { endpoints: [], selected: null };

const panel = $("panel-webhooks");
const tab = $("tab-webhooks");
const banner = h("div", { id: "webhooks-banner", class: "card error", role: "alert", hidden: true });
document.querySelector("nav.tabs").before(banner);

function fail(err, region) {
  announce(region, err instanceof Error ? err.message : String(err), "error");
  if (!(err instanceof ApiError)) console.error(err);
}

// ---------------------------------------------------------------- layout
const form = h(
  "form",
  { id: "webhook-form", class: "card", "aria-labelledby": "webhook-form-title" },
  h("h2", { id: "webhook-form-title" }, "New endpoint"),
  h("label", { for: "webhook-url" }, "HTTPS URL"),
  h("input", { id: "webhook-url", name: "url", type: "url", required: true, maxlength: 2048, placeholder: "the receiver's address, starting with https" }),
  h("label", { for: "webhook-description" }, "Description"),
  h("input", { id: "webhook-description", name: "description", maxlength: 200 }),
  h("label", { for: "webhook-types" }, "Events"),
  h("select", { id: "webhook-types", name: "event_types", multiple: true, size: 6, required: true },
    TYPES.map((t) => h("option", { value: t, selected: t === "*" }, t === "*" ? "* (everything)" : t))),
  h("label", { for: "webhook-categories" }, "Only places of these categories (comma-separated, optional)"),
  h("input", { id: "webhook-categories", name: "categories", maxlength: 400 }),
  h("div", { class: "toolbar" }, h("button", { type: "submit" }, "Add endpoint")),
  h("p", { id: "webhook-error", class: "error", role: "alert" }),
  h("div", { id: "webhook-secret-box", hidden: true },
    h("p", {}, "Signing secret — copy it now, it is shown only once:"),
    h("output", { id: "webhook-secret", class: "secret" })),
);
const listCard = h(
  "div",
  { class: "card" },
  h("h2", {}, "Endpoints"),
  h("table", { class: "table" },
    h("caption", { class: "sr-only" }, "Webhook endpoints of the organisation"),
    h("thead", {}, h("tr", {}, ["URL", "Events", "Status", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", { id: "webhook-list" })),
  h("p", { id: "webhook-status", role: "status" }),
  h("section", { id: "webhook-detail", "aria-labelledby": "webhook-detail-title", hidden: true },
    h("h3", { id: "webhook-detail-title" }, "Delivery log"),
    h("table", { class: "table" },
      h("caption", { class: "sr-only" }, "Delivery attempts, newest first"),
      h("thead", {}, h("tr", {}, ["When", "Status", "Code", "Latency", "Message", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", { id: "webhook-attempts" })),
    h("form", { id: "webhook-replay-form", class: "row" },
      h("div", {}, h("label", { for: "replay-since" }, "Replay events from"), h("input", { id: "replay-since", type: "datetime-local", required: true })),
      h("div", {}, h("label", { for: "replay-until" }, "until"), h("input", { id: "replay-until", type: "datetime-local", required: true })),
      h("div", {}, h("button", { type: "submit" }, "Replay range")))),
);
panel.append(form, listCard);

// ---------------------------------------------------------------- data
async function load() {
  try {
    state.endpoints = await api.get(BASE);
  } catch (err) {
    fail(err, $("webhook-status"));
    return;
  }
  renderBanner();
  renderList();
  if (state.selected) await loadLog(state.selected);
}

function renderBanner() {
  const off = state.endpoints.filter((e) => e.status === "disabled");
  banner.replaceChildren(
    ...off.map((e) => h("p", {}, `Webhook endpoint ${e.url} was disabled: ${e.disabled_reason || "no reason given"}. Open the Webhooks tab to enable it again.`)),
  );
  banner.hidden = off.length === 0;
}

function renderList() {
  const rows = state.endpoints.map((e) =>
    h("tr", { dataset: { id: e.id } },
      h("td", {}, e.url, e.description ? h("div", { class: "muted small" }, e.description) : null),
      h("td", {}, e.event_types.join(", ")),
      h("td", {}, h("span", { class: `badge ${e.status}` }, e.status)),
      h("td", { class: "toolbar" },
        h("button", { type: "button", class: "secondary", onclick: () => sendTest(e) }, "Send test"),
        h("button", { type: "button", class: "secondary", onclick: () => loadLog(e.id) }, "Log"),
        e.status === "disabled" ? h("button", { type: "button", onclick: () => enable(e) }, "Enable") : null,
        h("button", { type: "button", class: "secondary", onclick: () => rotate(e) }, "Rotate secret"),
        h("button", { type: "button", class: "danger", onclick: () => remove(e) }, "Delete"))));
  $("webhook-list").replaceChildren(
    ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No endpoints yet."))]),
  );
}

async function loadLog(id) {
  state.selected = id;
  const detail = $("webhook-detail");
  try {
    const attempts = await api.get(`${BASE}/${id}/deliveries?limit=50`);
    $("webhook-attempts").replaceChildren(
      ...attempts.map((a) =>
        h("tr", {},
          h("td", {}, fmtTime(a.attempted_at)),
          h("td", {}, a.status),
          h("td", {}, a.http_status ?? "—"),
          h("td", {}, a.latency_ms === null ? "—" : `${Math.round(a.latency_ms)} ms`),
          h("td", { class: "small" }, a.msg_id, a.error ? h("div", { class: "muted" }, a.error) : null),
          h("td", {}, h("button", { type: "button", class: "secondary", onclick: () => replayOne(id, a.message_id) }, "Replay")))),
    );
    if (!attempts.length) $("webhook-attempts").replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No attempts yet.")));
    const now = new Date();
    if (!$("replay-until").value) $("replay-until").value = isoToLocal(now.toISOString());
    if (!$("replay-since").value) $("replay-since").value = isoToLocal(new Date(now - 3600e3).toISOString());
    detail.hidden = false;
  } catch (err) {
    fail(err, $("webhook-status"));
  }
}

// ---------------------------------------------------------------- actions
async function create(event) {
  event.preventDefault();
  $("webhook-error").textContent = "";
  const categories = form.categories.value.split(",").map((c) => c.trim()).filter(Boolean);
  const body = {
    url: form.url.value.trim(),
    description: form.description.value.trim(),
    event_types: [...form.event_types.selectedOptions].map((o) => o.value),
  };
  if (categories.length) body.categories = categories;
  try {
    const created = await api.post(BASE, body);
    $("webhook-secret").textContent = created.secret;
    $("webhook-secret-box").hidden = false;
    form.url.value = "";
    form.description.value = "";
    announce($("webhook-status"), `Endpoint ${created.url} added.`, "ok");
    await load();
  } catch (err) {
    $("webhook-error").textContent = err.message;
  }
}

async function sendTest(e) {
  try {
    await api.post(`${BASE}/${e.id}/test`);
    announce($("webhook-status"), `Test message queued for ${e.url}.`, "ok");
    setTimeout(() => loadLog(e.id), 1500);
  } catch (err) {
    fail(err, $("webhook-status"));
  }
}

async function replayOne(id, messageId) {
  try {
    const r = await api.post(`${BASE}/${id}/replay`, { message_id: messageId });
    announce($("webhook-status"), `${r.replayed} message queued again (same webhook-id).`, "ok");
    setTimeout(() => loadLog(id), 1500);
  } catch (err) {
    fail(err, $("webhook-status"));
  }
}

async function replayRange(event) {
  event.preventDefault();
  if (!state.selected) return;
  try {
    const r = await api.post(`${BASE}/${state.selected}/replay`, {
      since: localToIso($("replay-since").value),
      until: localToIso($("replay-until").value),
    });
    announce($("webhook-status"), `${r.replayed} message(s) queued again.`, "ok");
  } catch (err) {
    fail(err, $("webhook-status"));
  }
}

async function enable(e) {
  try {
    await api.patch(`${BASE}/${e.id}`, { enabled: true });
    announce($("webhook-status"), `${e.url} enabled again.`, "ok");
    await load();
  } catch (err) {
    fail(err, $("webhook-status"));
  }
}

async function rotate(e) {
  try {
    const r = await api.post(`${BASE}/${e.id}/rotate-secret`);
    $("webhook-secret").textContent = r.secret;
    $("webhook-secret-box").hidden = false;
    announce($("webhook-status"), `New secret for ${e.url}; the old one stays valid until ${fmtTime(r.previous_secret_valid_until)}.`, "ok");
  } catch (err) {
    fail(err, $("webhook-status"));
  }
}

async function remove(e) {
  if (!window.confirm(`Delete the endpoint ${e.url}?`)) return;
  try {
    await api.delete(`${BASE}/${e.id}`);
    if (state.selected === e.id) {
      state.selected = null;
      $("webhook-detail").hidden = true;
    }
    await load();
  } catch (err) {
    fail(err, $("webhook-status"));
  }
}

form.addEventListener("submit", create);
$("webhook-replay-form").addEventListener("submit", replayRange);
tab.addEventListener("click", load);

// ---------------------------------------------------------------- when an admin signs in
async function onWorkspace() {
  if ($("workspace").hidden) {
    tab.hidden = true;
    banner.hidden = true;
    return;
  }
  try {
    const me = await api.get("/v1/me");
    tab.hidden = me.role !== "admin";
    if (me.role === "admin") await load();
  } catch (err) {
    if (!(err instanceof ApiError)) console.error(err);
  }
}
new MutationObserver(onWorkspace).observe($("workspace"), { attributes: true, attributeFilter: ["hidden"] });
if (!$("workspace").hidden) onWorkspace();
