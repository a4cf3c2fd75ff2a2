// Staff console, "Reports" tab: Open311 report types (services), api keys for reporting apps,
// whether reports are readable without a key, and the latest reports with contact details.
// Loaded beside console.js; it shares the signed-in token (same sessionStorage key).
import { Api, ApiError, announce, fmtTime, h } from "/static/common/api.js";

const api = new Api(window.sessionStorage, "hereabouts.console.token");
const $ = (id) => document.getElementById(id);
const form = $("o311-service-form");
const state = { services: [], workers: [], loaded: false };

function fail(err, region = $("o311-error")) {
  announce(region, err instanceof Error ? err.message : String(err), "error");
  if (!(err instanceof ApiError)) console.error(err);
}

const list = (value) =>
  value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

async function load() {
  const me = await api.get("/v1/me");
  const admin = me.role === "admin";
  for (const el of form.elements) el.disabled = !admin;
  $("o311-key-form").hidden = !admin;
  $("o311-public-read").disabled = !admin;
  const tasks = [loadServices(), loadReports()];
  if (admin) tasks.push(loadWorkers(), loadKeys(), loadSettings());
  const results = await Promise.allSettled(tasks);
  for (const r of results) if (r.status === "rejected") fail(r.reason);
  state.loaded = true;
}

async function loadWorkers() {
  state.workers = await api.all("/v1/users?role=field_worker");
  $("o311-team").replaceChildren(
    ...state.workers.map((w) => h("option", { value: w.id }, w.full_name || w.email)),
  );
}

async function loadServices() {
  state.services = await api.get("/v1/open311/services");
  $("o311-service-list").replaceChildren(
    ...state.services.map((s) =>
      h(
        "tr",
        {},
        h("td", {}, s.code),
        h("td", {}, s.name),
        h(
          "td",
          {},
          s.place_categories.length
            ? `${s.place_categories.join(", ")} within ${s.match_within_m} m, else a new spot`
            : "a new spot",
        ),
        h("td", {}, s.active ? "yes" : "no"),
        h("td", {}, h("button", { type: "button", class: "secondary", onclick: () => edit(s) }, "Edit")),
      ),
    ),
  );
}

function edit(s) {
  form.code.value = s.code;
  form.code.readOnly = true;
  form.name.value = s.name;
  form.description.value = s.description;
  form.group.value = s.group;
  form.keywords.value = s.keywords.join(", ");
  form.place_categories.value = s.place_categories.join(", ");
  form.match_within_m.value = s.match_within_m;
  form.attributes.value = s.attributes.length ? JSON.stringify(s.attributes, null, 1) : "";
  form.task_title.value = s.task.title;
  form.priority.value = s.task.priority;
  form.due_hours.value = s.task.due_in_s ? Math.round(s.task.due_in_s / 3600) : "";
  form.requires_visit.checked = s.task.requires_visit;
  form.active.checked = s.active;
  for (const o of $("o311-team").options) o.selected = s.task.assignee_ids.includes(o.value);
  form.name.focus();
}

function reset() {
  form.reset();
  form.code.readOnly = false;
  $("o311-service-error").textContent = "";
}

async function save(event) {
  event.preventDefault();
  $("o311-service-error").textContent = "";
  let attributes = [];
  try {
    attributes = form.attributes.value.trim() ? JSON.parse(form.attributes.value) : [];
  } catch {
    $("o311-service-error").textContent = "The questions are not valid JSON.";
    return;
  }
  const body = {
    name: form.name.value.trim(),
    description: form.description.value.trim(),
    group: form.group.value.trim(),
    keywords: list(form.keywords.value),
    place_categories: list(form.place_categories.value),
    match_within_m: Number(form.match_within_m.value || 50),
    attributes,
    task: {
      title: form.task_title.value.trim(),
      priority: form.priority.value,
      due_in_s: form.due_hours.value ? Number(form.due_hours.value) * 3600 : null,
      requires_visit: form.requires_visit.checked,
      assignee_ids: [...$("o311-team").selectedOptions].map((o) => o.value),
    },
    active: form.active.checked,
  };
  try {
    if (form.code.readOnly) {
      await api.patch(`/v1/open311/services/${encodeURIComponent(form.code.value)}`, body);
    } else {
      await api.post("/v1/open311/services", { code: form.code.value.trim(), ...body });
    }
    reset();
    await loadServices();
  } catch (err) {
    fail(err, $("o311-service-error"));
  }
}

async function loadKeys() {
  const keys = await api.get("/v1/open311/keys");
  $("o311-key-list").replaceChildren(
    ...keys.map((k) =>
      h(
        "tr",
        {},
        h("td", {}, k.label),
        h("td", {}, k.rate_per_minute),
        h("td", {}, fmtTime(k.created_at)),
        h(
          "td",
          {},
          k.revoked_at
            ? `revoked ${fmtTime(k.revoked_at)}`
            : h("button", { type: "button", class: "secondary", onclick: () => revoke(k) }, "Revoke"),
        ),
      ),
    ),
  );
}

async function issueKey(event) {
  event.preventDefault();
  const f = event.target;
  const body = { label: f.label.value.trim() };
  if (f.rate_per_minute.value) body.rate_per_minute = Number(f.rate_per_minute.value);
  try {
    const created = await api.post("/v1/open311/keys", body);
    f.reset();
    announce($("o311-new-key"), `api_key for ${created.label} (shown once): ${created.key}`, "ok");
    await loadKeys();
  } catch (err) {
    fail(err);
  }
}

async function revoke(key) {
  if (!window.confirm(`Revoke the key of ${key.label}? Its app can no longer post reports.`)) return;
  try {
    await api.delete(`/v1/open311/keys/${key.id}`);
    await loadKeys();
  } catch (err) {
    fail(err);
  }
}

async function loadSettings() {
  const s = await api.get("/v1/open311/settings");
  $("o311-public-read").checked = s.public_read;
  $("o311-endpoint").textContent =
    `Endpoint for reporting apps: ${s.endpoint} · jurisdiction_id: ${s.jurisdiction_id}`;
}

async function setPublicRead(event) {
  try {
    await api.put("/v1/open311/settings", { public_read: event.target.checked });
  } catch (err) {
    event.target.checked = !event.target.checked;
    fail(err);
  }
}

async function loadReports() {
  const reports = await api.get("/v1/open311/reports");
  $("o311-report-list").replaceChildren(
    ...reports.map((r) =>
      h(
        "tr",
        {},
        h("td", {}, fmtTime(r.requested_datetime)),
        h("td", {}, r.service_code),
        h("td", {}, r.duplicate_of ? `${r.status} (duplicate)` : r.status),
        h("td", {}, r.description),
        h(
          "td",
          {},
          [r.first_name, r.last_name].filter(Boolean).join(" ") || "—",
          r.email ? ` · ${r.email}` : "",
          r.phone ? ` · ${r.phone}` : "",
        ),
      ),
    ),
  );
}

form.addEventListener("submit", save);
$("o311-service-reset").addEventListener("click", reset);
$("o311-key-form").addEventListener("submit", issueKey);
$("o311-public-read").addEventListener("change", setPublicRead);
// console.js owns the tabs; this panel loads whenever its tab is chosen (click or keyboard).
$("tab-reports").addEventListener("focus", () => load().catch((err) => fail(err)));
