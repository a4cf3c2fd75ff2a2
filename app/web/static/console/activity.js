// The console's Activity tab: every kind of event (GET /v1/activity) in plain words, filterable
// by kind and place, older pages on demand; presence events from the live stream join at once and
// the first page is fetched again every 15 s while the tab is shown (tasks, redemptions,
// broadcasts and reports are not on the stream). Kept apart from console.js, which calls
// `startActivity` after sign-in and hands stream messages to `liveActivity`.
import { ApiError, fmtTime, h } from "/static/common/api.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 15000;

let api = null;
let places = () => [];
let fail = () => {};
let items = [];
let cursor = null;
let timer = null;
let latest = 0; // the newest request: an older answer (other filters) arriving late is dropped

const KIND_LABELS = {
  presence: "presence",
  checkin: "check-in",
  task: "task",
  redemption: "redemption",
  broadcast: "broadcast",
  report: "report",
};

const PRESENCE_WORDS = {
  "place.entered": "arrived at",
  "place.exited": "left",
  "place.dwelled": "stayed at",
  "place.nearby": "passed near",
  "place.passed_through": "passed through",
  "checkin.created": "checked in at",
};
// the live stream sends presence_events rows: their type → the public type
const PRESENCE_TYPES = {
  enter: "place.entered",
  exit: "place.exited",
  dwell: "place.dwelled",
  nearby: "place.nearby",
  passed_through: "place.passed_through",
  checkin: "checkin.created",
};

function placeName(id) {
  const place = places().find((p) => p.id === id);
  return place ? place.properties.name : "a place no longer listed";
}

// Who: residents are never named; staff by name (or role when their account is gone).
function who(actor, capital = true) {
  if (!actor) return capital ? "Someone" : "someone";
  if (actor.kind === "resident") return capital ? "A resident" : "a resident";
  if (actor.name) return actor.name;
  const role = actor.role === "field_worker" ? "field worker" : "staff member";
  return capital ? `A ${role}` : `a ${role}`;
}

const quoted = (text) => `“${text}”`;

function taskWords(ev) {
  const title = quoted(ev.data.title || "untitled");
  if (!ev.actor) {
    // no person: the service itself (an Open311 report becomes a task by itself)
    return ev.type === "task.created"
      ? `Task ${title} was created automatically`
      : `Task ${title} is now ${(ev.data.to_status || "changed").replace("_", " ")}`;
  }
  const actor = who(ev.actor);
  switch (ev.type) {
    case "task.created":
      return `${actor} created task ${title}`;
    case "task.assigned":
      return ev.actor && ev.actor.role === "field_worker" ? `${actor} took task ${title}` : `${actor} assigned task ${title}`;
    case "task.in_progress":
      return `${actor} started task ${title}`;
    case "task.done":
      return `${actor} completed task ${title}`;
    case "task.cancelled":
      return `${actor} cancelled task ${title}`;
    case "task.reopened":
      return `${actor} reopened task ${title}`;
    case "task.unassigned":
      return `${actor} handed task ${title} back to the pool`;
    default:
      return `${actor}: task ${title} is now ${ev.data.to_status || "changed"}`;
  }
}

// One sentence per event, in staff words.
export function sentence(ev) {
  const at = ev.geofence_id ? placeName(ev.geofence_id) : "";
  const where = at ? ` at ${at}` : "";
  switch (ev.kind) {
    case "presence":
    case "checkin": {
      const actor = ev.actor && ev.actor.kind === "staff" && !ev.actor.name ? "A field worker" : who(ev.actor);
      return `${actor} ${PRESENCE_WORDS[ev.type] || ev.type} ${at}`.trim();
    }
    case "task":
      return taskWords(ev) + where;
    case "redemption":
      return `${who(ev.actor)} redeemed ${quoted(ev.data.offer_title || "an offer")}${where}`;
    case "broadcast": {
      const n = Number(ev.data.recipients || 0);
      const urgent = ev.data.safety_critical ? "safety message" : "broadcast";
      return `${who(ev.actor)} sent the ${urgent} ${quoted(ev.data.title || "")} to ${n} ${n === 1 ? "person" : "people"}${where}`;
    }
    case "report":
      return ev.data.duplicate_of
        ? `A report (${ev.data.service_code}) joined an open one${where}`
        : `A report (${ev.data.service_code}) was filed${where}`;
    default:
      return `${ev.type}${where}`;
  }
}

// Why a presence event or check-in fired (the recorded explanation), in one line.
function explain(ev) {
  const why = ev.explanation || {};
  const parts = [];
  const m = (v) => `${Math.round(v)} m`;
  if (why.reason) parts.push(why.reason);
  if (ev.kind === "checkin" || why.resolution) {
    if (why.inside) parts.push("inside the place");
    else if (typeof why.distance_m === "number") parts.push(`${m(why.distance_m)} from it (counts within ${m(why.reach_m || 0)})`);
    if (why.resolution) parts.push(why.resolution === "named" ? "place chosen by the person" : "nearest place");
    if (why.place_open === false) parts.push("outside opening hours");
  } else if (ev.kind === "presence") {
    if (typeof why.depth_m === "number" && why.depth_m > 0) parts.push(`${m(why.depth_m)} inside`);
    else if (typeof why.distance_m === "number") parts.push(`${m(why.distance_m)} away`);
    if (typeof why.margin_m === "number") parts.push(`margin ${m(why.margin_m)}`);
  } else if (ev.kind === "task" && ev.data.from_status) {
    parts.push(`was ${ev.data.from_status.replace("_", " ")}`);
  }
  if (typeof why.accuracy_m === "number") parts.push(`accuracy ±${m(why.accuracy_m)}`);
  if (why.implausible_jump || why.jump) parts.push("implausible jump: flagged for review");
  return parts.join(" · ");
}

function row(ev) {
  return h(
    "li",
    { dataset: { kind: ev.kind, type: ev.type } },
    h("span", { class: "badge ok" }, KIND_LABELS[ev.kind] || ev.kind),
    h("span", { class: "what" }, sentence(ev), " ", h("time", { class: "muted small", datetime: ev.occurred_at }, fmtTime(ev.occurred_at))),
    h("span", { class: "why" }, explain(ev)),
  );
}

function render() {
  const list = $("activity-list");
  list.replaceChildren(...items.map(row));
  if (!items.length) list.append(h("li", { class: "muted" }, "Nothing yet: events appear here as they happen."));
  $("activity-more").hidden = !cursor;
}

function query(after = null) {
  const q = new URLSearchParams({ limit: "50" });
  const kind = $("activity-kind").value;
  const place = $("activity-place").value;
  if (kind) q.set("kind", kind);
  if (place) q.set("geofence_id", place);
  if (after) q.set("cursor", after);
  return `/v1/activity?${q}`;
}

const newestFirst = (a, b) => Date.parse(b.occurred_at) - Date.parse(a.occurred_at) || (b.id < a.id ? -1 : b.id > a.id ? 1 : 0);

function merge(more) {
  const seen = new Set(items.map((i) => i.id));
  items = items.concat(more.filter((i) => !seen.has(i.id))).sort(newestFirst);
}

// The first page again (filters changed: from scratch; a refresh: newer items join the list).
export async function loadActivity(fresh = true) {
  const mine = ++latest;
  try {
    const page = await api.get(query());
    if (mine !== latest) return;
    if (fresh) {
      items = page.items || [];
      cursor = page.next_cursor;
    } else {
      merge(page.items || []);
    }
    render();
  } catch (err) {
    if (mine !== latest) return;
    render();
    if (!(err instanceof ApiError && err.status === 404)) fail(err);
  }
}

async function loadOlder() {
  if (!cursor) return;
  const mine = ++latest;
  try {
    const page = await api.get(query(cursor));
    if (mine !== latest) return;
    merge(page.items || []);
    cursor = page.next_cursor;
    render();
  } catch (err) {
    fail(err);
  }
}

export function fillActivityPlaces(features) {
  const select = $("activity-place");
  const chosen = select.value;
  select.replaceChildren(
    h("option", { value: "" }, "Every place"),
    ...features.map((p) => h("option", { value: p.id }, p.properties.name)),
  );
  if (features.some((p) => p.id === chosen)) select.value = chosen;
}

// A message of the live stream (a presence event row): shown at once if the filters allow it.
export function liveActivity(obj) {
  if (!obj || typeof obj !== "object") return;
  const rows = Array.isArray(obj.events) ? obj.events : [obj.event || obj.data || obj].flat();
  const kindFilter = $("activity-kind").value;
  const placeFilter = $("activity-place").value;
  const fresh = [];
  for (const ev of rows) {
    if (!ev || !ev.id || !PRESENCE_TYPES[ev.type] || ev.suppressed_reason) continue;
    const kind = ev.type === "checkin" ? "checkin" : "presence";
    if ((kindFilter && kindFilter !== kind) || (placeFilter && placeFilter !== ev.geofence_id)) continue;
    fresh.push({
      id: ev.id,
      kind,
      type: PRESENCE_TYPES[ev.type],
      occurred_at: ev.occurred_at,
      geofence_id: ev.geofence_id,
      actor: ev.device_id ? { kind: "resident", id: ev.device_id } : ev.staff_user_id ? { kind: "staff", id: ev.staff_user_id } : null,
      data: { event: ev.type },
      explanation: ev.explanation || {},
    });
  }
  if (!fresh.length) return;
  merge(fresh);
  render();
}

export function startActivity(theApi, getPlaces, onError) {
  api = theApi;
  places = getPlaces;
  fail = onError;
  if (!timer) {
    $("activity-kind").addEventListener("change", () => loadActivity(true));
    $("activity-place").addEventListener("change", () => loadActivity(true));
    $("activity-more").addEventListener("click", loadOlder);
    timer = setInterval(() => {
      if (api.token && !$("panel-activity").hidden && document.visibilityState === "visible") loadActivity(false);
    }, REFRESH_MS);
  }
  fillActivityPlaces(places());
  return loadActivity(true);
}
