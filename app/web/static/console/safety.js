// Staff console, Alerts tab (lone working, docs/tasks.md): open alerts with the worker's last
// known place and time, and "Acknowledge"; a banner over every tab while one is open; for
// admins the on-call list and the visit length of each place category. Self-contained: it
// shares only the signed-in token (session storage) and the tab/panel markup with console.js.
import { Api, ApiError, announce, fmtTime, h } from "/static/common/api.js";

const api = new Api(window.sessionStorage, "hereabouts.console.token");
const $ = (id) => document.getElementById(id);
const POLL_MS = 10000;
const state = { me: null, timer: null, staff: [] };

const panel = $("panel-alerts");
const tab = $("tab-alerts");
const banner = h("div", { id: "alerts-banner", class: "card error", role: "alert", hidden: true });
document.querySelector("nav.tabs").before(banner);

function fail(err, region) {
  announce(region, err instanceof Error ? err.message : String(err), "error");
  if (!(err instanceof ApiError)) console.error(err);
}

// ---------------------------------------------------------------- layout
const alertsCard = h(
  "div",
  { class: "card" },
  h("h2", {}, "Open alerts"),
  h("p", { class: "muted small" }, "A field worker asked for help, or ran over a visit and did not answer “Are you OK?”. Alerts are re-sent, to more people each time, until someone acknowledges them."),
  h("table", { class: "table" },
    h("caption", { class: "sr-only" }, "Unacknowledged alerts, newest first"),
    h("thead", {}, h("tr", {}, ["Who", "What", "Last known", "Raised", "Sent", ""].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", { id: "alert-list" })),
  h("p", { id: "alert-status", role: "status" }),
);
const onCallForm = h(
  "form",
  { id: "on-call-form", class: "card", "aria-labelledby": "on-call-title", hidden: true },
  h("h2", { id: "on-call-title" }, "On-call list"),
  h("p", { class: "muted small" }, "Rank 1 is called first; each re-send adds the next rank, then the admins. Empty: not on call."),
  h("div", { id: "on-call-rows" }),
  h("div", { class: "toolbar" }, h("button", { type: "submit" }, "Save on-call list")),
  h("p", { id: "on-call-error", class: "error", role: "alert" }),
);
const lengthsForm = h(
  "form",
  { id: "lengths-form", class: "card", "aria-labelledby": "lengths-title", hidden: true },
  h("h2", { id: "lengths-title" }, "Visit length by place category"),
  h("p", { class: "muted small" }, "For tasks without their own visit length."),
  h("ul", { id: "lengths-list", class: "list" }),
  h("label", { for: "length-category" }, "Category"),
  h("input", { id: "length-category", name: "category", required: true, maxlength: 40 }),
  h("label", { for: "length-minutes" }, "Minutes"),
  h("input", { id: "length-minutes", name: "minutes", type: "number", min: 1, max: 1440, required: true }),
  h("div", { class: "toolbar" }, h("button", { type: "submit" }, "Set length")),
  h("p", { id: "lengths-error", class: "error", role: "alert" }),
);
panel.append(alertsCard, h("div", {}, onCallForm, lengthsForm));

// ---------------------------------------------------------------- alerts
function where(a) {
  const place = a.place_name || "unknown place";
  const pos = a.last_lat !== null && a.last_lon !== null ? ` (${a.last_lat.toFixed(5)}, ${a.last_lon.toFixed(5)})` : "";
  return `${place}${pos}, ${a.last_seen_at ? fmtTime(a.last_seen_at) : "time unknown"}`;
}

function alertRow(a) {
  const what = a.kind === "help" ? "I need help" : "Overdue visit";
  return h(
    "tr",
    { dataset: { alert: a.id } },
    h("td", {}, a.worker_name || a.worker_id),
    h("td", {}, what, a.note ? h("div", { class: "muted small" }, a.note) : null),
    h("td", {}, where(a)),
    h("td", {}, fmtTime(a.raised_at)),
    h("td", {}, `${a.sends}×, level ${a.level}`),
    h("td", {}, h("button", { type: "button", class: "danger small", onclick: () => acknowledge(a) }, "Acknowledge")),
  );
}

async function loadAlerts() {
  try {
    const alerts = await api.get("/v1/safety/alerts?open=true");
    $("alert-list").replaceChildren(...alerts.map(alertRow));
    if (!alerts.length) $("alert-list").append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No open alerts.")));
    banner.hidden = alerts.length === 0;
    banner.replaceChildren(
      h("strong", {}, `${alerts.length} open alert${alerts.length === 1 ? "" : "s"}: `),
      alerts.map((a) => `${a.worker_name || "a field worker"} (${a.kind === "help" ? "needs help" : "overdue"}, last known ${where(a)}) `),
      h("button", { type: "button", class: "small", onclick: () => tab.click() }, "Show alerts"),
    );
  } catch (err) {
    fail(err, $("alert-status"));
  }
}

async function acknowledge(a) {
  const note = window.prompt(`Acknowledge the alert about ${a.worker_name || "the worker"}. Note (optional):`, "");
  if (note === null) return;
  try {
    const done = await api.post(`/v1/safety/alerts/${a.id}/acknowledge`, note.trim() ? { note: note.trim() } : {});
    announce($("alert-status"), `Acknowledged at ${fmtTime(done.acknowledged_at)}. The re-sends have stopped.`, "ok");
  } catch (err) {
    fail(err, $("alert-status"));
  }
  await loadAlerts();
}

// ---------------------------------------------------------------- admin: on call, visit lengths
async function loadOnCall() {
  const [users, list] = await Promise.all([api.get("/v1/users?limit=200"), api.get("/v1/safety/on-call")]);
  state.staff = (users.items || users).filter((u) => u.is_active !== false);
  const rank = new Map(list.contacts.map((c) => [c.staff_id, c.rank]));
  $("on-call-rows").replaceChildren(
    ...state.staff.map((u) =>
      h("div", { class: "row" },
        h("label", { for: `on-call-${u.id}` }, `${u.full_name} (${u.role.replace("_", " ")})`),
        h("input", { id: `on-call-${u.id}`, name: u.id, type: "number", min: 1, max: 9, value: rank.get(u.id) ?? "" })),
    ),
  );
}

async function saveOnCall(event) {
  event.preventDefault();
  $("on-call-error").textContent = "";
  const contacts = state.staff
    .map((u) => ({ staff_id: u.id, rank: Number($(`on-call-${u.id}`).value) }))
    .filter((c) => c.rank > 0);
  try {
    await api.put("/v1/safety/on-call", { contacts });
    announce($("alert-status"), "On-call list saved.", "ok");
    await loadOnCall();
  } catch (err) {
    fail(err, $("on-call-error"));
  }
}

async function loadLengths() {
  const rows = await api.get("/v1/safety/visit-lengths");
  $("lengths-list").replaceChildren(
    ...rows.map((r) =>
      h("li", {}, `${r.category}: ${r.expected_duration_min} min `,
        h("button", { type: "button", class: "secondary small", onclick: () => removeLength(r.category) }, "Remove")),
    ),
  );
}

async function saveLength(event) {
  event.preventDefault();
  $("lengths-error").textContent = "";
  const category = lengthsForm.category.value.trim();
  try {
    await api.put(`/v1/safety/visit-lengths/${encodeURIComponent(category)}`, { expected_duration_min: Number(lengthsForm.minutes.value) });
    lengthsForm.reset();
    await loadLengths();
  } catch (err) {
    fail(err, $("lengths-error"));
  }
}

async function removeLength(category) {
  try {
    await api.delete(`/v1/safety/visit-lengths/${encodeURIComponent(category)}`);
    await loadLengths();
  } catch (err) {
    fail(err, $("lengths-error"));
  }
}

onCallForm.addEventListener("submit", saveOnCall);
lengthsForm.addEventListener("submit", saveLength);
tab.addEventListener("click", loadAlerts);

// ---------------------------------------------------------------- when someone signs in
async function onWorkspace() {
  clearInterval(state.timer);
  if ($("workspace").hidden) {
    tab.hidden = true;
    banner.hidden = true;
    return;
  }
  try {
    state.me = await api.get("/v1/me");
    const admin = state.me.role === "admin";
    onCallForm.hidden = !admin;
    lengthsForm.hidden = !admin;
    // field workers see the tab only if they are on call (the list answers 403 otherwise)
    await api.get("/v1/safety/alerts?open=true&limit=1");
    tab.hidden = false;
    await loadAlerts();
    if (admin) await Promise.allSettled([loadOnCall(), loadLengths()]);
    state.timer = setInterval(loadAlerts, POLL_MS);
  } catch (err) {
    tab.hidden = true;
    if (!(err instanceof ApiError)) console.error(err);
  }
}
new MutationObserver(onWorkspace).observe($("workspace"), { attributes: true, attributeFilter: ["hidden"] });
if (!$("workspace").hidden) onWorkspace();
