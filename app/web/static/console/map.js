// The places map: Leaflet + Leaflet-Geoman (vendored). Works without tiles: the map container
// has a plain grid background, and shapes are vector layers that need no network.

const DEFAULT_VIEW = { center: [51.5074, -0.1278], zoom: 15 };
const round6 = (n) => Math.round(n * 1e6) / 1e6;

function roundCoords(coords) {
  return Array.isArray(coords[0]) ? coords.map(roundCoords) : coords.map(round6);
}

// A Leaflet layer → {geometry, radius_m?, kind} in GeoJSON [lon, lat].
export function shapeOf(layer) {
  if (layer instanceof L.Circle) {
    const c = layer.getLatLng();
    return { kind: "circle", geometry: { type: "Point", coordinates: [round6(c.lng), round6(c.lat)] }, radius_m: Math.round(layer.getRadius() * 10) / 10 };
  }
  const geometry = layer.toGeoJSON(6).geometry;
  geometry.coordinates = roundCoords(geometry.coordinates);
  return { kind: geometry.type === "MultiPolygon" ? "multipolygon" : "polygon", geometry };
}

export class PlacesMap {
  constructor(element, options) {
    this.element = element;
    this.options = options;
    this.map = null;
    this.layers = new Map(); // place id → layer
    this.pendingFit = true;
    this.mode = null;
  }

  ready() {
    if (this.map) return;
    const map = L.map(this.element, { zoomControl: true, keyboard: true, attributionControl: true });
    this.map = map;
    map.setView(DEFAULT_VIEW.center, DEFAULT_VIEW.zoom);
    let failures = 0;
    const tiles = L.tileLayer(this.options.tileUrl, { maxZoom: 19, attribution: this.options.attribution, crossOrigin: false });
    tiles.on("tileerror", () => {
      failures += 1;
      if (failures === 1) this.options.onTilesUnavailable();
    });
    tiles.addTo(map);
    map.pm.setGlobalOptions({ snappable: true, allowSelfIntersection: false, continueDrawing: false });
    map.pm.setLang("en");
    // Geoman refuses a corner that would make the outline cross itself; say so where it happened
    // instead of silently dropping it (and then saving a triangle).
    map.on("click", (e) => this.checkCorner(e.latlng));
    map.on("pm:drawend", () => this.clearWarning());
    map.on("pm:create", ({ layer }) => {
      const shape = shapeOf(layer);
      this.options.onDraft({ ...shape, layer });
    });
    this.element.addEventListener("keydown", (e) => {
      if (e.key === "Escape") map.pm.disableDraw();
      if (e.key === "Enter" && map.pm.Draw.Polygon && map.pm.Draw.Polygon._enabled) {
        e.preventDefault();
        map.pm.Draw.Polygon._finishShape();
      }
    });
  }

  checkCorner(latlng) {
    const draw = this.map.pm.Draw.Polygon;
    this.clearWarning();
    if (!draw || !draw._enabled || !draw._doesSelfIntersect) return;
    const text = "Not added: this corner would make the outline cross itself. Choose another spot.";
    this.warning = L.tooltip({ permanent: true, direction: "top", className: "intersect-warning", offset: [0, -8] })
      .setLatLng(latlng)
      .setContent(text)
      .addTo(this.map);
    if (this.options.onIntersect) this.options.onIntersect(text);
  }

  clearWarning() {
    if (this.warning) this.warning.remove();
    this.warning = null;
  }

  invalidate() {
    if (this.map) setTimeout(() => this.map.invalidateSize(), 0);
  }

  // Edit ("edit") and move ("drag") modes are exclusive; the console mirrors `mode` on its
  // toggle buttons through onModeChange.
  setMode(mode) {
    this.ready();
    const pm = this.map.pm;
    if (this.mode === "edit" && mode !== "edit") pm.disableGlobalEditMode();
    if (this.mode === "drag" && mode !== "drag") pm.disableGlobalDragMode();
    if (mode === "edit" && this.mode !== "edit") pm.enableGlobalEditMode();
    if (mode === "drag" && this.mode !== "drag") pm.enableGlobalDragMode();
    this.mode = mode;
    if (this.options.onModeChange) this.options.onModeChange(mode);
  }

  toggleEdit() {
    this.setMode(this.mode === "edit" ? null : "edit");
  }

  toggleDrag() {
    this.setMode(this.mode === "drag" ? null : "drag");
  }

  draw(shape) {
    this.setMode(null);
    this.map.pm.enableDraw(shape);
    this.element.focus();
  }

  circleAtCentre(radius) {
    this.setMode(null);
    const layer = L.circle(this.map.getCenter(), { radius }).addTo(this.map);
    this.options.onDraft({ ...shapeOf(layer), layer });
  }

  discard(draft) {
    if (draft && draft.layer) draft.layer.remove();
  }

  layerFor(feature) {
    const [lon, lat] = feature.geometry.type === "Point" ? feature.geometry.coordinates : [0, 0];
    if (feature.geometry.type === "Point") return L.circle([lat, lon], { radius: feature.properties.radius_m || 10 });
    return L.geoJSON(feature.geometry).getLayers()[0];
  }

  show(features) {
    this.ready();
    for (const layer of this.layers.values()) layer.remove();
    this.layers.clear();
    const bounds = L.latLngBounds([]);
    for (const f of features) {
      const layer = this.layerFor(f);
      if (!layer) continue;
      layer.setStyle({ color: "#0b5cad", weight: 2, fillOpacity: 0.18 });
      layer.bindTooltip(f.properties.name, { sticky: true });
      // while drawing, a click on a place is a corner of the new outline (a place may border or
      // overlap another), not a choice of that place
      layer.on("click", () => {
        if (!this.map.pm.globalDrawModeEnabled()) this.options.onSelect(f.id);
      });
      const changed = () => this.options.onShapeChanged(f.id, shapeOf(layer));
      layer.on("pm:update", changed);
      layer.on("pm:dragend", changed);
      layer.addTo(this.map);
      this.layers.set(f.id, layer);
      bounds.extend(layer.getBounds());
    }
    if (this.pendingFit && bounds.isValid()) {
      this.map.fitBounds(bounds.pad(0.2), { maxZoom: 17 });
      this.pendingFit = false;
    }
  }

  focus(id) {
    const layer = this.layers.get(id);
    if (!layer) return;
    this.map.fitBounds(layer.getBounds().pad(0.5), { maxZoom: 18 });
    layer.openTooltip();
  }
}
