// A tiny IndexedDB key-value store shared with the service worker (which has no localStorage).
function withStore(mode, fn) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("hereabouts", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("kv");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction("kv", mode);
      const req = fn(tx.objectStore("kv"));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
    };
  });
}

export const kv = {
  get: (key) => withStore("readonly", (s) => s.get(key)),
  set: (key, value) => withStore("readwrite", (s) => s.put(value, key)),
  delete: (key) => withStore("readwrite", (s) => s.delete(key)),
};
