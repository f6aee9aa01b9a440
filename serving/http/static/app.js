/* cacaomap map page: uploads go to the service's API, results are drawn with Leaflet.
   No basemap tiles are fetched: the scene itself is the background. */
"use strict";

const VERDICT_COLOURS = {
  deforestation_detected: "#d7301f",
  needs_review: "#f46d43",
  deforestation_free: "#1a9850",
  insufficient_data: "#969696",
  error: "#000000",
};
const VERDICT_WORDS = {
  deforestation_free: "Deforestation-free",
  deforestation_detected: "Deforestation detected",
  needs_review: "Needs review: a person should look (low confidence, a plot too small, or sources that disagree)",
  insufficient_data: "Insufficient data: too little of the plot was seen clearly",
  error: "Could not be checked",
};
const DRIVER_WORDS = {
  cocoa_agroforestry: "cocoa agroforestry", oil_palm: "oil palm", degraded: "degraded land",
  other: "other land",
};
const FLAG_WORDS = {
  area_missing: "point without Area: checked over 4 ha, as the EU's system assumes",
  area_mismatch: "the declared Area differs from the polygon's own area by more than 25 %",
  implausible_area: "an area larger than any farm plot (hectares in another unit?)",
  below_detection_area: "the plot is smaller than the smallest loss that can be detected",
  sources_disagree: "the reference maps and alerts disagree with the model",
  straddles_cutoff: "a reference reports loss in a period that straddles 2020-12-31",
  partly_outside_layer: "part of the plot lies outside a reference layer",
  polygon_required: "point declaring more than 4 ha: a polygon is required",
  low_precision: "coordinates with fewer than 6 decimals",
  partly_outside_store: "part of the plot lies outside the store",
  cell_not_built: "a store cell under the plot failed to build",
  low_confidence: "low model confidence in the loss",
  classified_from_radar: "part of the plot was classified from Sentinel-1 radar alone (no clear optical observation)",
};
const $ = (id) => document.getElementById(id);
const map = L.map("map", { zoomSnap: 0.25, attributionControl: false, fadeAnimation: false }).setView([-8.2, -76.5], 9);
const layers = { rgb: null, classes: {}, zones: null, region: null, references: {} };
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
  for (const layer of [layers.rgb, layers.zones, layers.region, ...Object.values(layers.classes)]) {
    if (layer) map.removeLayer(layer);
  }
  layers.rgb = null; layers.zones = null; layers.region = null; layers.classes = {};
}

function fmt(x) { return Number(x).toFixed(2); }

// Plot properties come from the user's GeoJSON: never trusted as HTML.
function esc(value) {
  return String(value).replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]);
}

function drawLegend(classes, withZones) {
  $("legend").replaceChildren(...classes.map((c) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="swatch" style="background:${esc(c.colour)}"></span><span class="name">${esc(c.name)}</span>`;
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
    tr.innerHTML = `<td>${esc(c.name)}</td><td class="num current">${fmt(dates.current.hectares[c.name])}</td>` +
      (hasRef ? `<td class="num reference">${fmt(dates.reference.hectares[c.name])}</td>` : "");
    return tr;
  });
  $("hectares").tBodies[0].replaceChildren(...rows);
  // a stacked optical + radar scene: what the classes rest on
  const sensors = Object.entries(dates)
    .filter(([, d]) => d.sensors)
    .map(([name, d]) => `${name}: ${pct(d.sensors.optical)} of the scene classified with a clear optical observation, ${pct(d.sensors["radar alone"])} from radar alone`);
  $("sensors").hidden = sensors.length === 0;
  $("sensors").textContent = sensors.join("; ");
  const max = Math.max(...classes.map((c) => dates.current.hectares[c.name]), 1e-9);
  $("chart").replaceChildren(...classes.map((c) => {
    const div = document.createElement("div");
    div.className = "bar";
    const pct = (100 * dates.current.hectares[c.name]) / max;
    div.innerHTML = `<span>${esc(c.name)}</span><span class="fill" style="width:${pct}%;background:${esc(c.colour)}"></span>`;
    return div;
  }));
}

function pct(x) { return `${Math.round(100 * Number(x))}%`; }

// A plot's record in plain words (the record of /plots, or a zone of /analyze).
function plotPopup(rec, props) {
  const name = rec.plot_id ?? rec.zone_id ?? "";
  const who = props.ProducerName ? ` (${props.ProducerName})` : "";
  const rows = [["Verdict", VERDICT_WORDS[rec.verdict] || rec.verdict]];
  if (rec.verdict === "error") {
    rows.push(["Why", rec.error]);
  } else {
    rows.push(["Forest at the reference date", `${fmt(rec.forest_ref_ha)} ha`]);
    const lost = Object.keys(DRIVER_WORDS)
      .filter((d) => Number(rec[`loss_to_${d}_ha`]) > 0)
      .map((d) => `${fmt(rec[`loss_to_${d}_ha`])} ha to ${DRIVER_WORDS[d]}`);
    rows.push(["Forest lost since", `${fmt(rec.forest_loss_ha)} ha` + (lost.length ? ` (${lost.join(", ")})` : "")]);
    rows.push(["Seen clearly at both dates", `${pct(rec.valid_fraction)} of the plot`]);
    if (rec.radar_only_fraction != null) {
      rows.push(["Seen optically at both dates", `${pct(rec.seen_optically_fraction)} of the plot`]);
      rows.push(["Classified from radar alone", `${pct(rec.radar_only_fraction)} of the plot (at a date)`]);
    }
    if (rec.loss_confidence != null) rows.push(["Confidence in the loss", pct(rec.loss_confidence)]);
    else if (rec.map_confidence != null) rows.push(["Confidence of the maps", pct(rec.map_confidence)]);
  }
  if (rec.area_ha != null) {
    const how = String(rec.geometry_used || "polygon").startsWith("circle")
      ? `a circle of ${fmt(rec.area_ha)} ha around the declared point` : `${fmt(rec.area_ha)} ha as drawn`;
    rows.push(["Checked over", how]);
  }
  const flags = (rec.flags || []).map((f) => FLAG_WORDS[f] || f);
  if (flags.length) rows.push(["Flags", flags.join("; ")]);
  for (const [name, layer] of Object.entries(rec.references || {})) rows.push([name, layerWords(layer)]);
  const conv = rec.convergence;
  if (conv && conv.model_verdict && conv.model_verdict !== rec.verdict) {
    rows.push(["The model alone", VERDICT_WORDS[conv.model_verdict] || conv.model_verdict]);
  }
  if (conv && (conv.reasons || []).length) rows.push(["Why review", conv.reasons.join("; ")]);
  for (const why of rec.reasons || []) rows.push(["From the layers", why]);
  const body = rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join("");
  return `<div class="popup"><strong>Plot ${esc(name)}${esc(who)}</strong><table>${body}</table></div>`;
}

// What one reference layer says of a plot, in words.
function layerWords(layer) {
  const parts = [];
  if (layer.forest_cutoff_ha != null) parts.push(`forest at the cutoff ${fmt(layer.forest_cutoff_ha)} ha`);
  if (layer.loss_after_cutoff_ha != null) {
    parts.push(`lost after it ${fmt(layer.loss_after_cutoff_ha)} ha` +
      (layer.first_loss_period ? ` (${layer.first_loss_period})` : ""));
  }
  if (Number(layer.loss_straddling_ha) > 0) parts.push(`lost in a period across the cutoff ${fmt(layer.loss_straddling_ha)} ha`);
  if (layer.alert_after_cutoff_ha != null) {
    parts.push(layer.first_alert_date
      ? `alerts over ${fmt(layer.alert_after_cutoff_ha)} ha, first ${layer.first_alert_date} (${layer.first_alert_confidence} confidence)`
      : "no alert after the cutoff");
  }
  parts.push(`covers ${pct(layer.covered_fraction)} of the plot`);
  return parts.join("; ");
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
    layers.rgb = L.imageOverlay(files["rgb_current.png"], bounds, { alt: current.picture ? `RGB composite, ${current.picture}` : "RGB composite" }).addTo(map);
  }
  for (const date of Object.keys(res.dates)) {
    layers.classes[date] = L.imageOverlay(files[`classes_${date}.png`], res.dates[date].bounds,
      { opacity, alt: `class map, ${date} date`, className: `classes-${date}` });
  }
  showClassDate("current");
  if (res.zones) {
    layers.zones = L.geoJSON(res.zones, {
      style: (f) => ({ color: VERDICT_COLOURS[f.properties.verdict] || "#333", weight: 2, fillOpacity: 0.05 }),
      onEachFeature: (f, layer) => layer.bindPopup(plotPopup(f.properties, f.properties), { maxHeight: 260, autoPanPadding: [10, 10] }),
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
      li.innerHTML = `<a href="${esc(url)}" download="${esc(name)}">${esc(name)}</a>`;
      return li;
    }));
  $("results").hidden = false;
  $("label-box").hidden = false;
  $("plot-results").hidden = true;
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

// Plots against the baseline store the service was started on (CACAOMAP_STORE).
async function showStore() {
  try {
    const r = await fetch("/store", { method: "POST", headers: { "Content-Type": "application/json", ...apiHeaders() }, body: "{}" });
    if (!r.ok) return;
    const st = await r.json();
    const by = st.reference_ends_by_cutoff ? `ends by the cutoff ${st.cutoff}` : `ends after the cutoff ${st.cutoff}`;
    $("store-info").textContent = `Reference period ${st.periods.reference} (${by}); current period ` +
      `${st.periods.current}; model ${st.model.name} ${st.model.version}; ${st.cells} cells.`;
    $("store-box").hidden = false;
    layers.storeRegion = st.region;
    // One switch per reference layer of the service (CACAOMAP_REFERENCE_LAYERS).
    $("reference-toggles").replaceChildren(...(st.reference_layers || []).map((ref) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.dataset.layer = ref.name;
      input.addEventListener("change", () => toggleReference(ref.name, input.checked));
      label.append(input, ` draw ${ref.title}`);  // text, never HTML
      return label;
    }));
  } catch (err) { /* no store: the section stays hidden */ }
}

// A reference layer over the store's region: forest (green), loss after the cutoff (red).
async function toggleReference(name, on) {
  const drawn = layers.references[name];
  if (drawn) { map.removeLayer(drawn); URL.revokeObjectURL(drawn._url); delete layers.references[name]; }
  if (!on || !layers.storeRegion) return;
  const b = L.geoJSON(layers.storeRegion).getBounds();
  const bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()];
  const r = await fetch("/reference_layer", { method: "POST", headers: { "Content-Type": "application/json", ...apiHeaders() },
    body: JSON.stringify({ name, bbox }) });
  const answer = await r.json();
  if (!r.ok) { setStatus(`${name}: ${answer.error}`, true); return; }
  const bytes = Uint8Array.from(atob(answer.png), (c) => c.charCodeAt(0));
  const url = URL.createObjectURL(new Blob([bytes], { type: "image/png" }));
  layers.references[name] = L.imageOverlay(url, [[bbox[1], bbox[0]], [bbox[3], bbox[2]]],
    { alt: `reference layer ${name}`, className: "reference-layer" }).addTo(map);
  layers.references[name].bringToFront();
}

function drawPlots(answer) {
  clearMap();
  if (layers.storeRegion) {
    layers.region = L.geoJSON(layers.storeRegion, { style: { color: "#1f6f43", weight: 1, dashArray: "4 4", fill: false }, interactive: false }).addTo(map);
  }
  const record = (f) => f.properties.cacaomap || {};
  const style = (f) => ({ color: VERDICT_COLOURS[record(f).verdict] || "#333", weight: 2, fillOpacity: 0.25 });
  layers.zones = L.geoJSON(answer, {
    style,
    // A declared point is drawn as the circle it was checked over.
    pointToLayer: (f, latlng) => L.circle(latlng, { radius: Math.sqrt(((record(f).area_ha || 1) * 10000) / Math.PI), ...style(f) }),
    onEachFeature: (f, layer) => layer.bindPopup(plotPopup(record(f), f.properties || {}), { maxHeight: 300, autoPanPadding: [10, 10] }),
  }).addTo(map);
  const bounds = layers.zones.getBounds();
  if (bounds.isValid()) map.fitBounds(bounds, { padding: [20, 20] });
  const counts = Object.entries(answer.verdicts).map(([v, n]) => `${n} ${v.replaceAll("_", " ")}`).join(", ");
  $("plot-verdicts").textContent = `${answer.features.length} plots: ${counts}.`;
  $("plot-legend").replaceChildren(...Object.entries(VERDICT_COLOURS).map(([v, colour]) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="swatch outline" style="border-color:${colour}"></span>${v.replaceAll("_", " ")}`;
    return li;
  }));
  const url = URL.createObjectURL(new Blob([JSON.stringify(answer)], { type: "application/geo+json" }));
  $("plot-download").href = url;
  $("plot-results").hidden = false;
  $("results").hidden = true;
}

$("plots-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("plots-file").files[0];
  $("check-plots").disabled = true;
  setStatus(`Checking the plots of ${file.name}…`);
  try {
    const r = await fetch("/plots", { method: "POST", body: await file.text(), headers: { "Content-Type": "application/geo+json", ...apiHeaders() } });
    const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    drawPlots(body);
    setStatus(`Done: ${file.name} checked against the store.`);
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    $("check-plots").disabled = false;
  }
});

showModel();
showStore();
