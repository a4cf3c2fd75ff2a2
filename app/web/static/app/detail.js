// Detail pages of the PWA (issue 21): an offer for residents, a task for field workers, reached
// from inbox entries and push clicks as /app/#offer/<id> and /app/#task/<id>. Every outcome is a
// page: a missing, ended or foreign item gets a sentence, never a raw error.
import { ApiError, fmtTime, h } from "/static/common/api.js";

const ROUTE = /^#(offer|task)\/([0-9a-f-]{36})$/i;

export function detailRoute(hash) {
  const m = ROUTE.exec(hash || "");
  return m ? { kind: m[1].toLowerCase(), id: m[2] } : null;
}

// Where an inbox entry or a push click should go: app routes stay in the app.
export function openTarget(url) {
  if (!url) return;
  if (url.startsWith("/app/#")) window.location.hash = url.slice("/app/".length);
  else if (url.startsWith("/")) window.location.href = url;
  else window.open(url, "_blank", "noopener");
}

const back = () => h("p", {}, h("a", { href: "#", class: "back" }, "Back to the app"));

function offerView(o) {
  const when = [];
  if (o.valid_from) when.push(`from ${fmtTime(o.valid_from)}`);
  if (o.valid_until) when.push(`until ${fmtTime(o.valid_until)}`);
  if (o.time_window) when.push(`daily ${o.time_window.start.slice(0, 5)}–${o.time_window.end.slice(0, 5)}`);
  return [
    h("h2", { id: "detail-title" }, o.title),
    h("p", {}, o.body),
    when.length ? h("p", { class: "muted small" }, `Valid ${when.join(", ")}`) : null,
    o.url ? h("p", {}, h("a", { href: o.url, target: "_blank", rel: "noopener" }, "More about this offer")) : null,
    back(),
  ];
}

function taskView(t) {
  return [
    h("h2", { id: "detail-title" }, t.title),
    t.description ? h("p", {}, t.description) : null,
    h("p", { class: "muted small" }, `${t.priority} priority · ${t.status.replace(/_/g, " ")}${t.due_at ? ` · due ${fmtTime(t.due_at)}` : ""}`),
    back(),
  ];
}

export async function showDetail(api, box, hash) {
  const route = detailRoute(hash);
  if (!route) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  box.hidden = false;
  box.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  const what = route.kind === "offer" ? "offer" : "task";
  try {
    const item = await api.get(`/v1/${what}s/${route.id}`);
    const parts = route.kind === "offer" ? offerView(item) : taskView(item);
    box.replaceChildren(...parts.filter((part) => part !== null));
  } catch (err) {
    const gone = err instanceof ApiError && [403, 404].includes(err.status);
    box.replaceChildren(
      h("h2", { id: "detail-title" }, what === "offer" ? "Offer" : "Task"),
      h("p", { class: "detail-missing" }, gone
        ? (what === "offer" ? "This offer has ended or is no longer available." : "This task is not available to you.")
        : `We couldn't load it just now (${err.message}). Please try again.`),
      back(),
    );
  }
  box.scrollIntoView({ block: "start" });
}

// ---------------------------------------------------------------- redemption (issue 21)
// "Use this offer" asks first, in place; the answer is a short code with the time, shown by the
// button's place, to show at the desk (it works once). The app remembers it on this device, so a
// later check-in shows "Used on <date>" instead of the button.
const USED = "hereabouts.app.used.";

export function usedOn(offerId) {
  try {
    return JSON.parse(localStorage.getItem(USED + offerId) || "null");
  } catch {
    return null;
  }
}

function codeCard(used) {
  return h(
    "div",
    { class: "redeemed", role: "status" },
    h("p", {}, `Used on ${fmtTime(used.at)}. Show this code at the desk:`),
    h("p", { class: "code" }, used.code),
  );
}

export function redeemControl(api, offer, place) {
  const used = usedOn(offer.id);
  if (used) return codeCard(used);
  const box = h("div", { class: "redeem" });
  const error = h("p", { class: "error", role: "alert" });
  const ask = () => {
    box.replaceChildren(
      h("p", {}, "Use this offer now? Staff will check the code once."),
      h("button", { type: "button", class: "small", onclick: confirm }, "Yes, use it"),
      " ",
      h("button", { type: "button", class: "small secondary", onclick: reset }, "Not yet"),
      error,
    );
  };
  const reset = () => box.replaceChildren(h("button", { type: "button", class: "small", onclick: ask }, "Use this offer"));
  async function confirm() {
    try {
      const r = await api.post(`/v1/offers/${offer.id}/redeem`, place ? { geofence_id: place.id } : {});
      const record = { code: r.code, at: r.redeemed_at };
      localStorage.setItem(USED + offer.id, JSON.stringify(record));
      box.replaceChildren(codeCard(record));
    } catch (err) {
      error.textContent = err.message; // beside the button, not at the top of the page
    }
  }
  reset();
  return box;
}
