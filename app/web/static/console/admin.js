// Admin-only sections of the console: people (invite, role, deactivate, reset password, where a
// field worker is now while on shift) and the
// audit log with filters. Kept apart from console.js; console.js calls `startAdmin` after sign-in.
import { ApiError, announce, fmtTime, formLabels, h } from "/static/common/api.js";

const $ = (id) => document.getElementById(id);
const ROLES = [["field_worker", "Field worker"], ["editor", "Editor"], ["admin", "Admin"]];
const roleName = (r) => (ROLES.find(([v]) => v === r) || [r, r])[1];

let api = null;
let me = null;
let status = null;
let people = [];
let auditCursor = null;

export function startAdmin(theApi, theMe, statusRegion) {
  api = theApi;
  me = theMe;
  status = statusRegion;
  $("my-data").onclick = () => downloadData({ id: me.id, full_name: "you" });
  const admin = me.role === "admin";
  $("tab-people").hidden = !admin;
  $("tab-audit").hidden = !admin;
  if (!admin) return;
  loadPeople();
  loadAudit(true);
}

function say(text, kind = "ok") {
  announce(status, text, kind);
}

function problemText(err, form) {
  return err instanceof ApiError ? err.describe(form ? formLabels(form) : null) : err.message;
}

// ---------------------------------------------------------------- people
async function loadPeople() {
  try {
    people = await api.all("/v1/users");
    renderPeople();
    fillActors();
  } catch (err) {
    say(problemText(err), "error");
  }
}

function renderPeople() {
  $("people-list").replaceChildren(
    ...people.map((u) => {
      const self = u.id === me.id;
      const roleId = `role-${u.id}`;
      const select = h("select", { id: roleId, disabled: self || !u.is_active }, ...ROLES.map(([v, name]) => h("option", { value: v, selected: v === u.role }, name)));
      select.addEventListener("change", () => changeRole(u, select));
      return h(
        "tr",
        { dataset: { id: u.id } },
        h("td", {}, h("strong", {}, u.full_name), h("div", { class: "muted small" }, u.email), self ? h("div", { class: "muted small" }, "you") : null),
        h("td", {}, h("label", { for: roleId, class: "sr-only" }, `Role of ${u.full_name}`), select),
        h("td", {}, h("span", { class: `badge ${u.is_active ? "ok" : "err"}` }, u.erased ? "erased" : u.is_active ? "active" : "deactivated"), u.last_login_at ? h("div", { class: "muted small" }, `last sign-in ${fmtTime(u.last_login_at)}`) : null),
        h(
          "td",
          {},
          !self && !u.erased && h("button", { type: "button", class: `small ${u.is_active ? "danger" : "secondary"}`, "aria-label": `${u.is_active ? "Deactivate" : "Reactivate"} ${u.full_name}`, onclick: () => setActive(u, !u.is_active) }, u.is_active ? "Deactivate" : "Reactivate"),
          !self && u.is_active && h("button", { type: "button", class: "small secondary", "aria-label": `Reset the password of ${u.full_name}`, onclick: () => resetPassword(u) }, "Reset password"),
          u.is_active && u.role === "field_worker" && h("button", { type: "button", class: "small secondary", "aria-label": `Where is ${u.full_name} now?`, onclick: () => whereNow(u) }, "Where now?"),
          h("button", { type: "button", class: "small secondary", "aria-label": `Download the data of ${u.full_name}`, onclick: () => downloadData(u) }, "Download data"),
          !self && !u.erased && h("button", { type: "button", class: "small danger", "aria-label": `Erase ${u.full_name}`, onclick: () => erase(u) }, "Erase…"),
        ),
      );
    }),
  );
}

function showSecret(intro, password) {
  // Shown once, in the page (not in the status line that screen readers repeat).
  $("people-result").replaceChildren(
    h("div", { class: "secret card" }, h("p", {}, intro), h("p", {}, h("code", { class: "secret-value" }, password)), h("p", { class: "muted small" }, "It is not shown again. They can sign in with it now.")),
  );
}

async function invite(event) {
  event.preventDefault();
  const form = event.target;
  $("invite-error").textContent = "";
  $("people-result").replaceChildren();
  announce(status, "");
  try {
    const body = { full_name: form.full_name.value.trim(), email: form.email.value.trim(), role: form.role.value };
    const user = await api.post("/v1/users", body);
    form.reset();
    showSecret(`${user.full_name} (${roleName(user.role)}) can sign in as ${user.email} with this temporary password:`, user.temporary_password);
    say(`Invited ${user.full_name}.`);
    await loadPeople();
  } catch (err) {
    $("invite-error").textContent = problemText(err, form);
  }
}

async function changeRole(u, select) {
  $("people-result").replaceChildren();
  const role = select.value;
  if (!window.confirm(`Make ${u.full_name} ${roleName(role).toLowerCase()}? They will be signed out everywhere.`)) {
    select.value = u.role;
    return;
  }
  try {
    const saved = await api.patch(`/v1/users/${u.id}`, { role });
    say(`${saved.full_name} is now ${roleName(saved.role).toLowerCase()}${saved.sessions_ended ? "; their sessions have ended" : ""}.`);
    await loadPeople();
  } catch (err) {
    select.value = u.role;
    say(problemText(err), "error");
  }
}

async function setActive(u, active) {
  $("people-result").replaceChildren();
  if (!active && !window.confirm(`Deactivate ${u.full_name}? They are signed out at once and cannot sign in.`)) return;
  try {
    const saved = await api.patch(`/v1/users/${u.id}`, { is_active: active });
    say(active ? `${saved.full_name} can sign in again.` : `${saved.full_name} is deactivated and signed out.`);
    await loadPeople();
  } catch (err) {
    say(problemText(err), "error");
  }
}

// A field worker's current place, only while they are on shift (docs/tasks.md, "Shifts"):
// places, never coordinates, never their history.
async function whereNow(u) {
  const out = $("people-result");
  out.replaceChildren();
  try {
    const now = await api.get(`/v1/staff/${u.id}/current-place`);
    let text;
    if (!now.on_shift) text = `${u.full_name} is off shift or has paused tracking: their place is not shown.`;
    else if (!now.places.length) text = `${u.full_name} is on shift and not at any place now.`;
    else text = `${u.full_name} is at ${now.places.map((p) => `${p.name} (${p.state})`).join(", ")}, last fix ${fmtTime(now.last_fix_at)}.`;
    out.replaceChildren(h("p", { class: "where-now" }, text));
  } catch (err) {
    say(problemText(err), "error");
  }
}

async function resetPassword(u) {
  $("people-result").replaceChildren();
  if (!window.confirm(`Give ${u.full_name} a new password? Their current one stops working and they are signed out.`)) return;
  try {
    const { temporary_password: password } = await api.post(`/v1/users/${u.id}/password-reset`, undefined);
    showSecret(`New temporary password for ${u.full_name} (${u.email}):`, password);
    say(`${u.full_name}'s password was reset.`);
  } catch (err) {
    say(problemText(err), "error");
  }
}

// ---------------------------------------------------------------- a staff member's data (docs/privacy.md)
export function saveJson(data, filename) {
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
  const link = h("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function downloadData(u) {
  $("people-result").replaceChildren();
  try {
    const data = await api.get(u.id === me.id ? "/v1/users/me/export" : `/v1/users/${u.id}/export`);
    saveJson(data, `hereabouts-staff-${u.id}.json`);
    const photos = `${data.photos.length} photo${data.photos.length === 1 ? "" : "s"}`;
    say(u.id === me.id ? `Downloaded everything held about you (${photos}).` : `Downloaded everything held about ${u.full_name} (${photos}); the download is in the audit log.`);
  } catch (err) {
    say(problemText(err), "error");
  }
}

async function erase(u) {
  $("people-result").replaceChildren();
  const ask = `Erase ${u.full_name}? Their location history, check-ins, inbox, settings and the photos they took are deleted, and their account is anonymised and signed out for good. The tasks they worked on stay, shown as by "Erased staff member". This cannot be undone.`;
  if (!window.confirm(ask)) return;
  try {
    const done = await api.post(`/v1/users/${u.id}/erase`, undefined);
    say(`${u.full_name} was erased: ${done.photos_deleted} photo${done.photos_deleted === 1 ? "" : "s"} deleted, ${done.checkins_aggregated} check-in${done.checkins_aggregated === 1 ? "" : "s"} kept only as counts.`);
    await loadPeople();
  } catch (err) {
    say(problemText(err), "error");
  }
}

// ---------------------------------------------------------------- audit log
function fillActors() {
  const sel = $("audit-actor");
  const current = sel.value;
  sel.replaceChildren(h("option", { value: "" }, "Anyone"), ...people.map((u) => h("option", { value: u.id }, u.full_name)));
  sel.value = current;
}

function describeDetails(details) {
  return Object.entries(details || {})
    .map(([k, v]) => `${k.replace(/_/g, " ")}: ${Array.isArray(v) ? v.join(", ") : typeof v === "object" && v !== null ? JSON.stringify(v) : v}`)
    .join(" · ");
}

async function loadAudit(fresh) {
  const form = $("audit-filters");
  const params = new URLSearchParams({ limit: "50" });
  if (form.entity_type.value) params.set("entity_type", form.entity_type.value);
  if (form.actor_id.value) params.set("actor_id", form.actor_id.value);
  if (form.since.value) params.set("since", new Date(`${form.since.value}T00:00`).toISOString());
  if (!fresh && auditCursor) params.set("cursor", auditCursor);
  try {
    const page = await api.get(`/v1/audit?${params}`);
    const rows = page.items.map((e) =>
      h(
        "tr",
        {},
        h("td", {}, fmtTime(e.at)),
        h("td", {}, e.actor_email || "—"),
        h("td", {}, h("code", {}, e.action)),
        h("td", { class: "small" }, describeDetails(e.details)),
      ),
    );
    if (fresh) $("audit-list").replaceChildren(...rows);
    else $("audit-list").append(...rows);
    if (fresh && !rows.length) $("audit-list").append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "Nothing recorded for these filters.")));
    auditCursor = page.next_cursor;
    $("audit-more").hidden = !auditCursor;
  } catch (err) {
    say(problemText(err, form), "error");
  }
}

$("invite-form").addEventListener("submit", invite);
$("audit-filters").addEventListener("submit", (e) => {
  e.preventDefault();
  announce(status, "");
  loadAudit(true);
});
$("audit-more").addEventListener("click", () => loadAudit(false));
$("tab-audit").addEventListener("click", () => loadAudit(true));
