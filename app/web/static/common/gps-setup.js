// "Track with a GPS app": pick OwnTracks, Overland or Traccar Client, get an ingest key with the
// app's setup link and its QR code (made by the server), and revoke keys. Shared by the app
// (residents, field workers) and the console (a field worker scans the code with the phone).
import { ApiError, announce, fmtTime, h } from "/static/common/api.js";

const APPS = [
  { value: "owntracks", name: "OwnTracks", where: "iPhone and Android" },
  { value: "overland", name: "Overland", where: "iPhone" },
  { value: "traccar", name: "Traccar Client", where: "Android and iPhone" },
];
const NOTES = {
  owntracks: "On Android, first allow it once in OwnTracks: Preferences → Advanced → Remote configuration (\"Allow configuration by URI\").",
  overland: "Overland opens and saves the receiver endpoint and access token.",
  traccar: "Traccar Client asks to apply the settings; then start the service.",
};

export function mountGpsSetup(api, container, { status, heading = "h2", resident = false }) {
  const sub = heading === "h2" ? "h3" : "h4";
  const id = (s) => `gps-${s}`;
  const result = h("div", { id: id("result"), "aria-live": "polite", hidden: true });
  const list = h("ul", { id: id("keys"), class: "list" });
  const error = h("p", { id: id("error"), class: "error", role: "alert" });
  const form = h(
    "form",
    { id: id("form"), onsubmit: create },
    h("fieldset", {},
      h("legend", {}, "Your GPS app"),
      APPS.map((a, i) => h("label", { class: "inline", for: id(`app-${a.value}`) },
        h("input", { type: "radio", name: "app", id: id(`app-${a.value}`), value: a.value, checked: i === 0 }),
        `${a.name} (${a.where})`))),
    h("label", { for: id("label") }, "Name of the phone (optional)"),
    h("input", { id: id("label"), name: "label", maxlength: 100, autocomplete: "off" }),
    h("button", { type: "submit" }, "Create setup link"),
    error,
  );
  container.replaceChildren(
    h(heading, { id: id("title") }, "Track with a GPS app"),
    h("p", { class: "muted small" },
      "A tracking app on your phone can send your location while this page is closed. Choose the app, then tap the link on the phone or scan the code with it.",
      resident ? " Its locations are accepted only while \"Share location in the background\" is on." : ""),
    form,
    result,
    h(sub, { id: id("keys-title") }, "Apps that can send your location"),
    list,
  );
  container.setAttribute("aria-labelledby", id("title"));

  async function create(event) {
    event.preventDefault();
    error.textContent = "";
    const app = form.app.value;
    const label = form.label.value.trim();
    try {
      const created = await api.post("/v1/me/ingest-keys", label ? { app, label } : { app });
      form.label.value = "";
      show(created);
      await load();
      announce(status, `Setup link for ${created.label} ready: it is shown only now.`, "ok");
    } catch (err) {
      error.textContent = err.message;
    }
  }

  function show(created) {
    const s = created.setup;
    const app = APPS.find((a) => a.value === s.app);
    const items = [
      h(sub, { id: id("result-title"), tabindex: "-1" }, `Set up ${app.name}`),
      h("p", {}, `On the phone with ${app.name} installed: tap the link, or scan the code with the phone's camera. ${NOTES[s.app]}`),
      h("p", {}, h("a", { id: id("link"), class: "button", href: s.link }, `Open in ${app.name}`)),
      h("img", { id: id("qr"), src: s.qr_svg, alt: `QR code of the ${app.name} setup link`, width: 264, height: 264 }),
      h("label", { for: id("link-text") }, "The setup link (to send to the phone yourself)"),
      h("input", { id: id("link-text"), readonly: true, value: s.link }),
      h("details", {},
        h("summary", {}, "Enter it in the app by hand"),
        h("dl", { id: id("settings") }, s.settings.flatMap((x) => [h("dt", {}, x.name), h("dd", {}, h("code", {}, x.value))]))),
      h("p", { class: "muted small" }, "The key in this link is shown only now: if you lose it, create a new one and revoke this one."),
    ];
    if (s.config) {
      const blob = new Blob([JSON.stringify(s.config, null, 2)], { type: "application/json" });
      items.splice(3, 0, h("p", {}, h("a", { id: id("otrc"), href: URL.createObjectURL(blob), download: "hereabouts.otrc" }, "Download the configuration file (.otrc)")));
    }
    result.replaceChildren(...items);
    result.dataset.keyId = created.id;
    result.hidden = false;
    result.querySelector(`#${id("result-title")}`).focus();
  }

  async function revoke(key) {
    try {
      await api.delete(`/v1/me/ingest-keys/${key.id}`);
      if (result.dataset.keyId === key.id) {
        result.hidden = true;
        result.replaceChildren();
      }
      await load();
      announce(status, `Revoked: ${key.label || "that app"} can no longer send your location.`, "ok");
    } catch (err) {
      announce(status, err.message, "error");
    }
  }

  // true once the list is shown; false for an account that has no ingest keys (admins, editors)
  async function load() {
    try {
      const keys = await api.get("/v1/me/ingest-keys");
      list.replaceChildren(
        ...(keys.length
          ? keys.map((k) => h("li", { class: "gps-key" },
              h("span", {}, `${k.label || "Unnamed"} · set up ${fmtTime(k.created_at)} `),
              h("button", { type: "button", class: "danger small", "aria-label": `Revoke ${k.label || "this key"}`, onclick: () => revoke(k) }, "Revoke")))
          : [h("li", { class: "muted" }, "None yet.")]),
      );
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) return false;
      if (!(err instanceof ApiError)) console.error(err);
      announce(status, err.message, "error");
      return true;
    }
  }

  return load();
}
