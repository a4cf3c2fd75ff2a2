// A small fetch wrapper shared by the console and the PWA: bearer token, JSON in/out and
// problem+json errors turned into readable messages.

export class ApiError extends Error {
  constructor(status, problem) {
    super(describeProblem(status, problem));
    this.status = status;
    this.problem = problem || {};
  }

  // The message in the words of a form: API field names become the labels the form shows.
  describe(labels) {
    return describeProblem(this.status, this.problem, labels);
  }
}

// A field path from the API ("body.properties.opening_hours.weekly.mon", "geofence_id") named by
// the form's label for its most specific known part, else left as it is.
function fieldName(field, labels) {
  if (!field) return "";
  if (!labels) return field;
  const parts = String(field).split(".");
  for (let i = parts.length - 1; i >= 0; i -= 1) {
    if (Object.hasOwn(labels, parts[i])) return labels[parts[i]];
  }
  return field;
}

export function describeProblem(status, problem, labels = null) {
  if (!problem || typeof problem !== "object") return `Request failed (${status})`;
  let text = problem.detail || problem.title || `Request failed (${status})`;
  const errors = problem.errors || problem.invalid_params || [];
  if (Array.isArray(errors) && errors.length) {
    const parts = errors.slice(0, 5).map((e) => {
      const raw = e.field || e.name || (Array.isArray(e.loc) ? e.loc.slice(1).join(".") : "");
      const where = fieldName(raw, labels);
      const why = e.reason || e.msg || e.message || "";
      return where ? `${where}: ${why}` : why;
    });
    // "Invalid fields: body, title" names the API's fields; the list below names the form's.
    if (labels && /^Invalid fields:/.test(text)) text = "Please check";
    text += " — " + parts.join("; ");
  } else if (labels && problem.field && fieldName(problem.field, labels) !== problem.field) {
    text = `${fieldName(problem.field, labels)}: ${text}`;
  }
  return text;
}

// Control name → the text of its label (without a trailing "(…)" hint), for `describe`.
export function formLabels(form, extra = {}) {
  const labels = {};
  for (const el of form.elements) {
    if (!el.name || !el.labels || !el.labels.length) continue;
    const text = el.labels[0].textContent.replace(/\s*\(.*\)\s*$/, "").trim();
    if (text && !labels[el.name]) labels[el.name] = text;
  }
  return { ...labels, ...extra };
}

export class Api {
  constructor(storage, key) {
    this.storage = storage;
    this.key = key;
    this.onUnauthorized = null;
  }

  get token() {
    return this.storage.getItem(this.key);
  }

  set token(value) {
    if (value) this.storage.setItem(this.key, value);
    else this.storage.removeItem(this.key);
  }

  headers(extra = {}) {
    const h = { Accept: "application/json", ...extra };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  async request(method, path, { body, form, blob, accept, signal } = {}) {
    const init = { method, headers: this.headers(accept ? { Accept: accept } : {}), signal };
    if (blob) {
      init.body = blob;
      init.headers["Content-Type"] = blob.type || "application/octet-stream";
    } else if (form) {
      init.body = new URLSearchParams(form);
      init.headers["Content-Type"] = "application/x-www-form-urlencoded";
    } else if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const res = await fetch(path, init);
    if (res.status === 204) return null;
    const type = res.headers.get("content-type") || "";
    const data = type.includes("json") ? await res.json().catch(() => null) : await res.text();
    if (!res.ok) {
      if (res.status === 401 && this.onUnauthorized) this.onUnauthorized();
      throw new ApiError(res.status, data);
    }
    return data;
  }

  get(path, opts) {
    return this.request("GET", path, opts);
  }
  post(path, body, opts = {}) {
    return this.request("POST", path, { ...opts, body });
  }
  patch(path, body) {
    return this.request("PATCH", path, { body });
  }
  put(path, body) {
    return this.request("PUT", path, { body });
  }
  delete(path) {
    return this.request("DELETE", path);
  }
  // A file as the raw request body (a task's completion photo).
  upload(path, blob) {
    return this.request("POST", path, { blob });
  }

  async login(email, password) {
    const data = await this.request("POST", "/v1/auth/token", {
      form: { username: email, password },
    });
    this.token = data.access_token;
    return data;
  }

  // Every page of a keyset-paginated list (items + next_cursor), up to `max` rows.
  async all(path, max = 2000, accept = undefined) {
    const out = [];
    let cursor = null;
    do {
      const sep = path.includes("?") ? "&" : "?";
      const url = `${path}${sep}limit=500` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
      const page = await this.get(url, accept ? { accept } : undefined);
      const items = Array.isArray(page) ? page : page.items || page.features || [];
      out.push(...items);
      cursor = Array.isArray(page) ? null : page.next_cursor;
    } while (cursor && out.length < max);
    return out;
  }

  // Server-sent events over fetch (EventSource cannot send an Authorization header).
  async stream(path, onEvent, signal, lastEventId = null, onOpen = null) {
    const extra = { Accept: "text/event-stream" };
    if (lastEventId) extra["Last-Event-ID"] = lastEventId;
    const res = await fetch(path, {
      headers: this.headers(extra),
      signal,
      cache: "no-store",
    });
    if (!res.ok || !res.body) {
      const problem = await res.json().catch(() => null);
      throw new ApiError(res.status, problem);
    }
    if (onOpen) onOpen();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n/g, "\n");
      let index;
      while ((index = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, index);
        buffer = buffer.slice(index + 2);
        const event = { event: "message", data: "", id: null };
        const data = [];
        for (const line of chunk.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") data.push(val);
          else if (field === "event") event.event = val;
          else if (field === "id") event.id = val;
        }
        if (!data.length) continue;
        event.data = data.join("\n");
        try {
          event.json = JSON.parse(event.data);
        } catch {
          event.json = null;
        }
        onEvent(event);
      }
    }
  }
}

// DOM helper: h("button", {class: "x", onclick: fn}, "text", child)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function fmtTime(value) {
  if (!value) return "—";
  const d = new Date(value);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
}

export function fmtDistance(m) {
  if (m === null || m === undefined) return "";
  return m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(1)} km`;
}

// <input type="datetime-local"> value ↔ RFC 3339 with the browser's offset.
export function localToIso(value) {
  if (!value) return null;
  return new Date(value).toISOString();
}

export function isoToLocal(value) {
  if (!value) return "";
  const d = new Date(value);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function announce(region, text, kind = "info") {
  if (!region) return;
  region.textContent = text;
  region.dataset.kind = kind;
}
