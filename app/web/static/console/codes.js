// Staff console, "Offers" tab: check a resident's redemption code at the desk and accept it
// (issue 21). A code works once, only in its organisation, and only while the offer is valid;
// checking changes nothing, "Accept" uses it. Loaded beside console.js (same token).
import { Api, fmtTime, h } from "/static/common/api.js";

const api = new Api(window.sessionStorage, "hereabouts.console.token");
const $ = (id) => document.getElementById(id);

function show(...nodes) {
  $("code-result").replaceChildren(...nodes.filter((n) => n !== null));
}

function describe(c) {
  const lines = [h("p", {}, h("strong", {}, c.offer_title), ` · redeemed ${fmtTime(c.redeemed_at)}`)];
  if (c.used_at) lines.push(h("p", { class: "badge" }, `Already used on ${fmtTime(c.used_at)}.`));
  else if (!c.valid_now) lines.push(h("p", { class: "error" }, "The offer is no longer valid: do not accept it."));
  return lines;
}

async function accept(code) {
  try {
    const c = await api.post(`/v1/offers/codes/${encodeURIComponent(code)}/use`, undefined);
    show(h("p", { class: "badge ok", role: "status" }, `Accepted: ${c.offer_title} (${fmtTime(c.used_at)}).`));
  } catch (err) {
    show(h("p", { class: "error", role: "alert" }, err.message));
  }
}

async function check(event) {
  event.preventDefault();
  const code = $("code-input").value.trim();
  if (!code) return;
  try {
    const c = await api.get(`/v1/offers/codes/${encodeURIComponent(code)}`);
    show(
      ...describe(c),
      c.valid_now ? h("button", { type: "button", onclick: () => accept(c.code) }, `Accept ${c.code}`) : null,
    );
  } catch (err) {
    show(h("p", { class: "error", role: "alert" }, err.message));
  }
}

$("code-form").addEventListener("submit", check);
