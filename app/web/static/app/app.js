// Resident / field-worker PWA: device registration or staff sign-in, check-in, push, background
// location (only while opted in and open), preferences, inbox and a field worker's tasks.
import { Api, ApiError, announce, fmtDistance, fmtTime, h } from "/static/common/api.js";
import { detailRoute, openTarget, redeemControl, showDetail } from "/static/app/detail.js";
import { kv } from "/static/app/kv.js";
import { mountGpsSetup } from "/static/common/gps-setup.js";

const api = new Api(window.localStorage, "hereabouts.app.token");
const $ = (id) => document.getElementById(id);
const status = $("status");

const state = {
  me: null,
  lastFix: null,
  checkins: Number(localStorage.getItem("hereabouts.app.checkins") || 0),
  watch: null,
  queue: [],
  flushTimer: null,
  registration: null,
};

const isWorker = () => state.me && state.me.kind === "staff";
// The server's default TASK_VISIT_WINDOW_MIN: only for the "checked in here" hint, the server decides.
const VISIT_WINDOW_MS = 120 * 60 * 1000;

// A status message belongs to the action that caused it: the next action clears it.
function clearStatus() {
  announce(status, "");
}

// ---------------------------------------------------------------- start-up
async function boot() {
  if ("serviceWorker" in navigator) {
    try {
      state.registration = await navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" });
      navigator.serviceWorker.addEventListener("message", (e) => {
        if (e.data && e.data.type === "push") loadInbox();
      });
    } catch (err) {
      $("push-state").textContent = `Offline support unavailable: ${err.message}`;
    }
  }
  if (!api.token) return showWelcome();
  try {
    await enter();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      api.token = null;
      return showWelcome("Please sign in again.");
    }
    announce(status, err.message, "error");
  }
}

function showWelcome(message) {
  $("welcome").hidden = false;
  $("home").hidden = true;
  $("signout").hidden = true;
  if (message) announce(status, message);
}

async function enter() {
  state.me = await api.get("/v1/me");
  await kv.set("token", api.token).catch(() => undefined);
  $("welcome").hidden = true;
  $("home").hidden = false;
  $("signout").hidden = false;
  $("tasks-card").hidden = !isWorker();
  $("shift-card").hidden = !isWorker();
  $("safety-card").hidden = !isWorker();
  $("privacy-card").hidden = isWorker(); // staff data is the council's, handled by admins
  $("checkin-help").textContent = isWorker()
    ? "Check in at a site to see its tasks; it counts as proof of visit."
    : "Uses your location once to find the place you are at.";
  await Promise.allSettled([
    loadInbox(),
    loadPreferences(),
    isWorker() ? loadTasks() : null,
    isWorker() ? loadTracking() : null,
    isWorker() ? loadVisits() : null,
    showDetail(api, $("detail"), window.location.hash),
    mountGpsSetup(api, $("gps-card"), { status, resident: !isWorker() }).then((shown) => ($("gps-card").hidden = !shown)),
  ]);
  if (isWorker()) await extendFromHash();
  $("checkin-title").focus(); // after signing in, reading starts at the first heading
  restoreBackground();
  if ("Notification" in window && Notification.permission === "granted") subscribePush(false);
}

async function startResident() {
  try {
    // A deployment shared by several councils links to /app/?org=<slug> (or asks for it).
    const org = new URLSearchParams(window.location.search).get("org") || $("org-code").value.trim();
    const device = await api.post("/v1/devices", org ? { platform: "web", organisation: org } : { platform: "web" });
    api.token = device.token;
    await enter();
    announce(status, "You're set up. Check in when you visit a place.", "ok");
  } catch (err) {
    if (err instanceof ApiError && err.status === 422 && (err.problem.field === "organisation" || /organisation/.test(err.message))) {
      $("org-field").hidden = false;
      $("org-code").focus();
    }
    announce(status, err.message, "error");
  }
}

async function signInWorker(event) {
  event.preventDefault();
  const form = event.target;
  $("worker-error").textContent = "";
  try {
    await api.login(form.email.value.trim(), form.password.value);
    form.password.value = "";
    await enter();
    announce(status, `Signed in as ${state.me.email}.`, "ok");
  } catch (err) {
    $("worker-error").textContent = err instanceof ApiError && err.status === 401 ? "Wrong email or password." : err.message;
  }
}

// A resident's token is the only key to their data: warn, offer export, then erase.
function askBeforeSignOut() {
  clearStatus();
  if (isWorker()) return signOut();
  $("signout-card").hidden = false;
  $("signout-title").focus();
}

async function signOut() {
  $("signout-card").hidden = true;
  stopBackground();
  $("bg-toggle").disabled = true;
  api.token = null;
  state.me = null;
  await kv.delete("token").catch(() => undefined);
  showWelcome("Signed out.");
}

// ---------------------------------------------------------------- location
function position(options = {}) {
  return new Promise((resolve, reject) => {
    if (!("geolocation" in navigator)) return reject(new Error("This browser cannot share its location."));
    navigator.geolocation.getCurrentPosition(resolve, (err) => {
      const why = { 1: "Location permission was refused.", 2: "Your location is not available right now.", 3: "Finding your location took too long." };
      reject(new Error(why[err.code] || err.message));
    }, { enableHighAccuracy: true, timeout: 20000, maximumAge: 0, ...options });
  });
}

function fixOf(pos) {
  return {
    lon: Math.round(pos.coords.longitude * 1e6) / 1e6,
    lat: Math.round(pos.coords.latitude * 1e6) / 1e6,
    accuracy_m: pos.coords.accuracy,
    recorded_at: new Date(pos.timestamp || Date.now()).toISOString(),
  };
}

// ---------------------------------------------------------------- check-in
async function checkIn() {
  clearStatus();
  const button = $("checkin");
  const out = $("checkin-result");
  button.disabled = true;
  out.replaceChildren(h("p", { class: "muted" }, "Finding where you are…"));
  try {
    const fix = fixOf(await position());
    state.lastFix = fix;
    await sendCheckin(fix);
  } catch (err) {
    out.replaceChildren(h("p", { class: "error", role: "alert" }, err.message));
  } finally {
    button.disabled = false;
  }
}

async function sendCheckin(fix, geofenceId = null) {
  const out = $("checkin-result");
  let result;
  try {
    result = await api.post("/v1/checkins", geofenceId ? { ...fix, geofence_id: geofenceId } : fix);
    renderCheckin(result);
  } catch (err) {
    // Inside (or equally near) several places: the person says which one.
    const candidates = err instanceof ApiError && err.status === 409 ? err.problem.candidates || [] : [];
    if (!candidates.length) throw err;
    out.replaceChildren(
      h("p", {}, "Which place are you at?"),
      ...candidates.map((c) => h("button", { type: "button", class: "secondary", onclick: () => sendCheckin(fix, c.id).catch((e) => out.replaceChildren(h("p", { class: "error", role: "alert" }, e.message))) }, c.name)),
    );
    return;
  }
  state.checkins += 1;
  localStorage.setItem("hereabouts.app.checkins", String(state.checkins));
  state.visit = { geofence_id: result.place.id, at: Date.parse(result.checkin.recorded_at) || Date.now() };
  maybeAskForNotifications();
  if (isWorker()) await Promise.all([loadTasks(), loadVisits()]);
}

function renderCheckin(result) {
  const out = $("checkin-result");
  const place = result.place;
  const nodes = [];
  if (!place) {
    nodes.push(h("p", {}, "No council place here yet."));
  } else {
    nodes.push(h("p", { class: "place" }, `You're at ${place.name}`));
    if (result.repeated) {
      const since = new Date(result.checkin.recorded_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      nodes.push(h("p", { class: "muted small" }, isWorker() ? `Your visit here is recorded (checked in at ${since}): tasks here can be completed.` : `You already checked in here at ${since}.`));
    }
  }
  const offers = result.offers || [];
  for (const o of offers) {
    nodes.push(
      h(
        "article",
        { class: "offer", dataset: { id: o.id } },
        h("h3", {}, o.title),
        h("p", {}, o.body),
        o.url ? h("a", { href: o.url, rel: "noopener", target: "_blank" }, "More") : null,
        " ",
        redeemControl(api, o, place),
      ),
    );
  }
  const tasks = result.tasks || [];
  const proof = new Set((result.proof_of_visit_for || []).map((t) => (typeof t === "string" ? t : t.id)));
  if (tasks.length) {
    nodes.push(h("h3", {}, "Tasks here"));
    nodes.push(h("ul", { class: "list" }, ...tasks.map((t) => h("li", {}, t.title, proof.has(t.id) ? h("span", { class: "badge ok" }, " visit recorded") : null))));
  } else if (proof.size) {
    nodes.push(h("p", { class: "badge ok" }, `Visit recorded for ${proof.size} task(s).`));
  }
  if (place && !offers.length && !tasks.length) nodes.push(h("p", { class: "muted" }, "Nothing on here for you right now."));
  if ((result.notifications_queued || []).length) nodes.push(h("p", { class: "muted small" }, "We've also sent this to your notifications."));
  out.replaceChildren(...nodes);
}

// ---------------------------------------------------------------- notifications
// Asked after the first successful check-in (when the value is clear), never on load.
function maybeAskForNotifications() {
  if (!("Notification" in window) || !("PushManager" in window)) return;
  if (Notification.permission === "granted") return subscribePush(false);
  if (Notification.permission === "default" && !localStorage.getItem("hereabouts.app.notify-declined")) {
    // Field workers are not offered anything: they hear about their tasks and messages.
    $("notify-title").textContent = isWorker() ? "Get told about tasks and messages?" : "Get told about offers nearby?";
    $("notify-text").textContent = isWorker()
      ? "We can send a notification when a task near you needs doing or the council sends a message to a place you are at. You can turn this off at any time."
      : "We can send a notification when there is something for you at a place you visit. You can turn this off at any time.";
    $("notify-card").hidden = false;
  }
}

async function acceptNotifications() {
  $("notify-card").hidden = true;
  const permission = await Notification.requestPermission();
  if (permission === "granted") await subscribePush(true);
  else $("push-state").textContent = "Notifications are off. Your inbox below still shows everything.";
}

function b64urlToBytes(value) {
  const pad = "=".repeat((4 - (value.length % 4)) % 4);
  const raw = atob((value + pad).replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

async function subscribePush(tell) {
  const info = $("push-state");
  try {
    const reg = state.registration || (await navigator.serviceWorker.ready);
    const { public_key: key } = await api.get("/v1/push/vapid-public-key");
    let sub = await reg.pushManager.getSubscription();
    if (sub && sub.options && sub.options.applicationServerKey) {
      const current = new Uint8Array(sub.options.applicationServerKey);
      const wanted = b64urlToBytes(key);
      if (current.length !== wanted.length || current.some((b, i) => b !== wanted[i])) {
        await sub.unsubscribe();
        sub = null;
      }
    }
    const fresh = () => reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64urlToBytes(key) });
    sub = sub || (await fresh());
    try {
      await api.post("/v1/push/subscriptions", sub.toJSON());
    } catch (err) {
      // This browser's endpoint is still registered to someone else (an earlier device
      // registration or another account): the server keeps it with its first owner, so get a
      // new endpoint from the browser and register that one.
      if (!(err instanceof ApiError && err.status === 409 && String(err.problem.type || "").endsWith("/subscription-taken"))) throw err;
      await sub.unsubscribe();
      sub = await fresh();
      await api.post("/v1/push/subscriptions", sub.toJSON());
    }
    info.textContent = "Notifications are on for this device.";
    if (tell) announce(status, "Notifications are on.", "ok");
  } catch (err) {
    info.textContent = `Push notifications are not available here (${err.message}). Your inbox still shows everything.`;
  }
}

// ---------------------------------------------------------------- background location
// The server is the source of truth (opt-in is recorded there); the local copy covers old servers.
async function restoreBackground() {
  let on = localStorage.getItem("hereabouts.app.background") === "on";
  $("bg-card").hidden = isWorker(); // background location is a resident's opt-in
  if (isWorker()) return;
  try {
    on = (await api.get("/v1/me/background-location")).enabled;
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) {
      $("bg-card").hidden = true; // staff accounts: not offered
      return;
    }
  }
  $("bg-toggle").checked = on;
  $("bg-toggle").disabled = false; // usable only once the real state is known
  if (on) startWatching();
  else stopBackground();
}

async function toggleBackground(event) {
  const enabled = event.target.checked;
  try {
    await api.put("/v1/me/background-location", { enabled });
    localStorage.setItem("hereabouts.app.background", enabled ? "on" : "off");
    if (enabled) startWatching();
    else stopBackground("Off. Nothing is shared.");
  } catch (err) {
    event.target.checked = !enabled;
    announce(status, err.message, "error");
  }
}

function startWatching() {
  if (state.watch !== null || !("geolocation" in navigator)) return;
  $("bg-state").textContent = "On: your location is sent while this app is open.";
  state.watch = navigator.geolocation.watchPosition(
    (pos) => {
      const fix = fixOf(pos);
      state.lastFix = fix;
      const ping = { id: crypto.randomUUID(), ...fix };
      if (typeof pos.coords.speed === "number" && !Number.isNaN(pos.coords.speed)) ping.speed_mps = pos.coords.speed;
      if (typeof pos.coords.heading === "number" && !Number.isNaN(pos.coords.heading)) ping.heading = pos.coords.heading;
      state.queue.push(ping);
      // The first fix goes at once (the person sees sharing work), later ones in batches.
      if (state.queue.length >= 20 || !state.sentAny) {
        state.sentAny = true;
        flushPings();
      }
      else if (!state.flushTimer) state.flushTimer = setTimeout(flushPings, 10000);
    },
    (err) => ($("bg-state").textContent = `Location unavailable: ${err.message}`),
    { enableHighAccuracy: true, maximumAge: 5000 },
  );
}

function stopBackground(text) {
  if (state.watch !== null) navigator.geolocation.clearWatch(state.watch);
  state.watch = null;
  clearTimeout(state.flushTimer);
  state.flushTimer = null;
  state.queue = [];
  if (text) $("bg-state").textContent = text;
}

async function flushPings() {
  clearTimeout(state.flushTimer);
  state.flushTimer = null;
  if (!state.queue.length) return;
  const batch = state.queue.splice(0, 1000);
  try {
    const result = await api.post("/v1/pings", { pings: batch });
    const events = result.events || [];
    $("bg-state").textContent = `On: ${result.accepted} location(s) sent ${new Date().toLocaleTimeString()}` + (events.length ? ` · ${events.length} place event(s)` : "");
    if (events.length) loadInbox();
  } catch (err) {
    if (err instanceof ApiError && err.status < 500 && err.status !== 429) {
      $("bg-state").textContent = `Location not accepted: ${err.message}`;
    } else {
      state.queue.unshift(...batch); // same ids: the server ignores duplicates on retry
      $("bg-state").textContent = "Offline: locations will be sent when the connection is back.";
    }
  }
}

// ---------------------------------------------------------------- preferences
// GET/PUT /v1/me/preferences: {time_zone, quiet_hours: {start, end} | null, categories_opted_out,
// max_per_day, ...}. Hidden when the server does not offer it.
async function loadPreferences() {
  try {
    renderPreferences(await api.get("/v1/me/preferences"));
    $("prefs-form").hidden = false;
  } catch {
    $("prefs-form").hidden = true;
  }
}

function renderPreferences(prefs) {
  const qh = prefs.quiet_hours || {};
  const zone = prefs.time_zone || Intl.DateTimeFormat().resolvedOptions().timeZone;
  $("prefs-fields").replaceChildren(
    h("fieldset", {},
      h("legend", {}, "Quiet hours (no notifications)"),
      h("div", { class: "row" },
        h("div", {}, h("label", { for: "pref-qs" }, "From"), h("input", { id: "pref-qs", name: "quiet_start", type: "time", value: (qh.start || "").slice(0, 5) })),
        h("div", {}, h("label", { for: "pref-qe" }, "Until"), h("input", { id: "pref-qe", name: "quiet_end", type: "time", value: (qh.end || "").slice(0, 5) })),
      ),
      h("small", { class: "muted" }, "Leave both empty for no quiet hours."),
    ),
    h("label", { for: "pref-tz" }, "Time zone"),
    h("input", { id: "pref-tz", name: "time_zone", value: zone, required: true }),
    h("label", { for: "pref-max" }, "At most this many notifications a day"),
    h("input", { id: "pref-max", name: "max_per_day", type: "number", min: 1, max: 100, value: prefs.max_per_day ?? "" }),
    h("label", { for: "pref-cat" }, "Kinds of place I don't want to hear about"),
    h("input", { id: "pref-cat", name: "categories_opted_out", value: (prefs.categories_opted_out || []).join(", "), "aria-describedby": "pref-cat-help" }),
    h("small", { id: "pref-cat-help", class: "muted" }, "Comma separated, e.g. park, leisure_centre"),
  );
}

async function savePreferences(event) {
  event.preventDefault();
  const form = event.target;
  const start = form.quiet_start.value;
  const end = form.quiet_end.value;
  if (Boolean(start) !== Boolean(end)) {
    $("prefs-error").textContent = "Give both times for quiet hours, or neither.";
    return;
  }
  const body = {
    time_zone: form.time_zone.value.trim(),
    quiet_hours: start ? { start, end } : null,
    categories_opted_out: form.categories_opted_out.value.split(",").map((c) => c.trim()).filter(Boolean),
  };
  if (form.max_per_day.value !== "") body.max_per_day = Number(form.max_per_day.value);
  try {
    renderPreferences(await api.put("/v1/me/preferences", body));
    $("prefs-error").textContent = "";
    announce(status, "Preferences saved.", "ok");
  } catch (err) {
    $("prefs-error").textContent = err.message;
  }
}

// ---------------------------------------------------------------- inbox

// Why an inbox entry was not pushed, in the words the rules wrote for residents (issue 21).
function heldBackNote(n) {
  if (!n.decision || !n.decision.startsWith("suppressed")) return null;
  const text = (n.related && n.related.reason_text) || "We kept this one in your inbox.";
  return h("p", { class: "muted small held-back" }, text);
}

async function loadInbox() {
  const list = $("inbox");
  try {
    const page = await api.get("/v1/me/notifications?limit=50");
    const items = page.items || [];
    list.replaceChildren(
      ...items.map((n) =>
        h(
          "li",
          { class: `inbox-item ${n.opened_at ? "" : "unread"}`, dataset: { id: n.id } },
          h("h3", {}, n.title),
          n.body ? h("p", {}, n.body) : null,
          h("span", { class: "muted small" }, fmtTime(n.created_at)),
          heldBackNote(n),
          " ",
          h("button", { type: "button", class: "small secondary", onclick: () => openNotification(n) }, n.url ? "Open" : "Mark read"),
        ),
      ),
    );
    if (!items.length) list.append(h("li", { class: "muted" }, "Nothing yet."));
  } catch (err) {
    list.replaceChildren(h("li", { class: "muted" }, err instanceof ApiError && err.status === 404 ? "The inbox is not available on this server yet." : err.message));
  }
}

async function openNotification(n) {
  try {
    if (!n.opened_at) await api.post(`/v1/me/notifications/${n.id}/opened`, undefined);
  } catch {
    // counting the open is best effort
  }
  openTarget(n.url);
  loadInbox();
}

// ---------------------------------------------------------------- lone working (docs/tasks.md)
// A visit runs from check-in (or entering the place) to check-out (or leaving it). When it runs
// over, the push "Are you OK? Tap to extend" opens /app/#extend=<visit id>: that extends it.
const EXTEND_ROUTE = /^#extend=([0-9a-f-]{36})$/i;
const fmtClock = (value) => new Date(value).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });

async function loadVisits() {
  const box = $("visit-state");
  try {
    const visits = await api.get("/v1/me/visits");
    if (!visits.length) {
      box.replaceChildren(h("p", { class: "muted small" }, "Not on a visit."));
      return;
    }
    const items = await Promise.all(visits.map(async (v) => visitItem(v, await placeName(v.geofence_id))));
    box.replaceChildren(h("ul", { class: "list" }, items));
  } catch (err) {
    box.replaceChildren(h("p", { class: "error" }, err.message));
  }
}

function visitItem(v, place) {
  return h(
    "li",
    { class: "visit", dataset: { visit: v.id } },
    h("p", {}, `At ${place || "a place"} until ${fmtClock(v.due_at)}`),
    h("button", { type: "button", class: "secondary small", onclick: () => extendVisit(v.id) }, "I'm OK: 30 minutes more"),
    h("button", { type: "button", class: "secondary small", onclick: () => checkOutVisit(v.id) }, "Check out"),
  );
}

async function extendVisit(id) {
  try {
    const v = await api.post(`/v1/me/visits/${id}/extend`, { minutes: 30 });
    announce(status, `Thanks. Your visit now ends at ${fmtClock(v.due_at)}.`);
  } catch (err) {
    announce(status, err.message, "error");
  }
  await loadVisits();
}

async function checkOutVisit(id) {
  try {
    await api.post(`/v1/me/visits/${id}/check-out`, {});
    announce(status, "Checked out. Safe journey.");
  } catch (err) {
    announce(status, err.message, "error");
  }
  await loadVisits();
}

async function extendFromHash() {
  const m = EXTEND_ROUTE.exec(window.location.hash || "");
  if (!m) return;
  history.replaceState(null, "", window.location.pathname);
  await extendVisit(m[1]);
}

async function needHelp() {
  const button = $("help");
  button.disabled = true;
  announce(status, "Sending the alert…");
  const body = {};
  try {
    const fix = await Promise.race([position({ timeout: 5000 }).then(fixOf), new Promise((r) => setTimeout(r, 5000))]);
    if (fix) Object.assign(body, { lon: fix.lon, lat: fix.lat });
  } catch {
    // no position: the alert carries the last known place instead
  }
  try {
    const alert = await api.post("/v1/me/help", body);
    announce(status, `Help alert sent at ${fmtClock(alert.raised_at)}: the on-call list is being called until someone answers.`, "error");
  } catch (err) {
    announce(status, `The alert could not be sent: ${err.message}. Call for help by phone.`, "error");
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- field worker tasks
async function loadTasks(near = state.lastFix) {
  const list = $("task-list");
  try {
    const q = near ? `&near=${near.lon},${near.lat}` : "";
    const page = await api.get(`/v1/me/tasks?include_pool=true&include_closed=true${q}`);
    const tasks = page.items || page;
    await Promise.all(tasks.map(async (t) => (t.place_name = await placeName(t.geofence_id))));
    list.replaceChildren(...tasks.map(taskItem));
    if (!tasks.length) list.append(h("li", { class: "muted" }, "No tasks for you."));
  } catch (err) {
    list.replaceChildren(h("li", { class: "error" }, err.message));
  }
}

const placeNames = new Map();
async function placeName(id) {
  if (!placeNames.has(id)) {
    placeNames.set(id, api.get(`/v1/geofences/${id}`).then((f) => f.properties.name).catch(() => ""));
  }
  return placeNames.get(id);
}

// Buttons follow the task's state machine (docs/tasks.md): a field worker takes a pool task,
// starts an assigned one, pauses or completes one in progress.
function taskActions(t) {
  const mine = state.me && t.assignee_ids.includes(state.me.id);
  const button = (label, onclick, cls = "small") => h("button", { type: "button", class: cls, onclick, "aria-label": `${label}: ${t.title}` }, label);
  if (t.status === "open" && !t.assignee_ids.length) return [button("Take", () => moveTask(t, "assigned"))];
  if (!mine) return [];
  if (t.status === "assigned") return [button("Start", () => moveTask(t, "in_progress"))];
  if (t.status === "in_progress") return [button("Complete", () => openCompletion(t)), button("Pause", () => moveTask(t, "assigned"), "small secondary")];
  return [];
}

// A check-in here within the window proves the visit for every task at this place.
function visitBadge(t) {
  if (!t.requires_visit) return null;
  if (t.proof_recorded_at) return h("span", { class: "badge ok" }, "visit recorded");
  const v = state.visit;
  if (v && v.geofence_id === t.geofence_id && Date.now() - v.at < VISIT_WINDOW_MS && !["done", "cancelled"].includes(t.status)) {
    return h("span", { class: "badge ok" }, `checked in here ${new Date(v.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`);
  }
  return h("span", { class: "badge warn" }, "check-in needed");
}

function taskItem(t) {
  return h(
    "li",
    { class: "task", dataset: { id: t.id, status: t.status } },
    h("h3", {}, t.title),
    h(
      "div",
      { class: "meta" },
      [t.place_name || "", t.distance_m !== null && t.distance_m !== undefined ? fmtDistance(t.distance_m) + " away" : "", `${t.priority} priority`, t.due_at ? `due ${fmtTime(t.due_at)}` : ""].filter(Boolean).join(" · "),
    ),
    t.description ? h("p", {}, t.description) : null,
    h("span", { class: `badge ${t.status}` }, t.status.replace("_", " ")),
    t.overdue ? [" ", h("span", { class: "badge err" }, "overdue")] : null,
    " ",
    visitBadge(t),
    " ",
    ...taskActions(t),
    h("div", { class: "completion" }),
  );
}

async function moveTask(t, to) {
  clearStatus();
  try {
    await api.patch(`/v1/tasks/${t.id}`, { status: to });
    announce(status, `“${t.title}”: ${to.replace("_", " ")}.`, "ok");
  } catch (err) {
    announce(status, err.message, "error");
  }
  await loadTasks();
}

// ---------------------------------------------------------------- completing a task
const PHOTO_TYPES = ["image/jpeg", "image/png", "image/webp"];
const PHOTO_MAX_BYTES = 5 * 1024 * 1024;
const MAX_PHOTOS = 3;

function openCompletion(t) {
  const item = document.querySelector(`#task-list li[data-id="${t.id}"]`);
  const slot = item && item.querySelector(".completion");
  if (!slot) return;
  const noteId = `note-${t.id}`;
  const photosId = `photos-${t.id}`;
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "complete-form", "aria-label": `Complete ${t.title}` },
    h("label", { for: noteId }, "Note (optional)"),
    h("textarea", { id: noteId, name: "note", rows: 2, maxlength: 1000 }),
    h("label", { for: photosId }, `Photos (up to ${MAX_PHOTOS}: JPEG, PNG or WebP, 5 MB each)`),
    h("input", { id: photosId, name: "photos", type: "file", accept: PHOTO_TYPES.join(","), multiple: true }),
    h("button", { type: "submit" }, "Mark done"),
    " ",
    h("button", { type: "button", class: "secondary", onclick: () => slot.replaceChildren() }, "Not yet"),
    error,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    completeTask(t, form, error);
  });
  slot.replaceChildren(form);
  form.querySelector("textarea").focus();
}

function photoProblem(files) {
  if (files.length > MAX_PHOTOS) return `Choose at most ${MAX_PHOTOS} photos.`;
  for (const f of files) {
    if (!PHOTO_TYPES.includes(f.type)) return `“${f.name}” is not a JPEG, PNG or WebP photo.`;
    if (f.size > PHOTO_MAX_BYTES) return `“${f.name}” is larger than 5 MB.`;
  }
  return null;
}

async function completeTask(t, form, error) {
  clearStatus();
  error.textContent = "";
  const files = [...form.photos.files];
  const problem = photoProblem(files);
  if (problem) {
    error.textContent = problem;
    return;
  }
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    for (const [i, file] of files.entries()) {
      submit.textContent = `Sending photo ${i + 1} of ${files.length}…`;
      await api.upload(`/v1/tasks/${t.id}/photos`, file);
    }
    if (files.length) {
      form.photos.value = ""; // sent: a retry (e.g. after checking in) does not send them again
      form.append(h("p", { class: "muted small" }, `${files.length} photo(s) sent.`));
    }
    const note = form.note.value.trim();
    await api.patch(`/v1/tasks/${t.id}`, note ? { status: "done", note } : { status: "done" });
    announce(status, `“${t.title}” is done${files.length ? ` with ${files.length} photo(s)` : ""}.`, "ok");
    await loadTasks();
  } catch (err) {
    error.textContent = err instanceof ApiError && err.problem.type && err.problem.type.endsWith("/visit-required")
      ? `Check in at ${t.place_name || "the place"} first: a check-in in the last ${err.problem.visit_window_min || 120} minutes counts as your visit.`
      : err.message;
    submit.disabled = false;
    submit.textContent = "Mark done";
  }
}

async function sortTasksHere() {
  try {
    state.lastFix = fixOf(await position());
    await loadTasks(state.lastFix);
  } catch (err) {
    announce(status, err.message, "error");
  }
}

// ---------------------------------------------------------------- field worker shift
// Located only on shift (docs/tasks.md, "Shifts"): the worker starts and ends an ad-hoc shift
// and pauses tracking here; the server refuses their fixes off shift (409 off-shift).
const SHIFT_REASONS = {
  paused: "Tracking is paused: your location is not taken.",
  "ad-hoc-shift": "On shift (a shift you started): your location is taken.",
  shift: "On shift: your location is taken.",
  "no-shift-set": "No shift hours set: your location is taken while you share it.",
  "outside-shift": "Off shift: your location is not taken.",
};

async function loadTracking() {
  const [t, periods] = await Promise.all([
    api.get("/v1/me/tracking"),
    api.get("/v1/me/shifts?limit=5"),
  ]);
  let text = SHIFT_REASONS[t.reason] || "";
  if (t.adhoc_shift) text += ` Your shift ends by itself at ${fmtTime(t.adhoc_shift.ends_by)}.`;
  $("shift-state").textContent = text;
  $("shift-start").hidden = Boolean(t.adhoc_shift);
  $("shift-end").hidden = !t.adhoc_shift;
  $("tracking-pause").hidden = Boolean(t.paused_since);
  $("tracking-resume").hidden = !t.paused_since;
  $("shift-list").replaceChildren(
    ...periods.items.map((p) =>
      h(
        "li",
        {},
        `${p.kind === "shift" ? "Shift" : "Pause"}: ${fmtTime(p.started_at)} – `,
        p.open ? "now" : `${fmtTime(p.ended_at)}${p.end_reason === "auto" ? " (ended by itself)" : ""}`,
      ),
    ),
  );
}

async function shiftAction(path, done, focus) {
  try {
    await api.post(path, {});
    await loadTracking();
    announce(status, done, "ok");
    $(focus).focus(); // the button that undoes it
  } catch (err) {
    announce(status, err.message, "error");
  }
}

async function exportWorkData() {
  try {
    const data = await api.get("/v1/users/me/export");
    const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
    const link = h("a", { href: URL.createObjectURL(blob), download: "hereabouts-my-work-data.json" });
    link.click();
    URL.revokeObjectURL(link.href);
    announce(status, "Your data was downloaded (hereabouts-my-work-data.json).", "ok");
  } catch (err) {
    announce(status, err.message, "error");
  }
}

// ---------------------------------------------------------------- privacy (residents)
async function exportData() {
  try {
    const data = await api.get("/v1/me/export");
    const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
    const link = h("a", { href: URL.createObjectURL(blob), download: "hereabouts-my-data.json" });
    link.click();
    URL.revokeObjectURL(link.href);
    announce(status, "Your data was downloaded (hereabouts-my-data.json).", "ok");
  } catch (err) {
    announce(status, err.message, "error");
  }
}

async function eraseData() {
  if (!window.confirm("Delete everything held about this device? This cannot be undone.")) return;
  $("signout-card").hidden = true;
  try {
    await api.delete("/v1/me");
    const reg = state.registration;
    const sub = reg && (await reg.pushManager.getSubscription());
    if (sub) await sub.unsubscribe();
    stopBackground();
    api.token = null;
    state.me = null;
    await kv.delete("token").catch(() => undefined);
    showWelcome("Everything held about this device has been deleted.");
  } catch (err) {
    announce(status, err.message, "error");
  }
}

// ---------------------------------------------------------------- wiring
// A status message belongs to the action that caused it: the next one clears it first.
document.addEventListener("click", (e) => {
  if (e.target instanceof Element && e.target.closest("button")) clearStatus();
}, true);
document.addEventListener("submit", clearStatus, true);
$("start-resident").addEventListener("click", startResident);
$("worker-form").addEventListener("submit", signInWorker);
$("signout").addEventListener("click", askBeforeSignOut);
$("signout-export").addEventListener("click", exportData);
$("signout-erase").addEventListener("click", eraseData);
$("signout-keep").addEventListener("click", signOut);
$("signout-cancel").addEventListener("click", () => {
  $("signout-card").hidden = true;
  $("signout").focus();
});
$("export-data").addEventListener("click", exportData);
$("erase-data").addEventListener("click", eraseData);
$("checkin").addEventListener("click", checkIn);
$("notify-yes").addEventListener("click", acceptNotifications);
$("notify-no").addEventListener("click", () => {
  localStorage.setItem("hereabouts.app.notify-declined", "1");
  $("notify-card").hidden = true;
});
$("bg-toggle").addEventListener("change", toggleBackground);
$("prefs-form").addEventListener("submit", savePreferences);
$("inbox-refresh").addEventListener("click", loadInbox);
$("tasks-refresh").addEventListener("click", sortTasksHere);
$("shift-start").addEventListener("click", () => shiftAction("/v1/me/shift/start", "Shift started.", "shift-end"));
$("shift-end").addEventListener("click", () => shiftAction("/v1/me/shift/end", "Shift ended.", "shift-start"));
$("tracking-pause").addEventListener("click", () => shiftAction("/v1/me/tracking/pause", "Tracking paused.", "tracking-resume"));
$("tracking-resume").addEventListener("click", () => shiftAction("/v1/me/tracking/resume", "Tracking resumed.", "tracking-pause"));
$("staff-export").addEventListener("click", exportWorkData);
$("help").addEventListener("click", needHelp);
window.addEventListener("hashchange", () => {
  if (state.me && isWorker() && EXTEND_ROUTE.test(window.location.hash)) return extendFromHash();
  if (state.me || !detailRoute(window.location.hash)) showDetail(api, $("detail"), window.location.hash);
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") flushPings();
  else if (state.me) loadInbox(); // back to the app: show what arrived meanwhile
});
// While the app is open and visible the inbox also refreshes itself (a push may not reach a
// browser without a push service); the service worker's message refreshes it at once.
setInterval(() => {
  if (state.me && document.visibilityState === "visible") loadInbox();
}, 60000);

boot();
