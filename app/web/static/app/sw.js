// Hereabouts service worker (scope /app/): shows pushed notifications, reports opens, and keeps
// the app shell available offline. The page stores the bearer token in IndexedDB for it.
"use strict";

const SHELL_CACHE = "hereabouts-shell-v1";
const SHELL = [
  "/app/",
  "/static/common/base.css",
  "/static/common/api.js",
  "/static/common/gps-setup.js",
  "/static/app/app.css",
  "/static/app/app.js",
  "/static/app/kv.js",
  "/static/app/icon.svg",
  "/static/app/icon-192.png",
];

function kvGet(key) {
  return new Promise((resolve) => {
    const open = indexedDB.open("hereabouts", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("kv");
    open.onerror = () => resolve(null);
    open.onsuccess = () => {
      const tx = open.result.transaction("kv", "readonly");
      const req = tx.objectStore("kv").get(key);
      req.onsuccess = () => resolve(req.result ?? null);
      req.onerror = () => resolve(null);
    };
  });
}

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(SHELL_CACHE)
      .then((cache) => cache.addAll(SHELL))
      .catch(() => undefined) // an incomplete cache must not block push handling
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== SHELL_CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

// Network first for the shell (so updates show at once), the cache only when offline.
// API calls (/v1/) are never cached: they are personal and must be fresh.
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!SHELL.includes(url.pathname)) return;
  event.respondWith(
    fetch(event.request)
      .then((res) => {
        const copy = res.clone();
        caches.open(SHELL_CACHE).then((c) => c.put(event.request, copy));
        return res;
      })
      .catch(() => caches.match(event.request).then((hit) => hit || Response.error())),
  );
});

// Payload (app.notifications): {id, kind, title, body, tag, url?, data?}
self.addEventListener("push", (event) => {
  let msg = {};
  if (event.data) {
    try {
      msg = event.data.json();
    } catch {
      msg = { body: event.data.text() };
    }
  }
  const title = msg.title || "Hereabouts";
  const options = {
    body: msg.body || "",
    tag: msg.tag || undefined,
    renotify: Boolean(msg.tag),
    icon: "/static/app/icon-192.png",
    badge: "/static/app/icon-192.png",
    data: { id: msg.id || null, url: msg.url || null, kind: msg.kind || "message" },
  };
  // Lone working's "Are you OK? Tap to extend": it stays until answered, and the tap extends
  if (msg.kind === "safety.prompt" && msg.data && msg.data.visit_id) {
    options.data.visit = msg.data.visit_id;
    options.requireInteraction = true;
    options.actions = [{ action: "extend", title: "I'm OK: 30 minutes more" }];
  }
  // Open pages refresh their inbox whether or not the notification can be shown (permission
  // withdrawn, or a page not yet controlled by this worker).
  const tellPages = self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((clients) => {
    for (const c of clients) c.postMessage({ type: "push", notification: msg });
  });
  event.waitUntil(Promise.allSettled([self.registration.showNotification(title, options), tellPages]));
});

async function reportOpened(id) {
  if (!id) return;
  const token = await kvGet("token");
  if (!token) return;
  try {
    await fetch(`/v1/me/notifications/${encodeURIComponent(id)}/opened`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
    });
  } catch {
    // offline: the open is simply not counted
  }
}

async function focusOrOpen(url) {
  const target = url || "/app/";
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const w of windows) {
    if (new URL(w.url).pathname.startsWith("/app/") && !url) return w.focus();
  }
  return self.clients.openWindow(target);
}

// The answer to "Are you OK?": extend the visit from here, so it works with the app closed.
async function extendVisit(visitId) {
  const token = await kvGet("token");
  if (!token) return false;
  try {
    const res = await fetch(`/v1/me/visits/${encodeURIComponent(visitId)}/extend`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ minutes: 30 }),
    });
    return res.ok;
  } catch {
    return false; // offline: the app opened at /app/#extend=… tries again
  }
}

// Opening a notification counts as "opened" for the inbox and the offer funnel, then shows it.
// A lone-working prompt's tap extends the visit first (then opens the app, where it shows).
function openNotification(notification) {
  const data = notification.data || {};
  notification.close();
  if (data.kind === "safety.prompt" && data.visit) {
    const answer = extendVisit(data.visit).then((ok) => focusOrOpen(ok ? "/app/" : data.url));
    return Promise.all([reportOpened(data.id), answer.catch(() => undefined)]);
  }
  return Promise.all([reportOpened(data.id), focusOrOpen(data.url).catch(() => undefined)]);
}
self.hereaboutsOpenNotification = openNotification; // lets tests drive the click path

self.addEventListener("notificationclick", (event) => {
  event.waitUntil(openNotification(event.notification));
});
