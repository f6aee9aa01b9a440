"""The service's ``/plots``: plots (EUDR GeoJSON) checked against the store it was given.

The service opens the store of ``CACAOMAP_STORE`` and the reference layers of
``CACAOMAP_REFERENCE_LAYERS`` at start (one that cannot be read stops it, naming why);
with layers each record also says what each layer sees, and where they disagree with
the model the plot is ``needs_review`` with the reason (``CACAOMAP_REVIEW_RULE``);
with layers and no store the layers alone give the verdicts. A request is

- a GeoJSON body (``application/geo+json`` or ``application/json``: a
  FeatureCollection, a Feature or a geometry), as BentoML's own client sends the one
  positional argument; the query may add ``evidence=true`` and ``point_area_ha=2``;
- or the same wrapped, ``{"plots": <GeoJSON>, "evidence": true}``;
- or multipart with a ``plots`` file part (and ``evidence`` / ``point_area_ha`` fields).

The answer is the input FeatureCollection with each feature's record under
``properties.cacaomap`` (producer properties untouched) plus ``verdicts`` and
``lineage`` members; with ``evidence=true`` (at most ``CACAOMAP_MAX_EVIDENCE`` plots)
each record carries its picture as ``evidence_png`` (base64). A plot that cannot be
checked gets ``verdict: "error"`` with its reason and the others are answered; only a
body that is not GeoJSON, or over ``CACAOMAP_MAX_PLOTS``, gets 400.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from serving.baseline.change import Thresholds
from serving.plots.check import CheckOptions, run_checks
from serving.plots.evidence import evidence_png
from serving.plots.geolocation import DEFAULT_POINT_AREA_HA, PlotsError
from serving.plots.report_files import feature_collection
from serving.references.layers import ReferenceLayer
from serving.settings import Settings
from serving.store.reader import MapSource

#: The JSON schema the OpenAPI page shows for the body.
PLOTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "GeoJSON FeatureCollection of plots (EUDR: Points with an Area in "
                   "ha, Polygons, MultiPolygons), or {\"plots\": <that>, \"evidence\": "
                   "bool, \"point_area_ha\": number}",
    "properties": {"type": {"type": "string"}, "features": {"type": "array"}},
}
TRUE = ("1", "true", "yes", "on")


class PlotsRequestError(ValueError):
    """A request the service answers with 400 (the message says why)."""


def request_options(body: Any, query: dict[str, str]) -> tuple[Any, bool, float]:
    """(GeoJSON, evidence, point area) from a body and its query string.

    Raises:
        PlotsRequestError: An option that is not what it should be.
    """
    doc = body
    options: dict[str, Any] = dict(query)
    if isinstance(body, dict) and "plots" in body and "type" not in body:
        doc = body["plots"]
        options |= {k: v for k, v in body.items() if k != "plots"}
    unknown = set(options) - {"evidence", "point_area_ha"}
    if unknown:
        raise PlotsRequestError(f"unknown option(s) {sorted(unknown)}; /plots takes "
                                "evidence and point_area_ha")
    evidence = options.get("evidence", False)
    if isinstance(evidence, str):
        evidence = evidence.strip().lower() in TRUE
    try:
        area = float(options.get("point_area_ha", DEFAULT_POINT_AREA_HA))
    except (TypeError, ValueError) as err:
        raise PlotsRequestError(f"point_area_ha must be a number of hectares; got "
                                f"{options.get('point_area_ha')!r}") from err
    if not (math.isfinite(area) and area > 0):
        raise PlotsRequestError(f"point_area_ha must be positive; got {area}")
    return doc, bool(evidence), area


def check_request(doc: bytes | dict[str, Any], source: MapSource | None, settings: Settings,
                  evidence: bool, point_area_ha: float,
                  references: list[ReferenceLayer] | None = None) -> dict[str, Any]:
    """The answer to one ``/plots`` request (the store and/or the reference layers).

    Raises:
        PlotsRequestError: The body is not GeoJSON, or over a limit.
    """
    meta = source.meta if source is not None else {}
    kept = meta.get("thresholds") or {}
    options = CheckOptions(Thresholds(**kept) if kept else Thresholds(),
                           float(meta.get("min_forest_ha", 0.5)),
                           workers=settings.plot_workers)
    # The evidence cap before any work: a body over it is refused at its parse.
    limit = min(settings.max_plots, settings.max_evidence) if evidence else settings.max_plots
    try:
        plots, records, summary = run_checks(
            doc, source, options, name="plots", point_area_ha=point_area_ha,
            max_plots=limit, max_vertices=settings.max_zone_vertices,
            references=references, review_rule=settings.review_rule,  # type: ignore[arg-type]
            max_plot_ha=settings.max_plot_ha)
    except PlotsError as err:
        if evidence and "plots" in str(err) and "split the statement" in str(err):
            raise PlotsRequestError(
                f"evidence is drawn for at most {settings.max_evidence} plots "
                "(CACAOMAP_MAX_EVIDENCE); send fewer plots with evidence=true") from err
        raise PlotsRequestError(str(err)) from err
    if evidence and source is not None:
        for plot, record in zip(plots, records, strict=True):
            if plot.geometry is not None and record["verdict"] != "error":
                png = evidence_png(plot, record, source, references)
                record["evidence_png"] = base64.b64encode(png).decode()
    return feature_collection(plots, records) | without_paths(summary)


#: Keys whose values are files or folders of the server (answers give their names).
PATH_KEYS = ("path", "source")


def without_paths(answer: Any) -> Any:
    """``answer`` with the server's file and folder paths reduced to their names.

    What a caller gets says which store, model and layers (by name, version and
    sha256) without telling where they lie on the server; files written locally keep
    whole paths.
    """
    from pathlib import PurePath

    if isinstance(answer, dict):
        return {k: (PurePath(v).name if k in PATH_KEYS and isinstance(v, str)
                    else without_paths(v)) for k, v in answer.items()}
    if isinstance(answer, list):
        return [without_paths(v) for v in answer]
    return answer
