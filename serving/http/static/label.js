/* cacaomap map page, label mode: judge points on the imagery the model saw and save
   them beside the result (POST /ui/results/<id>/labels). Uses app.js's map, result,
   $, esc and apiHeaders. Keys: 1-9 a class (legend order), 0 or C can't tell,
   S or → skip, B or ← back. */
"use strict";

const labelling = { points: [], index: 0, marker: null, markers: null };
const CROP_PX = 40; // half-side of the crop shown around a point, in image pixels

function labelClasses() { return (result && result.classes) || []; }

function startLabelling(points) {
  labelling.points = points;
  labelling.index = 0;
  if (labelling.markers) map.removeLayer(labelling.markers);
  labelling.markers = L.layerGroup().addTo(map);
  $("labelling").hidden = !points.length;
  $("label-download").hidden = true;
  drawClassButtons();
  showPoint();
}

function pointsFromGeoJSON(doc) {
  const features = (doc && doc.features) || [];
  const points = features.filter((f) => f.geometry && f.geometry.type === "Point").map((f) => ({
    lat: f.geometry.coordinates[1], lng: f.geometry.coordinates[0], props: { ...(f.properties || {}) },
    label: undefined, cantTell: false, labelledAt: null,
  }));
  return { points, skipped: features.length - points.length };
}

function drawClassButtons() {
  $("label-classes").replaceChildren(...labelClasses().map((c, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "label-class";
    b.dataset.code = c.code;
    b.innerHTML = `<span class="swatch" style="background:${esc(c.colour)}"></span>${i < 9 ? `<kbd>${i + 1}</kbd> ` : ""}${esc(c.name)}`;
    b.addEventListener("click", () => setLabel(c.code));
    return b;
  }));
}

function className(code) {
  const c = labelClasses().find((k) => k.code === Number(code));
  return c ? c.name : String(code);
}

function drawCrop(canvas, url, bounds, latlng) {
  const img = new Image();
  img.onload = () => {
    const z = 18;
    const nw = map.project(L.latLng(bounds[1][0], bounds[0][1]), z);
    const se = map.project(L.latLng(bounds[0][0], bounds[1][1]), z);
    const p = map.project(latlng, z);
    const x = ((p.x - nw.x) / (se.x - nw.x)) * img.naturalWidth;
    const y = ((p.y - nw.y) / (se.y - nw.y)) * img.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = "#222";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, x - CROP_PX, y - CROP_PX, 2 * CROP_PX, 2 * CROP_PX, 0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "#ffeb3b";
    ctx.lineWidth = 2;
    const c = canvas.width / 2;
    ctx.strokeRect(c - 6, c - 6, 12, 12);
    canvas.dataset.drawn = "1";
  };
  img.src = url;
}

function drawViews(pt) {
  const views = [];
  for (const date of ["reference", "current"]) {
    const url = result.files[`rgb_${date}.png`];
    if (!url || !result.dates[date]) continue;
    const fig = document.createElement("figure");
    const canvas = document.createElement("canvas");
    canvas.width = 160; canvas.height = 160;
    canvas.setAttribute("aria-label", `RGB composite around the point, ${date} date`);
    const cap = document.createElement("figcaption");
    cap.textContent = `${date}${result.dates[date].date ? ` (${result.dates[date].date})` : ""}`;
    fig.append(canvas, cap);
    views.push(fig);
    drawCrop(canvas, url, result.dates[date].bounds, L.latLng(pt.lat, pt.lng));
  }
  if (!views.length) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "No RGB composite: a class map was uploaded, so judge on the map.";
    views.push(p);
  }
  $("label-views").replaceChildren(...views);
}

function progressText() {
  const pts = labelling.points;
  const done = pts.filter((p) => p.label !== undefined && p.label !== null).length;
  const cant = pts.filter((p) => p.cantTell).length;
  const open = pts.filter((p) => p.label === undefined).length;
  return `${done} labelled, ${cant} can't tell, ${open} to go, of ${pts.length}`;
}

function showPoint() {
  const pts = labelling.points;
  $("label-progress").textContent = progressText();
  labelling.markers.clearLayers();
  for (const [i, p] of pts.entries()) {
    const colour = p.label === undefined ? "#ffffff" : p.cantTell ? "#9e9e9e"
      : (labelClasses().find((c) => c.code === p.label) || {}).colour || "#ffffff";
    L.circleMarker([p.lat, p.lng], { radius: i === labelling.index ? 9 : 5, color: i === labelling.index ? "#ffeb3b" : "#000",
      weight: 2, fillColor: colour, fillOpacity: 0.9, interactive: false }).addTo(labelling.markers);
  }
  if (!pts.length) return;
  const at = Math.min(labelling.index, pts.length - 1);
  const pt = pts[at];
  const said = pt.props.map_class != null ? `model: ${className(pt.props.map_class)}` : "";
  const unc = pt.props.uncertainty != null ? `, uncertainty ${Number(pt.props.uncertainty).toFixed(2)}` : "";
  const yours = pt.label !== undefined ? ` · your label: ${pt.cantTell ? "can't tell" : className(pt.label)}` : "";
  $("label-point").textContent = `Point ${at + 1} of ${pts.length}${said ? ` · ${said}${unc}` : ""}${yours}`;
  for (const b of document.querySelectorAll(".label-class")) {
    b.classList.toggle("chosen", pt.label !== undefined && Number(b.dataset.code) === pt.label);
  }
  map.setView([pt.lat, pt.lng], Math.max(map.getZoom(), 15), { animate: false });
  drawViews(pt);
}

function move(step) {
  const n = labelling.points.length;
  labelling.index = Math.max(0, Math.min(n - 1, labelling.index + step));
  showPoint();
}

function setLabel(code, cantTell = false) {
  const pt = labelling.points[labelling.index];
  if (!pt) return;
  pt.label = cantTell ? null : code;
  pt.cantTell = cantTell;
  pt.labelledAt = new Date().toISOString();
  if (labelling.index < labelling.points.length - 1) move(1); else showPoint();
}

function labelsGeoJSON() {
  const labeller = $("labeller").value.trim() || null;
  const judgedOn = ["reference", "current"].filter((d) => result.dates[d])
    .map((d) => result.files[`rgb_${d}.png`] ? `rgb_${d}.png${result.dates[d].date ? ` (${result.dates[d].date})` : ""}` : `classes_${d}.png`);
  return {
    type: "FeatureCollection",
    features: labelling.points.map((p) => ({
      type: "Feature",
      geometry: { type: "Point", coordinates: [p.lng, p.lat] },
      properties: {
        ...p.props,
        label: p.label === undefined ? null : p.label,
        label_name: p.label === undefined || p.label === null ? null : className(p.label),
        cant_tell: p.cantTell, skipped: p.label === undefined,
        labeller, labelled_at: p.labelledAt, judged_on: judgedOn.join(", "),
      },
    })),
  };
}

async function saveLabels() {
  $("label-save").disabled = true;
  try {
    const r = await fetch(`/ui/results/${result.id}/labels`, {
      method: "POST", body: JSON.stringify(labelsGeoJSON()),
      headers: { "Content-Type": "application/geo+json", ...apiHeaders() },
    });
    const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    $("label-download").href = body.url;
    $("label-download").hidden = false;
    setStatus(`Saved ${body.labelled} labels of ${body.points} points.`);
  } catch (err) {
    setStatus(`Labels not saved: ${err.message}`, true);
  } finally {
    $("label-save").disabled = false;
  }
}

$("label-points").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  try {
    const { points, skipped } = pointsFromGeoJSON(JSON.parse(await file.text()));
    if (!points.length) throw new Error("no points in it");
    startLabelling(points);
    setStatus(`${points.length} points to label from ${file.name}${skipped ? ` (${skipped} features that are not points left out)` : ""}.`);
  } catch (err) {
    setStatus(`${file.name}: ${err.message}`, true);
  }
});

map.on("click", (e) => {
  if (!$("label-add").checked || !result) return;
  if (!labelling.markers) startLabelling([]);
  labelling.points.push({ lat: e.latlng.lat, lng: e.latlng.lng, props: { added: "by click" }, label: undefined, cantTell: false, labelledAt: null });
  labelling.index = labelling.points.length - 1;
  $("labelling").hidden = false;
  showPoint();
});

$("label-cant").addEventListener("click", () => setLabel(null, true));
$("label-skip").addEventListener("click", () => move(1));
$("label-back").addEventListener("click", () => move(-1));
$("label-save").addEventListener("click", saveLabels);

document.addEventListener("keydown", (e) => {
  if ($("labelling").hidden || !labelling.points.length) return;
  const typing = e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLSelectElement
    || (e.target instanceof HTMLInputElement && ["text", "password", "search", "number"].includes(e.target.type));
  if (typing) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key.toLowerCase();
  if (/^[1-9]$/.test(k)) {
    const c = labelClasses()[Number(k) - 1];
    if (c) setLabel(c.code);
  } else if (k === "0" || k === "c") {
    setLabel(null, true);
  } else if (k === "s" || k === "arrowright") {
    move(1);
  } else if (k === "b" || k === "arrowleft") {
    move(-1);
  } else {
    return;
  }
  e.preventDefault();
});
