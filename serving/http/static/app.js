/* cacaomap map page: uploads go to the service's API, results are drawn with Leaflet.
   No basemap tiles are fetched: the scene itself is the background. */
"use strict";

const VERDICT_COLOURS = {
  deforestation_detected: "#d7301f",
  deforestation_free: "#1a9850",
  insufficient_data: "#969696",
};
const $ = (id) => document.getElementById(id);
const map = L.map("map", { zoomSnap: 0.25, attributionControl: false, fadeAnimation: false }).setView([-8.2, -76.5], 9);
const layers = { rgb: null, classes: {}, zones: null };
let result = null;

function apiHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function showModel() {
  try {
    const r = await fetch("/model", { method: "POST", headers: { "Content-Type": "application/json", ...apiHeaders() }, body: "{}" });
    if (r.ok) {
      const c = await r.json();
      $("model-name").textContent = `model ${c.name} ${c.version}`;
    }
  } catch (err) { /* the page still works without it */ }
}

function clearMap() {
  for (const layer of [layers.rgb, layers.zones, ...Object.values(layers.classes)]) {
    if (layer) map.removeLayer(layer);
  }
  layers.rgb = null; layers.zones = null; layers.classes = {};
}

function fmt(x) { return Number(x).toFixed(2); }

// Plot properties come from the user's GeoJSON: never trusted as HTML.
function esc(value) {
  return String(value).replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]);
}

function drawLegend(classes, withZones) {
  $("legend").replaceChildren(...classes.map((c) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="swatch" style="background:${c.colour}"></span><span class="name">${c.name}</span>`;
    return li;
  }));
  $("verdict-legend").hidden = !withZones;
  $("verdict-legend").replaceChildren(...Object.entries(VERDICT_COLOURS).map(([v, colour]) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="swatch outline" style="border-color:${colour}"></span>plot: ${v.replaceAll("_", " ")}`;
    return li;
  }));
}

function drawHectares(classes, dates) {
  const hasRef = Boolean(dates.reference);
  $("col-reference").hidden = !hasRef;
  const rows = classes.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.cls = c.name;
    tr.innerHTML = `<td>${c.name}</td><td class="num current">${fmt(dates.current.hectares[c.name])}</td>` +
      (hasRef ? `<td class="num reference">${fmt(dates.reference.hectares[c.name])}</td>` : "");
    return tr;
  });
  $("hectares").tBodies[0].replaceChildren(...rows);
  const max = Math.max(...classes.map((c) => dates.current.hectares[c.name]), 1e-9);
  $("chart").replaceChildren(...classes.map((c) => {
    const div = document.createElement("div");
    div.className = "bar";
    const pct = (100 * dates.current.hectares[c.name]) / max;
    div.innerHTML = `<span>${c.name}</span><span class="fill" style="width:${pct}%;background:${c.colour}"></span>`;
    return div;
  }));
}

function zonePopup(props) {
  const rows = Object.entries(props)
    .filter(([, v]) => v !== null && typeof v !== "object")
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td class="num">${esc(typeof v === "number" ? Number(v.toFixed(3)) : v)}</td></tr>`)
    .join("");
  return `<div class="popup"><table>${rows}</table></div>`;
}

function showClassDate(name) {
  for (const [date, layer] of Object.entries(layers.classes)) {
    if (date === name) layer.addTo(map); else map.removeLayer(layer);
  }
  if (layers.zones) layers.zones.bringToFront();
}

function draw(res) {
  result = res;
  clearMap();
  const files = res.files;
  const current = res.dates.current;
  const bounds = current.bounds;
  const opacity = $("opacity").value / 100;
  if (files["rgb_current.png"]) {
    layers.rgb = L.imageOverlay(files["rgb_current.png"], bounds, { alt: "RGB composite" }).addTo(map);
  }
  for (const date of Object.keys(res.dates)) {
    layers.classes[date] = L.imageOverlay(files[`classes_${date}.png`], res.dates[date].bounds,
      { opacity, alt: `class map, ${date} date`, className: `classes-${date}` });
  }
  showClassDate("current");
  if (res.zones) {
    layers.zones = L.geoJSON(res.zones, {
      style: (f) => ({ color: VERDICT_COLOURS[f.properties.verdict] || "#333", weight: 2, fillOpacity: 0.05 }),
      onEachFeature: (f, layer) => layer.bindPopup(zonePopup(f.properties), { maxHeight: 260, autoPanPadding: [10, 10] }),
    }).addTo(map);
  }
  map.fitBounds(bounds);
  drawLegend(res.classes, Boolean(res.zones));
  drawHectares(res.classes, res.dates);
  $("date-choice").hidden = !res.dates.reference;
  $("date").value = "current";
  $("baseline").hidden = !res.baseline;
  if (res.baseline) {
    const land = res.baseline.landscape;
    const counts = Object.entries(res.baseline.verdicts).map(([v, n]) => `${n} ${v.replaceAll("_", " ")}`).join(", ");
    $("verdicts").textContent = `${counts}. Forest loss in the landscape: ${fmt(land.forest_loss_ha)} ha.`;
  }
  $("downloads").replaceChildren(...Object.entries(files)
    .filter(([name]) => /\.(tif|geojson|csv|json)$/.test(name) || name === "map.png")
    .map(([name, url]) => {
      const li = document.createElement("li");
      li.innerHTML = `<a href="${url}" download="${name}">${name}</a>`;
      return li;
    }));
  $("results").hidden = false;
}

$("opacity").addEventListener("input", (e) => {
  $("opacity-value").textContent = `${e.target.value}%`;
  for (const layer of Object.values(layers.classes)) layer.setOpacity(e.target.value / 100);
});
$("date").addEventListener("change", (e) => showClassDate(e.target.value));

$("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const current = $("current").files[0];
  const reference = $("reference").files[0];
  const zones = $("zones").files[0];
  if (Boolean(reference) !== Boolean(zones)) {
    setStatus("A baseline needs both the reference date and the plots.", true);
    return;
  }
  const form = new FormData();
  let endpoint = "/analyze_scene";
  if (reference) {
    endpoint = "/analyze";
    form.append("reference", reference, reference.name);
    form.append("current", current, current.name);
    form.append("zones", zones, zones.name);
  } else {
    form.append("scene", current, current.name);
  }
  $("analyze").disabled = true;
  setStatus(reference ? "Classifying both dates and comparing them…" : "Classifying…");
  try {
    const r = await fetch(endpoint, { method: "POST", body: form, headers: apiHeaders() });
    const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    draw(body);
    setStatus(`Done: ${current.name}${reference ? ` against ${reference.name}` : ""}.`);
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    $("analyze").disabled = false;
  }
});

showModel();
