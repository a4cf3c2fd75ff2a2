// Staff console: places on a map, offers, tasks, live activity and charts.
import { Api, ApiError, announce, fmtTime, formLabels, h, isoToLocal, localToIso } from "/static/common/api.js";
import { barChart, columnChart, percentile } from "/static/console/charts.js";
import { startAdmin } from "/static/console/admin.js";
import { fillActivityPlaces, liveActivity, startActivity } from "/static/console/activity.js";
import { PlacesMap } from "/static/console/map.js";
import { mountGpsSetup } from "/static/common/gps-setup.js";

const api = new Api(window.sessionStorage, "hereabouts.console.token");
const $ = (id) => document.getElementById(id);
const status = $("status");

const state = {
  me: null,
  places: [], // GeoJSON Features
  offers: [],
  tasks: [],
  workers: [],
  deliveries: [],
  stream: null,
  lastEventId: null,
};

function placeName(id) {
  const place = state.places.find((p) => p.id === id);
  return place ? place.properties.name : "unknown place";
}

function fail(err, region = status, form = null, extraLabels = {}) {
  const text = err instanceof ApiError && form ? err.describe(formLabels(form, extraLabels)) : err instanceof Error ? err.message : String(err);
  announce(region, text, "error");
  if (!(err instanceof ApiError)) console.error(err);
}

// ---------------------------------------------------------------- sign in / out
api.onUnauthorized = () => {
  if (state.me) signOut("Your session has ended: sign in again.");
};

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  $("login-error").textContent = "";
  try {
    await api.login(form.email.value.trim(), form.password.value);
    form.password.value = "";
    await start();
  } catch (err) {
    $("login-error").textContent =
      err instanceof ApiError && err.status === 401 ? "Wrong email or password." : err.message;
  }
}

function signOut(message = "Signed out.") {
  api.token = null;
  state.me = null;
  if (state.stream) state.stream.abort();
  $("workspace").hidden = true;
  $("who").hidden = true;
  $("login-view").hidden = false;
  announce(status, message);
  $("login-email").focus();
}

async function start() {
  const me = await api.get("/v1/me");
  if (me.kind !== "staff") throw new Error("This console is for staff accounts.");
  state.me = me;
  $("who-name").textContent = `${me.full_name || me.email} · ${me.role.replace("_", " ")} · ${me.organisation.name}`;
  $("who").hidden = false;
  $("login-view").hidden = true;
  $("workspace").hidden = false;
  $("workspace-title").textContent = `${me.organisation.name}: workspace`;
  $("workspace-title").focus(); // reading starts at the workspace, not the page body
  // Each role sees only the controls it may use: field workers get a read-only console.
  const editor = ["admin", "editor"].includes(me.role);
  document.body.classList.toggle("read-only", !editor);
  for (const el of document.querySelectorAll(".editor-only")) el.hidden = !editor;
  if (editor) placeForm.hidden = true; // the place form opens when a shape is drawn or edited
  $("tab-gps").hidden = me.role !== "field_worker";
  if (me.role === "field_worker") {
    mountGpsSetup(api, $("gps-setup"), { status });
    announce(status, "Field workers use the Hereabouts app for their tasks; this console is read-only for you.");
  } else {
    announce(status, `Signed in as ${me.email}.`, "ok");
  }
  startAdmin(api, me, status);
  placesMap.ready();
  await Promise.allSettled([loadPlaces(), loadWorkers()]);
  await Promise.allSettled([loadOffers(), loadTasks(), loadDeliveries(), startActivity(api, () => state.places, fail)]);
  startStream();
}

// ---------------------------------------------------------------- tabs
const tabs = [...document.querySelectorAll('[role="tab"]')];
function selectTab(tab, focus = true) {
  for (const t of tabs) {
    const selected = t === tab;
    t.setAttribute("aria-selected", String(selected));
    t.tabIndex = selected ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !selected;
  }
  if (focus) tab.focus();
  if (tab.id === "tab-places") placesMap.invalidate();
  if (tab.id === "tab-numbers") drawNumbers();
}
for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (e) => {
    const shown = tabs.filter((t) => !t.hidden); // e.g. Webhooks is for admins only
    const i = shown.indexOf(tab);
    let next = null;
    if (e.key === "ArrowRight") next = shown[(i + 1) % shown.length];
    if (e.key === "ArrowLeft") next = shown[(i - 1 + shown.length) % shown.length];
    if (e.key === "Home") next = shown[0];
    if (e.key === "End") next = shown[shown.length - 1];
    if (next) {
      e.preventDefault();
      selectTab(next);
    }
  });
}

// ---------------------------------------------------------------- places
const placeForm = $("place-form");
const placesMap = new PlacesMap($("map"), {
  tileUrl: document.querySelector('meta[name="hereabouts-tile-url"]').content,
  attribution: document.querySelector('meta[name="hereabouts-tile-attribution"]').content,
  onTilesUnavailable: () => ($("map-note").hidden = false),
  onDraft: (draft) => openPlaceForm(null, draft),
  onIntersect: (text) => announce(status, text, "error"),
  onShapeChanged: (id, shape) => saveShape(id, shape),
  onModeChange: (mode) => {
    $("edit-shapes").setAttribute("aria-pressed", String(mode === "edit"));
    $("drag-shapes").setAttribute("aria-pressed", String(mode === "drag"));
  },
  onSelect: (id) => {
    if (!canEdit()) return; // read-only: clicking a shape does not open a form
    const place = state.places.find((p) => p.id === id);
    if (place) openPlaceForm(place);
  },
});

async function loadPlaces() {
  try {
    // Every page of the FeatureCollection (keyset cursor), up to 10,000 places.
    const features = await api.all("/v1/geofences", 10000, "application/geo+json");
    state.places = features;
    placesMap.show(features);
    renderPlaces();
    fillPlaceSelects();
    fillActivityPlaces(features);
  } catch (err) {
    fail(err);
  }
}

const canEdit = () => Boolean(state.me) && ["admin", "editor"].includes(state.me.role);

function kindOf(place) {
  return place.geometry.type === "Point" ? `circle ${Math.round(place.properties.radius_m)} m` : "area";
}

function renderPlaces() {
  $("place-count").textContent = `(${state.places.length})`;
  const list = $("place-list");
  list.replaceChildren(
    ...state.places.map((p) =>
      h(
        "li",
        { class: "place-item", dataset: { id: p.id } },
        h("div", {}, h("div", { class: "name" }, p.properties.name), h("div", { class: "muted small" }, `${p.properties.category} · ${kindOf(p)}`)),
        h(
          "div",
          {},
          h("button", { type: "button", class: "small secondary", onclick: () => placesMap.focus(p.id), "aria-label": `Show ${p.properties.name} on the map` }, "Show"),
          canEdit() && h("button", { type: "button", class: "small secondary", onclick: () => openPlaceForm(p), "aria-label": `Edit ${p.properties.name}` }, "Edit"),
          canEdit() && h("button", { type: "button", class: "small danger", onclick: () => deletePlace(p), "aria-label": `Delete ${p.properties.name}` }, "Delete"),
        ),
      ),
    ),
  );
  if (!state.places.length) list.append(h("li", { class: "muted" }, "No places yet: draw one on the map or import a file."));
}

function fillPlaceSelects() {
  const options = () => state.places.map((p) => h("option", { value: p.id }, `${p.properties.name} (${p.properties.category})`));
  const offerSel = $("offer-places");
  const selected = new Set([...offerSel.selectedOptions].map((o) => o.value));
  offerSel.replaceChildren(...options());
  for (const o of offerSel.options) o.selected = selected.has(o.value);
  const taskSel = $("task-place");
  const current = taskSel.value;
  taskSel.replaceChildren(...options());
  if (current) taskSel.value = current;
  const cast = $("broadcast-place");
  const c = cast.value;
  cast.replaceChildren(...options());
  if (c) cast.value = c;
  const foot = $("footfall-place");
  const f = foot.value;
  foot.replaceChildren(...options());
  if (f) foot.value = f;
}

let draft = null; // {shape, layer} of a drawn but unsaved place

// ---------------------------------------------------------------- place properties
const DAYS = [["mon", "Monday"], ["tue", "Tuesday"], ["wed", "Wednesday"], ["thu", "Thursday"], ["fri", "Friday"], ["sat", "Saturday"], ["sun", "Sunday"]];
// Sensible starting points per category for a new place (the API's trigger distances, typical
// opening hours); every value can be changed in the form.
const WEEKDAYS_9_5 = { mon: "09:00-17:00", tue: "09:00-17:00", wed: "09:00-17:00", thu: "09:00-17:00", fri: "09:00-17:00" };
const CATEGORY_DEFAULTS = {
  library: { trigger: 50, dwell_min: 10, hours: { ...WEEKDAYS_9_5, sat: "10:00-16:00" } },
  leisure_centre: { trigger: 75, dwell_min: 15, hours: Object.fromEntries(DAYS.map(([d]) => [d, "06:30-22:00"])) },
  park: { trigger: 100, dwell_min: 5, hours: null },
  museum: { trigger: 50, dwell_min: 20, hours: { tue: "10:00-17:00", wed: "10:00-17:00", thu: "10:00-17:00", fri: "10:00-17:00", sat: "10:00-17:00", sun: "11:00-16:00" } },
  council_office: { trigger: 50, dwell_min: 5, hours: WEEKDAYS_9_5 },
  depot: { trigger: 30, dwell_min: 5, hours: { mon: "07:00-16:00", tue: "07:00-16:00", wed: "07:00-16:00", thu: "07:00-16:00", fri: "07:00-16:00" } },
  school: { trigger: 50, dwell_min: 5, hours: { mon: "08:00-16:00", tue: "08:00-16:00", wed: "08:00-16:00", thu: "08:00-16:00", fri: "08:00-16:00" } },
};
const FALLBACK_DEFAULTS = { trigger: 50, dwell_min: 5, hours: null };
const PLACE_LABELS = { ...Object.fromEntries(DAYS), dwell_s: "Dwell time", opening_hours: "Opening hours", weekly: "Opening hours" };

function dayInputs() {
  const box = placeForm.querySelector(".days");
  if (box.children.length) return;
  box.append(...DAYS.map(([d, name]) => h("div", { class: "day" }, h("label", { for: `place-day-${d}` }, name), h("input", { id: `place-day-${d}`, name: d, placeholder: "closed", "aria-describedby": "place-hours-help" }))));
}

function setHours(hours) {
  dayInputs();
  placeForm.always_open.checked = !hours;
  const weekly = (hours && hours.weekly) || {};
  for (const [d] of DAYS) {
    const v = weekly[d];
    placeForm[d].value = typeof v === "string" ? v : (v || []).map(([a, b]) => `${a}-${b}`).join(", ");
  }
  placeForm.time_zone.value = (hours && hours.time_zone) || placeForm.time_zone.value || "Europe/London";
  placeForm.closed_dates.value = ((hours && hours.closed_dates) || []).join(", ");
  $("place-hours-fields").hidden = !hours;
}

function categoryDefaults(category) {
  return CATEGORY_DEFAULTS[category] || FALLBACK_DEFAULTS;
}

// A new place takes its category's defaults; an edited place keeps its own values.
function applyCategoryDefaults() {
  const d = categoryDefaults(placeForm.category.value.trim());
  placeForm.trigger_distance_m.placeholder = `${d.trigger} (default)`;
  if (placeForm.id.value) return;
  placeForm.dwell_min.value = d.dwell_min;
  setHours(d.hours ? { weekly: d.hours, time_zone: placeForm.time_zone.value || "Europe/London" } : null);
}

// "09:00-12:30, 13:30-17:00" → [["09:00","12:30"], ["13:30","17:00"]], or an Error naming the day.
function parseRanges(text, dayName) {
  const out = [];
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const m = part.match(/^(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})$/);
    if (!m) throw new Error(`${dayName}: “${part}” is not a time range like 09:00-17:00.`);
    const pad = (x) => x.padStart(2, "0");
    out.push([`${pad(m[1])}:${m[2]}`, `${pad(m[3])}:${m[4]}`]);
  }
  return out;
}

function openingHoursOf(form) {
  if (form.always_open.checked) return null;
  const weekly = {};
  for (const [d, name] of DAYS) {
    const ranges = parseRanges(form[d].value, name);
    if (ranges.length) weekly[d] = ranges;
  }
  const closed = form.closed_dates.value.split(",").map((x) => x.trim()).filter(Boolean);
  for (const c of closed) {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(c)) throw new Error(`Closed on: “${c}” is not a date like 2026-12-25.`);
  }
  return { time_zone: form.time_zone.value.trim(), weekly, closed_dates: closed };
}

function openPlaceForm(place, newDraft = null) {
  if (draft && newDraft !== draft) placesMap.discard(draft);
  draft = newDraft;
  dayInputs();
  placeForm.reset(); // nothing of the last place edited carries over (its category included)
  placeForm.hidden = false;
  $("place-error").textContent = "";
  placeForm.id.value = place ? place.id : "";
  $("place-form-title").textContent = place ? `Edit ${place.properties.name}` : `New place (${newDraft.kind})`;
  const props = place ? place.properties : {};
  placeForm.name.value = props.name || "";
  placeForm.category.value = props.category || "library";
  const radius = place ? props.radius_m : newDraft && newDraft.radius_m;
  placeForm.radius_m.value = radius ? Math.round(radius) : "";
  placeForm.radius_m.disabled = !radius;
  placeForm.trigger_distance_m.value = place ? props.trigger_distance_m ?? "" : "";
  placeForm.tags.value = (props.tags || []).join(", ");
  if (place) {
    placeForm.dwell_min.value = Math.round((props.dwell_s ?? 300) / 60);
    setHours(props.opening_hours);
    placeForm.active_from.value = isoToLocal(props.active_from);
    placeForm.active_until.value = isoToLocal(props.active_until);
  }
  applyCategoryDefaults();
  placeForm.name.focus();
}

function closePlaceForm() {
  if (draft) placesMap.discard(draft);
  draft = null;
  placeForm.hidden = true;
  placeForm.reset();
}

function placeProperties(form, isNew) {
  const props = {
    name: form.name.value.trim(),
    category: form.category.value.trim(),
    tags: form.tags.value.split(",").map((t) => t.trim()).filter(Boolean),
    dwell_s: Math.round(Number(form.dwell_min.value || 0) * 60),
    opening_hours: openingHoursOf(form),
    active_from: localToIso(form.active_from.value),
    active_until: localToIso(form.active_until.value),
  };
  if (form.trigger_distance_m.value !== "") props.trigger_distance_m = Number(form.trigger_distance_m.value);
  else if (!isNew) props.trigger_distance_m = null;
  if (!form.radius_m.disabled && form.radius_m.value) props.radius_m = Number(form.radius_m.value);
  return props;
}

async function savePlace(event) {
  event.preventDefault();
  const id = placeForm.id.value;
  try {
    if (id) {
      await api.patch(`/v1/geofences/${id}`, { properties: placeProperties(placeForm, false) });
      announce(status, "Place saved.", "ok");
    } else {
      if (!draft) throw new Error("Draw a shape on the map first.");
      const properties = placeProperties(placeForm, true);
      if (draft.radius_m) properties.radius_m = Number(placeForm.radius_m.value) || draft.radius_m;
      const created = await api.post("/v1/geofences", { type: "Feature", geometry: draft.geometry, properties });
      announce(status, `Place “${created.properties.name}” created.`, "ok");
    }
    closePlaceForm();
    await loadPlaces();
  } catch (err) {
    fail(err, $("place-error"), placeForm, PLACE_LABELS);
  }
}

async function saveShape(id, shape) {
  const place = state.places.find((p) => p.id === id);
  try {
    const body = { geometry: shape.geometry };
    if (shape.radius_m) body.properties = { radius_m: shape.radius_m };
    await api.patch(`/v1/geofences/${id}`, body);
    announce(status, `New shape of “${place ? place.properties.name : "place"}” saved.`, "ok");
  } catch (err) {
    fail(err);
  }
  await loadPlaces();
}

async function deletePlace(place) {
  if (!window.confirm(`Delete “${place.properties.name}”? Offers and tasks there stop applying.`)) return;
  try {
    await api.delete(`/v1/geofences/${place.id}`);
    announce(status, `Deleted “${place.properties.name}”.`, "ok");
    await loadPlaces();
  } catch (err) {
    fail(err);
  }
}

async function importFile(event) {
  event.preventDefault();
  const form = event.target;
  const report = $("import-report");
  report.replaceChildren();
  const file = form.file.files[0];
  if (!file) return;
  let doc;
  try {
    doc = JSON.parse(await file.text());
  } catch (err) {
    report.append(h("p", { class: "error", role: "alert" }, `Not a JSON file: ${err.message}`));
    return;
  }
  try {
    const dry = form.dry_run.checked;
    const result = await api.post(`/v1/geofences/import${dry ? "?dry_run=true" : ""}`, doc);
    report.append(
      h("p", { class: result.failed ? "error" : "" }, `${result.dry_run ? "Checked" : "Imported"} ${result.total}: ${result.created} created, ${result.updated} updated, ${result.failed} failed.`),
    );
    if (result.errors && result.errors.length) {
      report.append(
        h(
          "table",
          { class: "table report-table" },
          h("caption", {}, "What failed and why"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "#"), h("th", { scope: "col" }, "External id"), h("th", { scope: "col" }, "Reason"))),
          h("tbody", {}, ...result.errors.map((e) => h("tr", {}, h("td", {}, e.index + 1), h("td", {}, e.external_id || "—"), h("td", {}, `${e.field ? e.field + ": " : ""}${e.detail || e.reason}`)))),
        ),
      );
    }
    if (!result.dry_run) {
      placesMap.pendingFit = true; // show everything, including the imported places
      await loadPlaces();
    }
  } catch (err) {
    report.append(h("p", { class: "error", role: "alert" }, err.message));
  }
}

async function broadcast(event) {
  event.preventDefault();
  const form = event.target;
  const out = $("broadcast-result");
  out.textContent = "";
  const body = {
    title: form.title.value.trim(),
    body: form.body.value.trim(),
    audience: form.audience.value,
    safety_critical: form.safety_critical.checked,
  };
  if (body.safety_critical && !window.confirm("Safety-critical messages reach people in their quiet hours. Send?")) return;
  try {
    const r = await api.post(`/v1/geofences/${form.geofence_id.value}/broadcast`, body);
    const held = Object.entries(r.suppressed || {}).map(([why, n]) => `${n} ${why.replace(/_/g, " ")}`);
    out.textContent = `Sent to ${r.recipients} ${r.recipients === 1 ? "person" : "people"}: ${r.queued} notified` + (held.length ? `, held back: ${held.join(", ")}` : "") + ".";
    form.title.value = "";
    form.body.value = "";
  } catch (err) {
    out.textContent = err.message;
  }
}

// ---------------------------------------------------------------- offers
const offerForm = $("offer-form");

async function loadOffers() {
  if (!["admin", "editor"].includes(state.me.role)) return;
  try {
    state.offers = await api.all("/v1/offers");
    renderOffers();
  } catch (err) {
    fail(err);
  }
}

function offerWhere(o) {
  const names = (o.geofence_ids || []).map(placeName);
  if (o.category) names.push(`every ${o.category}`);
  return names.join(", ");
}

function offerSchedule(o) {
  const parts = [];
  if (o.valid_from) parts.push(`from ${fmtTime(o.valid_from)}`);
  if (o.valid_until) parts.push(`until ${fmtTime(o.valid_until)}`);
  if (o.time_window) parts.push(`daily ${o.time_window.start.slice(0, 5)}–${o.time_window.end.slice(0, 5)}`);
  return parts.join(", ");
}

function renderOffers() {
  $("offer-list").replaceChildren(
    ...state.offers.map((o) =>
      h(
        "tr",
        { dataset: { id: o.id } },
        h("td", {}, h("strong", {}, o.title), h("div", { class: "muted small" }, o.body), h("div", { class: "muted small" }, offerSchedule(o))),
        h("td", {}, offerWhere(o), h("div", { class: "muted small" }, (o.triggers || []).join(", "))),
        h("td", {}, h("span", { class: `badge ${o.status}` }, o.status)),
        h(
          "td",
          {},
          h("button", { type: "button", class: "small secondary", onclick: () => editOffer(o), "aria-label": `Edit ${o.title}` }, "Edit"),
          o.status === "active"
            ? h("button", { type: "button", class: "small secondary", onclick: () => setOfferStatus(o, "paused"), "aria-label": `Pause ${o.title}` }, "Pause")
            : h("button", { type: "button", class: "small secondary", onclick: () => setOfferStatus(o, "active"), "aria-label": `${o.status === "paused" ? "Resume" : "Activate"} ${o.title}` }, o.status === "paused" ? "Resume" : "Activate"),
          h("button", { type: "button", class: "small secondary", onclick: () => showFunnel(o.id), "aria-label": `Numbers for ${o.title}` }, "Numbers"),
          h("button", { type: "button", class: "small danger", onclick: () => deleteOffer(o), "aria-label": `Delete ${o.title}` }, "Delete"),
        ),
      ),
    ),
  );
  if (!state.offers.length) $("offer-list").append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No offers yet.")));
  const funnel = $("funnel-offer");
  const cur = funnel.value;
  funnel.replaceChildren(...state.offers.map((o) => h("option", { value: o.id }, o.title)));
  if (cur) funnel.value = cur;
}

function offerBody(form) {
  const triggers = [...form.querySelectorAll('input[name="triggers"]:checked')].map((i) => i.value);
  const window_ =
    form.window_start.value && form.window_end.value
      ? { start: form.window_start.value, end: form.window_end.value, time_zone: form.time_zone.value.trim() || "Europe/London" }
      : null;
  return {
    title: form.title.value.trim(),
    body: form.body.value.trim(),
    url: form.url.value.trim() || null,
    geofence_ids: [...form.geofence_ids.selectedOptions].map((o) => o.value),
    category: form.category.value.trim() || null,
    triggers,
    valid_from: localToIso(form.valid_from.value),
    valid_until: localToIso(form.valid_until.value),
    time_window: window_,
    cooldown_s: Math.round(Number(form.cooldown_h.value || 0) * 3600),
    told_max: form.told_max.value ? Number(form.told_max.value) : null,
    max_per_person: Number(form.max_per_person.value || 1),
    priority: Number(form.priority.value || 0),
    status: form.status.value,
  };
}

function resetOfferForm() {
  offerForm.reset();
  offerForm.id.value = "";
  $("offer-form-title").textContent = "New offer";
  $("offer-error").textContent = "";
}

function editOffer(o) {
  resetOfferForm();
  offerForm.id.value = o.id;
  $("offer-form-title").textContent = `Edit “${o.title}”`;
  offerForm.title.value = o.title;
  offerForm.body.value = o.body;
  offerForm.url.value = o.url || "";
  for (const opt of offerForm.geofence_ids.options) opt.selected = (o.geofence_ids || []).includes(opt.value);
  offerForm.category.value = o.category || "";
  for (const box of offerForm.querySelectorAll('input[name="triggers"]')) box.checked = (o.triggers || []).includes(box.value);
  offerForm.valid_from.value = isoToLocal(o.valid_from);
  offerForm.valid_until.value = isoToLocal(o.valid_until);
  offerForm.window_start.value = o.time_window ? o.time_window.start.slice(0, 5) : "";
  offerForm.window_end.value = o.time_window ? o.time_window.end.slice(0, 5) : "";
  if (o.time_window) offerForm.time_zone.value = o.time_window.time_zone;
  offerForm.cooldown_h.value = Math.round((o.cooldown_s || 0) / 3600);
  offerForm.told_max.value = o.told_max ?? "";
  offerForm.max_per_person.value = o.max_per_person;
  offerForm.priority.value = o.priority ?? 0;
  if (![...offerForm.status.options].some((opt) => opt.value === o.status)) offerForm.status.append(h("option", { value: o.status }, o.status));
  offerForm.status.value = o.status;
  offerForm.title.focus();
}

async function saveOffer(event) {
  event.preventDefault();
  $("offer-error").textContent = "";
  const body = offerBody(offerForm);
  if (!body.triggers.length) {
    $("offer-error").textContent = "Choose at least one trigger.";
    return;
  }
  try {
    const id = offerForm.id.value;
    const saved = id ? await api.patch(`/v1/offers/${id}`, body) : await api.post("/v1/offers", body);
    announce(status, `Offer “${saved.title}” saved.`, "ok");
    resetOfferForm();
    await loadOffers();
  } catch (err) {
    fail(err, $("offer-error"), $("offer-form"), { window: "Daily from / to", geofence_ids: "Places" });
  }
}

async function setOfferStatus(o, value) {
  try {
    await api.patch(`/v1/offers/${o.id}`, { status: value });
    announce(status, `“${o.title}” is now ${value}.`, "ok");
    await loadOffers();
  } catch (err) {
    fail(err);
  }
}

async function deleteOffer(o) {
  if (!window.confirm(`Delete the offer “${o.title}”?`)) return;
  try {
    await api.delete(`/v1/offers/${o.id}`);
    await loadOffers();
  } catch (err) {
    fail(err);
  }
}

// ---------------------------------------------------------------- tasks
const taskForm = $("task-form");

async function loadWorkers() {
  if (state.me.role !== "admin" && state.me.role !== "editor") {
    $("task-assignees-help").textContent = "Only admins and editors assign tasks: tasks you create go to the team pool.";
    $("task-assignees").disabled = true;
    return;
  }
  try {
    state.workers = await api.all("/v1/users?role=field_worker");
    $("task-assignees").replaceChildren(...state.workers.map((w) => h("option", { value: w.id }, w.full_name || w.email)));
    $("task-assignees-help").textContent = state.workers.length ? "Ctrl/Cmd-click to choose several; none = team pool." : "No field worker accounts yet.";
  } catch (err) {
    fail(err);
  }
}

function workerName(id) {
  const w = state.workers.find((x) => x.id === id);
  return w ? w.full_name || w.email : "a field worker";
}

async function loadTasks() {
  try {
    const filter = $("task-filter").value;
    state.tasks = await api.all(`/v1/tasks${filter ? `?status=${filter}` : ""}`);
    renderTasks();
  } catch (err) {
    fail(err);
  }
}

function proofOf(t) {
  if (t.proof_source === "presence") return h("span", { class: "badge ok" }, `present ${fmtTime(t.proof_recorded_at)}`);
  if (t.proof_checkin_id) return h("span", { class: "badge ok" }, `checked in ${fmtTime(t.proof_recorded_at)}`);
  return h("span", { class: "muted small" }, t.requires_visit ? "check-in required" : "not needed");
}

// The notes of a task's transitions and its completion photos, shown under its row.
async function showTaskRecord(t, button) {
  const row = button.closest("tr");
  const next = row.nextElementSibling;
  if (next && next.classList.contains("task-record")) {
    next.remove();
    button.setAttribute("aria-expanded", "false");
    return;
  }
  const cell = h("td", { colspan: 5 }, h("p", { class: "muted small" }, "Loading…"));
  row.after(h("tr", { class: "task-record" }, cell));
  button.setAttribute("aria-expanded", "true");
  try {
    const [detail, photos] = await Promise.all([api.get(`/v1/tasks/${t.id}`), api.get(`/v1/tasks/${t.id}/photos`)]);
    const notes = (detail.transitions || []).filter((x) => x.note);
    const images = await Promise.all(
      photos.map(async (p, i) => {
        const res = await fetch(p.url, { headers: api.headers({ Accept: p.content_type }) });
        const url = URL.createObjectURL(await res.blob());
        return h("img", { src: url, alt: `Photo ${i + 1} of “${t.title}”`, class: "task-photo", width: p.width, height: p.height });
      }),
    );
    cell.replaceChildren(
      notes.length
        ? h("ul", { class: "plain" }, ...notes.map((x) => h("li", {}, h("strong", {}, x.to_status.replace("_", " ")), ` ${fmtTime(x.at)}: ${x.note}`)))
        : h("p", { class: "muted small" }, "No notes."),
      images.length ? h("div", { class: "photos" }, ...images) : h("p", { class: "muted small" }, "No photos."),
    );
  } catch (err) {
    cell.replaceChildren(h("p", { class: "error" }, err.message));
  }
}

// A due date in the past is allowed (recording late work) but said out loud.
function dueWarning() {
  const value = taskForm.due_at.value;
  const past = value && new Date(value).getTime() < Date.now();
  $("task-due-warning").textContent = past ? "This due date is in the past: the task will be overdue as soon as it is saved." : "";
  return Boolean(past);
}

function renderTasks() {
  const editor = ["admin", "editor"].includes(state.me.role);
  $("task-list").replaceChildren(
    ...state.tasks.map((t) =>
      h(
        "tr",
        { dataset: { id: t.id } },
        h("td", {}, h("strong", {}, t.title), t.overdue ? [" ", h("span", { class: "badge err" }, "overdue")] : null, h("div", { class: "muted small" }, `${t.priority} priority${t.due_at ? ` · due ${fmtTime(t.due_at)}` : ""}`), h("div", { class: "muted small" }, t.assignee_ids.length ? t.assignee_ids.map(workerName).join(", ") : "team pool")),
        h("td", {}, placeName(t.geofence_id)),
        h("td", {}, h("span", { class: `badge ${t.status}` }, t.status.replace("_", " "))),
        h("td", {}, proofOf(t), " ", h("button", { type: "button", class: "small secondary", "aria-expanded": "false", "aria-label": `Notes and photos of ${t.title}`, onclick: (e) => showTaskRecord(t, e.currentTarget) }, "Notes & photos")),
        h(
          "td",
          {},
          editor && h("button", { type: "button", class: "small secondary", onclick: () => editTask(t), "aria-label": `Edit ${t.title}` }, "Edit"),
          editor && !["done", "cancelled"].includes(t.status) && h("button", { type: "button", class: "small danger", onclick: () => setTaskStatus(t, "cancelled"), "aria-label": `Cancel ${t.title}` }, "Cancel"),
          editor && ["done", "cancelled"].includes(t.status) && h("button", { type: "button", class: "small secondary", onclick: () => setTaskStatus(t, "open"), "aria-label": `Reopen ${t.title}` }, "Reopen"),
        ),
      ),
    ),
  );
  if (!state.tasks.length) $("task-list").append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No tasks.")));
}

function resetTaskForm() {
  taskForm.reset();
  taskForm.id.value = "";
  $("task-form-title").textContent = "New task";
  $("task-error").textContent = "";
  $("task-due-warning").textContent = "";
}

function editTask(t) {
  resetTaskForm();
  taskForm.id.value = t.id;
  $("task-form-title").textContent = `Edit “${t.title}”`;
  taskForm.title.value = t.title;
  taskForm.description.value = t.description || "";
  taskForm.geofence_id.value = t.geofence_id;
  for (const opt of taskForm.assignee_ids.options) opt.selected = t.assignee_ids.includes(opt.value);
  taskForm.priority.value = t.priority;
  taskForm.due_at.value = isoToLocal(t.due_at);
  taskForm.requires_visit.checked = t.requires_visit;
  taskForm.expected_duration_min.value = t.expected_duration_min ?? "";
  dueWarning();
  taskForm.title.focus();
}

async function saveTask(event) {
  event.preventDefault();
  $("task-error").textContent = "";
  const body = {
    title: taskForm.title.value.trim(),
    description: taskForm.description.value.trim(),
    geofence_id: taskForm.geofence_id.value,
    priority: taskForm.priority.value,
    due_at: localToIso(taskForm.due_at.value),
    requires_visit: taskForm.requires_visit.checked,
    expected_duration_min: taskForm.expected_duration_min.value ? Number(taskForm.expected_duration_min.value) : null,
  };
  if (!taskForm.assignee_ids.disabled) body.assignee_ids = [...taskForm.assignee_ids.selectedOptions].map((o) => o.value);
  try {
    const id = taskForm.id.value;
    const saved = id ? await api.patch(`/v1/tasks/${id}`, body) : await api.post("/v1/tasks", body);
    announce(status, `Task “${saved.title}” saved (${saved.status})${saved.overdue ? ": it is already overdue" : ""}.`, saved.overdue ? "warn" : "ok");
    resetTaskForm();
    await loadTasks();
  } catch (err) {
    fail(err, $("task-error"), taskForm, { assignee_ids: "Assign to field workers" });
  }
}

async function setTaskStatus(t, value) {
  try {
    await api.patch(`/v1/tasks/${t.id}`, { status: value });
    await loadTasks();
  } catch (err) {
    fail(err);
  }
}

// ---------------------------------------------------------------- activity (activity.js)
async function startStream(delay = 1000) {
  if (!state.me) return;
  const ctrl = new AbortController();
  state.stream = ctrl;
  const badge = $("live-state");
  try {
    badge.textContent = "connecting";
    badge.className = "badge warn";
    const connected = api.stream(
      "/v1/events/stream",
      (msg) => {
        if (msg.id) state.lastEventId = msg.id; // resume here after a reconnect
        if (msg.event === "heartbeat") return;
        liveActivity(msg.json);
      },
      ctrl.signal,
      state.lastEventId,
      () => {
        badge.textContent = "live"; // only once the server has answered: nothing is missed after
        badge.className = "badge live";
      },
    );
    await connected;
  } catch (err) {
    if (ctrl.signal.aborted) return;
    badge.textContent = err instanceof ApiError && err.status === 404 ? "not available" : "reconnecting";
    badge.className = "badge err";
    if (err instanceof ApiError && [401, 403, 404].includes(err.status)) return;
  }
  if (!ctrl.signal.aborted && state.me) setTimeout(() => startStream(Math.min(delay * 2, 30000)), delay);
}

// delivered → ok; retry (push service busy, will try again) → warning; gone/failed/dead → error.
function deliveryKind(status) {
  if (status === "delivered") return "ok";
  if (status === "retry") return "warn";
  return "err";
}

async function loadDeliveries() {
  if (!["admin", "editor"].includes(state.me.role)) return;
  try {
    const page = await api.get("/v1/deliveries?limit=500");
    state.deliveries = page.items || [];
  } catch (err) {
    state.deliveries = [];
    if (!(err instanceof ApiError && err.status === 404)) fail(err);
  }
  $("delivery-list").replaceChildren(
    ...state.deliveries.slice(0, 50).map((d) =>
      h(
        "tr",
        {},
        h("td", {}, fmtTime(d.attempted_at)),
        h("td", {}, h("span", { class: `badge ${deliveryKind(d.status)}` }, d.status), d.http_status ? h("span", { class: "muted small" }, ` HTTP ${d.http_status}`) : null, d.error ? h("div", { class: "muted small" }, d.error) : null),
        h("td", {}, d.push_origin),
        h("td", {}, d.latency_ms === null || d.latency_ms === undefined ? "—" : `${Math.round(d.latency_ms)} ms`),
      ),
    ),
  );
  if (!state.deliveries.length) $("delivery-list").append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No deliveries yet.")));
}

// ---------------------------------------------------------------- numbers
function labelFor(date, bucket) {
  return bucket === "hour"
    ? `${String(date.getHours()).padStart(2, "0")}h`
    : date.toLocaleDateString(undefined, { day: "numeric", month: "short" });
}

let footfallRequest = 0;

async function drawFootfall() {
  const request = ++footfallRequest; // a slower earlier answer must not overwrite a newer one
  const id = $("footfall-place").value;
  const chart = $("footfall-chart");
  if (!id) return chart.replaceChildren(h("p", { class: "muted" }, "No places yet."));
  const bucket = $("footfall-bucket").value;
  try {
    const hours = bucket === "hour" ? 24 : 30 * 24;
    const step = bucket === "hour" ? 3600000 : 86400000;
    const first = Math.floor((Date.now() - hours * 3600000) / step) * step;
    const since = new Date(first).toISOString();
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "Europe/London";
    const stats = await api.get(`/v1/geofences/${id}/checkins/stats?bucket=${bucket}&since=${encodeURIComponent(since)}&tz=${encodeURIComponent(tz)}`);
    const keyFor = (d) => (bucket === "hour" ? d.toISOString().slice(0, 13) : d.toDateString());
    if (request !== footfallRequest) return;
    const byStart = new Map((stats.buckets || []).map((b) => [keyFor(new Date(b.start)), b]));
    // Every hour/day of the window gets a column (no check-ins = 0); resident and staff counts
    // below the privacy threshold come back as null and are drawn as "·", never as 0.
    const points = [];
    for (let t = first; t <= Date.now(); t += step) {
      const label = labelFor(new Date(t), bucket);
      const b = byStart.get(keyFor(new Date(t)));
      points.push({ label, value: b ? b.residents_checkins : 0, extra: b ? b.staff_checkins : 0 });
    }
    columnChart(chart, `Check-ins at ${placeName(id)} per ${bucket}`, points, { legend: ["residents", "staff"] });
  } catch (err) {
    chart.replaceChildren(h("p", { class: "muted" }, err instanceof ApiError && err.status === 404 ? "Footfall statistics are not available on this server yet." : err.message));
  }
}

let funnelRequest = 0;

async function drawFunnel() {
  const request = ++funnelRequest;
  const id = $("funnel-offer").value;
  const chart = $("funnel-chart");
  if (!id) return chart.replaceChildren(h("p", { class: "muted" }, "No offers yet."));
  try {
    const st = await api.get(`/v1/offers/${id}/stats`);
    if (request !== funnelRequest) return;
    const sent = st.sent ?? null;
    barChart(
      chart,
      "Offer funnel: sent, opened, redeemed",
      [
        { label: "sent", value: sent },
        { label: "opened", value: st.opened ?? null },
        { label: "redeemed", value: st.redeemed ?? null, kind: "ok" },
      ],
      { percentOf: sent },
    );
    await drawWhyHeldBack(id, request);
  } catch (err) {
    chart.replaceChildren(h("p", { class: "muted" }, err.message));
  }
}

// Why an offer did or didn't reach people: every held-back reason counted (issue 21).
async function drawWhyHeldBack(id, request) {
  const box = $("funnel-why");
  const f = await api.get(`/v1/offers/${id}/funnel`);
  if (request !== funnelRequest) return;
  const push = f.push || {};
  const lines = [
    h("li", {}, `Candidate ${f.candidates} times; queued ${f.queued}.`),
    ...(f.held_back || []).map((r) => h("li", { dataset: { reason: r.reason } }, `${r.count} × ${r.explanation}`)),
  ];
  if (push.no_subscription) lines.push(h("li", {}, `${push.no_subscription} × queued, but the person has no push subscription (kept in their inbox).`));
  if (push.push_failed) lines.push(h("li", {}, `${push.push_failed} × the push failed.`));
  if (push.subscription_expired) lines.push(h("li", {}, `${push.subscription_expired} × the person's push subscription had expired.`));
  if (f.deferred_until) lines.push(h("li", {}, `Some are waiting for quiet hours to end (until ${fmtTime(f.deferred_until)}).`));
  box.replaceChildren(h("h3", {}, "Why it did or didn't reach people"), h("ul", { class: "why-list" }, ...lines));
}

function drawDeliveries() {
  const rows = state.deliveries;
  const counts = {};
  for (const d of rows) counts[d.status] = (counts[d.status] || 0) + 1;
  barChart(
    $("delivery-chart"),
    "Delivery attempts by outcome",
    Object.entries(counts).map(([label, value]) => ({ label, value, kind: deliveryKind(label) })),
    { percentOf: rows.length },
  );
  const lat = rows.map((d) => d.latency_ms).filter((v) => typeof v === "number");
  barChart(
    $("latency-chart"),
    "Delivery latency percentiles (ms)",
    lat.length
      ? [
          { label: "p50", value: Math.round(percentile(lat, 0.5)) },
          { label: "p90", value: Math.round(percentile(lat, 0.9)) },
          { label: "p99", value: Math.round(percentile(lat, 0.99)) },
        ]
      : [],
    { unit: " ms" },
  );
}

function drawNumbers() {
  drawFootfall();
  drawFunnel();
  loadDeliveries().then(drawDeliveries);
}

function showFunnel(id) {
  $("funnel-offer").value = id;
  selectTab($("tab-numbers"));
}

// ---------------------------------------------------------------- wiring
// A status message belongs to the action that caused it: the next action (a button, a form)
// clears it before that action says its own.
document.addEventListener("click", (e) => {
  if (e.target instanceof Element && e.target.closest("button") && state.me) announce(status, "");
}, true);
document.addEventListener("submit", () => state.me && announce(status, ""), true);
$("login-form").addEventListener("submit", signIn);
$("logout").addEventListener("click", () => signOut());
placeForm.addEventListener("submit", savePlace);
$("place-cancel").addEventListener("click", closePlaceForm);
$("import-form").addEventListener("submit", importFile);
$("broadcast-form").addEventListener("submit", broadcast);
offerForm.addEventListener("submit", saveOffer);
$("offer-reset").addEventListener("click", resetOfferForm);
taskForm.addEventListener("submit", saveTask);
placeForm.category.addEventListener("change", applyCategoryDefaults);
placeForm.always_open.addEventListener("change", () => ($("place-hours-fields").hidden = placeForm.always_open.checked));
taskForm.due_at.addEventListener("change", dueWarning);
taskForm.due_at.addEventListener("input", dueWarning);
$("task-reset").addEventListener("click", resetTaskForm);
$("task-filter").addEventListener("change", loadTasks);
$("footfall-place").addEventListener("change", drawFootfall);
$("footfall-bucket").addEventListener("change", drawFootfall);
$("funnel-offer").addEventListener("change", drawFunnel);
$("draw-polygon").addEventListener("click", () => placesMap.draw("Polygon"));
$("draw-rectangle").addEventListener("click", () => placesMap.draw("Rectangle"));
$("draw-circle").addEventListener("click", () => placesMap.draw("Circle"));
$("circle-centre").addEventListener("click", () => placesMap.circleAtCentre(50));
$("edit-shapes").addEventListener("click", () => placesMap.toggleEdit());
$("drag-shapes").addEventListener("click", () => placesMap.toggleDrag());

if (api.token) {
  start().catch(() => signOut("Sign in to continue."));
} else {
  $("login-email").focus();
}
